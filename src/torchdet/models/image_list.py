"""ImageList: a padded batch of images together with each image's size before padding."""
from typing import List, Tuple

import torch
from torch import Tensor


class ImageList:
    """A batch of images of different sizes padded into one tensor.

    Args:
        tensors: the padded batch, ``[B, C, H_max, W_max]``.
        image_sizes: each image's ``(height, width)`` inside ``tensors`` (after resizing,
            before padding). While tracing for export these are the traced sizes (0-dim
            tensors standing in for ints), so that the graph keeps them dynamic.
    """

    def __init__(self, tensors: Tensor, image_sizes: List[Tuple[int, int]]) -> None:
        self.tensors = tensors
        self.image_sizes = image_sizes

    def to(self, device: torch.device) -> "ImageList":
        """The same batch on ``device``."""
        return ImageList(self.tensors.to(device), self.image_sizes)

    @torch.jit.unused
    def __repr__(self) -> str:
        return f"ImageList(tensors={list(self.tensors.shape)}, image_sizes={self.image_sizes})"
