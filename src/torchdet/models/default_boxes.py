"""DefaultBoxGenerator: SSD's default boxes (Liu et al., 2016, section 2.2 and page 6).

Feature map ``k`` of ``m`` gets the scale ``s_k``; unless given, scales are spread linearly
from ``min_ratio`` to ``max_ratio`` with a closing scale of 1.0. Every cell of map ``k`` holds
``2 + 2 * len(aspect_ratios[k])`` boxes, as (width, height) pairs relative to the image:

    (s_k, s_k), (s'_k, s'_k) with s'_k = sqrt(s_k * s_{k+1}),
    then for each aspect ratio r: (s_k * sqrt(r), s_k / sqrt(r)), (s_k / sqrt(r), s_k * sqrt(r)).

Box centres sit at ``(j + 0.5) / f_k`` of the image, with ``f_k = image_size / steps[k]`` when
``steps`` is given, else the feature map's size. Boxes come out in ``xyxy`` pixels of the
(padded) input image, cells row-major, the pairs of a cell consecutive.

Scriptable, and traceable with free image sizes (grid and image sizes stay traced values).
"""
import math
from typing import List, Optional, Sequence

import torch
from torch import Tensor, nn

from torchdet.models.image_list import ImageList

__all__ = ["DefaultBoxGenerator"]


def default_box_scales(num_outputs: int, min_ratio: float, max_ratio: float) -> List[float]:
    """``num_outputs + 1`` scales: linear from ``min_ratio`` to ``max_ratio``, then 1.0.

    With a single feature map the scales are ``[min_ratio, max_ratio]``.
    """
    if num_outputs == 1:
        return [min_ratio, max_ratio]
    span = max_ratio - min_ratio
    return [min_ratio + span * k / (num_outputs - 1.0) for k in range(num_outputs)] + [1.0]


def wh_pairs_for_level(scale: float, next_scale: float, aspect_ratios: Sequence[float]) -> Tensor:
    """The (width, height) pairs of one feature map, relative to the image. ``[2 + 2 * R, 2]``."""
    between = math.sqrt(scale * next_scale)
    pairs = [[scale, scale], [between, between]]
    for ratio in aspect_ratios:
        root = math.sqrt(ratio)
        wide, tall = scale * root, scale / root
        pairs += [[wide, tall], [tall, wide]]
    return torch.as_tensor(pairs, dtype=torch.float32)


def _traced_width_height(images: Tensor) -> Tensor:
    """``[2]`` int64 ``(W, H)`` of ``[B, C, H, W]`` images, read from the shape as a tensor so that a trace
    keeps it (a list of sizes would be a constant)."""
    if not torch.jit.is_scripting():
        if torch.compiler.is_compiling():  # symbolic sizes: fake tensors have no shape tensor
            return _symbolic_width_height(images)
    return torch._shape_as_tensor(images)[-2:].flip(0)


@torch.jit.unused
def _symbolic_width_height(images: Tensor) -> Tensor:
    """``(W, H)`` as a ``[2]`` int64 tensor built from the (possibly symbolic) sizes."""
    return torch.stack([torch.scalar_tensor(images.shape[-1], dtype=torch.int64),
                        torch.scalar_tensor(images.shape[-2], dtype=torch.int64)])


class DefaultBoxGenerator(nn.Module):
    """Default boxes for SSD heads.

    Args:
        aspect_ratios: per feature map, the extra aspect ratios (e.g. ``[2, 3]``); each adds a
            wide and a tall box.
        min_ratio, max_ratio: the range of the linear scales, used when ``scales`` is None.
        scales: explicit scales, one per feature map plus one (the last closes ``s'_k``).
        steps: per feature map, the stride in pixels that sets the box centres; None uses the
            feature map's own size.
        clip: clamp each (width, height) pair to [0, 1] before placing the boxes.
    """

    steps: Optional[List[int]]

    def __init__(self, aspect_ratios: List[List[int]], min_ratio: float = 0.15, max_ratio: float = 0.9,
                 scales: Optional[List[float]] = None, steps: Optional[List[int]] = None,
                 clip: bool = True) -> None:
        super().__init__()
        if steps is not None and len(aspect_ratios) != len(steps):
            raise ValueError(
                f"aspect_ratios and steps should have the same length (one entry per feature map); got "
                f"{len(aspect_ratios)} aspect-ratio lists and {len(steps)} steps."
            )
        num_outputs = len(aspect_ratios)
        if scales is not None and len(scales) < num_outputs + 1:
            raise ValueError(
                f"scales needs one entry per feature map plus one ({num_outputs + 1}); got {len(scales)}: {scales}."
            )
        self.aspect_ratios = aspect_ratios
        self.steps = steps
        self.clip = clip
        self.scales = list(scales) if scales is not None else default_box_scales(num_outputs, min_ratio, max_ratio)
        self._wh_pairs = [wh_pairs_for_level(self.scales[k], self.scales[k + 1], aspect_ratios[k])
                          for k in range(num_outputs)]

    def num_anchors_per_location(self) -> List[int]:
        """Boxes per feature-map cell, one entry per feature map: ``2 + 2 * len(aspect_ratios[k])``."""
        return [2 + 2 * len(r) for r in self.aspect_ratios]

    def _grid_default_boxes(self, grid_sizes: List[List[int]], image_size: List[int],
                            dtype: torch.dtype = torch.float32) -> Tensor:
        """All default boxes, relative ``(cx, cy, w, h)`` concatenated over feature maps. ``[sum_k H_k*W_k*A_k, 4]``."""
        boxes = []
        for k in range(len(grid_sizes)):
            grid_h, grid_w = grid_sizes[k][0], grid_sizes[k][1]
            steps = self.steps
            if steps is not None:
                cells_y, cells_x = image_size[0] / steps[k], image_size[1] / steps[k]
            else:
                cells_y, cells_x = float(grid_h), float(grid_w)
            centres_x = ((torch.arange(0, grid_w) + 0.5) / cells_x).to(dtype=dtype)  # [W]
            centres_y = ((torch.arange(0, grid_h) + 0.5) / cells_y).to(dtype=dtype)  # [H]
            cy, cx = torch.meshgrid(centres_y, centres_x, indexing="ij")
            pairs = self._wh_pairs[k].clamp(min=0, max=1) if self.clip else self._wh_pairs[k]  # [A, 2]
            num_pairs = pairs.shape[0]
            centres = torch.stack((cx.reshape(-1), cy.reshape(-1)), dim=-1)  # [H*W, 2]
            centres = centres[:, None, :].expand(-1, num_pairs, -1).reshape(-1, 2)  # [H*W*A, 2], exportable at opset 11
            sizes = pairs.to(dtype).repeat(grid_h * grid_w, 1)  # [H*W*A, 2]; a traced count while tracing
            boxes.append(torch.cat((centres, sizes), dim=1))
        return torch.cat(boxes, dim=0)

    def forward(self, image_list: ImageList, feature_maps: List[Tensor]) -> List[Tensor]:
        """Default boxes per image, ``[sum_k H_k*W_k*A_k, 4]`` xyxy in the padded image's pixels."""
        grid_sizes = [[fm.shape[-2], fm.shape[-1]] for fm in feature_maps]
        image_size = [image_list.tensors.shape[-2], image_list.tensors.shape[-1]]
        dtype, device = feature_maps[0].dtype, feature_maps[0].device
        relative = self._grid_default_boxes(grid_sizes, image_size, dtype=dtype).to(device)  # [M, 4] cxcywh
        scale = _traced_width_height(image_list.tensors).to(device)  # (W, H)
        half = 0.5 * relative[:, 2:]
        boxes = torch.cat(((relative[:, :2] - half) * scale, (relative[:, :2] + half) * scale), dim=-1)
        return [boxes for _ in image_list.image_sizes]

    @torch.jit.unused
    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(aspect_ratios={self.aspect_ratios}, clip={self.clip}, "
                f"scales={self.scales}, steps={self.steps})")
