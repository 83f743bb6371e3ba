"""AnchorGenerator: the reference boxes an RPN scores, one set per feature-map cell and level.

Scriptable, and traceable with free image sizes: grid sizes and strides come from the shapes
as they are given (traced values while tracing), never through Python ints.
"""
from typing import List, Sequence

import torch
from torch import Tensor, nn

from torchdet.errors import InvalidInputError
from torchdet.models.image_list import ImageList


def make_cell_anchors(scales: Sequence[float], aspect_ratios: Sequence[float],
                 dtype: torch.dtype = torch.float32, device: torch.device = torch.device("cpu")) -> Tensor:
    """Anchors centred on (0, 0), one per (aspect ratio, scale), ratios outermost. ``[R*S, 4]`` xyxy.

    An aspect ratio is height / width; every anchor of a scale has area ``scale**2``.
    Coordinates are rounded to integers.
    """
    scales_t = torch.as_tensor(scales, dtype=dtype, device=device)  # [S]
    ratios_t = torch.as_tensor(aspect_ratios, dtype=dtype, device=device)  # [R]
    h_ratios = torch.sqrt(ratios_t)
    w_ratios = 1 / h_ratios
    widths = (w_ratios[:, None] * scales_t[None, :]).view(-1)  # [R*S]
    heights = (h_ratios[:, None] * scales_t[None, :]).view(-1)
    return (torch.stack([-widths, -heights, widths, heights], dim=1) / 2).round()


def shifted_anchors(base_anchors: Tensor, grid_size: List[int], stride: List[Tensor]) -> Tensor:
    """``[A, 4]`` cell anchors placed at every cell of an ``(H, W)`` grid. ``[H*W*A, 4]``, row-major cells.

    The cell (y, x) sits at pixel ``(y * stride_h, x * stride_w)`` of the padded image.
    """
    grid_height, grid_width = grid_size[0], grid_size[1]
    stride_height, stride_width = stride[0], stride[1]
    device = base_anchors.device
    shifts_x = torch.arange(0, grid_width, dtype=torch.int32, device=device) * stride_width
    shifts_y = torch.arange(0, grid_height, dtype=torch.int32, device=device) * stride_height
    shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
    shift_x = shift_x.reshape(-1)
    shift_y = shift_y.reshape(-1)
    shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1)  # [H*W, 4]
    return (shifts.view(-1, 1, 4) + base_anchors.view(1, -1, 4)).reshape(-1, 4)


class AnchorGenerator(nn.Module):
    """Anchors for every cell of every feature map, concatenated over levels per image.

    Args:
        sizes: one tuple of anchor sizes (sqrt of the area, in pixels) per feature level.
        aspect_ratios: one tuple of height/width ratios per level (or one tuple for all levels).

    Level ``l`` gets ``len(sizes[l]) * len(aspect_ratios[l])`` anchors per cell.
    """

    def __init__(self, sizes: Sequence[Sequence[int]] = ((128, 256, 512),),
                 aspect_ratios: Sequence[Sequence[float]] = ((0.5, 1.0, 2.0),)) -> None:
        super().__init__()
        if not isinstance(sizes[0], (list, tuple)):
            sizes = tuple((s,) for s in sizes)
        if not isinstance(aspect_ratios[0], (list, tuple)):
            aspect_ratios = (aspect_ratios,) * len(sizes)
        if len(sizes) != len(aspect_ratios):
            raise InvalidInputError(
                f"AnchorGenerator needs one aspect-ratio tuple per size tuple; got {len(sizes)} size tuples "
                f"and {len(aspect_ratios)} aspect-ratio tuples."
            )
        self.sizes = sizes
        self.aspect_ratios = aspect_ratios
        self.cell_anchors = [make_cell_anchors(s, a) for s, a in zip(sizes, aspect_ratios)]
        self._levels_description = f"sizes={sizes}"  # for error messages (scripted code cannot format tuples)

    @torch.jit.unused
    def generate_anchors(self, scales: Sequence[int], aspect_ratios: Sequence[float],
                         dtype: torch.dtype = torch.float32, device: torch.device = torch.device("cpu")) -> Tensor:
        """Zero-centred anchors of one level, ``[len(aspect_ratios) * len(scales), 4]``."""
        return make_cell_anchors(scales, aspect_ratios, dtype, device)

    def set_cell_anchors(self, dtype: torch.dtype, device: torch.device) -> None:
        self.cell_anchors = [a.to(dtype=dtype, device=device) for a in self.cell_anchors]

    def num_anchors_per_location(self) -> List[int]:
        """Anchors per feature-map cell, one entry per level."""
        return [cell.shape[0] for cell in self.cell_anchors]

    def grid_anchors(self, grid_sizes: List[List[int]], strides: List[List[Tensor]]) -> List[Tensor]:
        """One ``[H_l*W_l*A_l, 4]`` anchor tensor per level."""
        if not (len(grid_sizes) == len(strides) and len(strides) == len(self.cell_anchors)):
            raise InvalidInputError(
                f"AnchorGenerator has {len(self.cell_anchors)} levels of anchors ({self._levels_description}) but "
                f"got {len(grid_sizes)} feature maps; give one size tuple and one aspect-ratio tuple per feature map."
            )
        return [shifted_anchors(self.cell_anchors[level], grid_sizes[level], strides[level])
                for level in range(len(grid_sizes))]

    def forward(self, image_list: ImageList, feature_maps: List[Tensor]) -> List[Tensor]:
        """Anchors per image, ``[sum_l H_l*W_l*A_l, 4]`` each, in the padded image's pixels."""
        grid_sizes = [[fm.shape[-2], fm.shape[-1]] for fm in feature_maps]
        image_size = image_list.tensors.shape[-2:]  # traced values while tracing: strides stay dynamic
        dtype, device = feature_maps[0].dtype, feature_maps[0].device
        strides = [
            [torch.empty((), dtype=torch.int64, device=device).fill_(image_size[0] // g[0]),
             torch.empty((), dtype=torch.int64, device=device).fill_(image_size[1] // g[1])]
            for g in grid_sizes
        ]
        self.set_cell_anchors(dtype, device)
        per_level = self.grid_anchors(grid_sizes, strides)
        return [torch.cat(per_level) for _ in range(len(image_list.image_sizes))]
