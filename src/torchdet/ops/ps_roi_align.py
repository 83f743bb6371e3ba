"""Position-sensitive RoIAlign (R-FCN with RoIAlign sampling) in pure PyTorch.

The input has ``C = C_out * PH * PW`` channels; output bin ``(c, ph, pw)`` averages bilinear
samples of input channel ``(c * PH + ph) * PW + pw``. The sampling follows torchvision's kernel:
RoI corners are ``box * spatial_scale - 0.5`` (no minimum size); each bin takes a regular grid of
``sampling_ratio`` (or, if ``<= 0``, ``ceil(roi_size / P)``) samples per axis at the grid cells'
centres; a sample with ``y < -1``, ``y > H``, ``x < -1`` or ``x > W`` reads 0, otherwise
coordinates below 0 are raised to 0 and those past the last pixel read the last pixel. The sum
is divided by the grid's size.

How it runs: as ``ps_roi_pool``, on the table of ``C_out``-vectors per (image, bin, pixel); each
sample contributes its four bilinear corners to one ``F.embedding_bag`` bag per bin, weighted by
the bilinear weight over the grid size. Adaptive grids are padded to the chunk's largest
(RoIs sorted by grid size) with zero weights. The gradient flows to ``input`` (not the boxes).
"""
from __future__ import annotations

from typing import List, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchdet.ops import _rois
from torchdet.ops._fx import fx_leaf
from torchdet.ops._rois import BoxesArg
from torchdet.ops.ps_roi_pool import position_sensitive_table

__all__ = ["ps_roi_align", "PSRoIAlign"]


def _axis_corners(
    start: Tensor, bin_size: Tensor, grid: Tensor, pooled: int, bound: int, limit: int
) -> Tuple[Tensor, Tensor]:
    """Bilinear corners of the samples along one axis.

    Args:
        start: ``[K]`` RoI start; bin_size: ``[K]``; grid: ``[K]`` samples per bin (int64);
        pooled: bins; bound: padded grid size; limit: the map's size along the axis.

    Returns:
        ``(pixels, weights)``, both ``[K, pooled, bound, 2]``: the low and high pixel of each
        sample and their weights (0 for padding and for samples outside ``[-1, limit]``).
    """
    p = torch.arange(pooled, device=start.device, dtype=start.dtype)
    i = torch.arange(bound, device=start.device, dtype=start.dtype)
    steps = grid.clamp(min=1).to(start.dtype)
    bin_start = p[None, :] * bin_size[:, None] + start[:, None]  # [K, P]
    pos = bin_start[:, :, None] + (i + 0.5)[None, None, :] * bin_size[:, None, None] / steps[:, None, None]
    inside = (pos >= -1.0) & (pos <= limit) & (i[None, None, :] < grid[:, None, None])  # [K, P, bound]
    pos = pos.clamp(min=0)
    low = pos.floor().long()
    at_end = low >= limit - 1
    low = torch.where(at_end, torch.full_like(low, limit - 1), low)
    high = torch.where(at_end, low, low + 1)
    pos = torch.where(at_end, low.to(pos.dtype), pos)
    frac = pos - low.to(pos.dtype)
    weights = torch.stack((1 - frac, frac), dim=-1) * inside[..., None].to(pos.dtype)
    return torch.stack((low, high), dim=-1), weights


@fx_leaf
def ps_roi_align(
    input: Tensor,
    boxes: BoxesArg,
    output_size: Union[int, List[int], Tuple[int, int]],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
) -> Tensor:
    """Position-sensitive RoIAlign.

    Args:
        input: ``[B, C, H, W]`` with ``C`` a multiple of ``PH * PW``.
        boxes: ``[K, 5]`` RoIs ``(batch_index, x1, y1, x2, y2)`` in ``input``'s dtype, or a list
            of ``[L_i, 4]`` boxes per image.
        output_size: ``(PH, PW)`` or one int for both.
        spatial_scale: factor from box coordinates to ``input``'s pixels.
        sampling_ratio: samples per bin along each axis; ``<= 0`` adapts it to the RoI size.

    Returns:
        ``[K, C / (PH * PW), PH, PW]``.
    """
    pooled, rois, channels_out = _rois.position_sensitive_arguments(input, boxes, output_size, "ps_roi_align")
    height, width = input.shape[2], input.shape[3]
    if rois.shape[0] == 0:
        return input.new_zeros((0, channels_out, pooled[0], pooled[1]))
    table = position_sensitive_table(input, pooled)
    planes = pooled[0] * pooled[1]
    corners = rois[:, 1:] * spatial_scale - 0.5  # [K, 4]
    roi_w = corners[:, 2] - corners[:, 0]
    roi_h = corners[:, 3] - corners[:, 1]
    bin_h, bin_w = roi_h / pooled[0], roi_w / pooled[1]
    if sampling_ratio > 0:
        grid_h = torch.full_like(roi_h, sampling_ratio, dtype=torch.long)
        grid_w = grid_h
    else:
        grid_h = torch.ceil(roi_h / pooled[0]).long()
        grid_w = torch.ceil(roi_w / pooled[1]).long()

    def chunk(idx: Tensor) -> Tensor:
        gh, gw = grid_h[idx], grid_w[idx]
        bound_h = sampling_ratio if sampling_ratio > 0 else _rois.window_bound(gh, 0)
        bound_w = sampling_ratio if sampling_ratio > 0 else _rois.window_bound(gw, 0)
        ys, wy = _axis_corners(corners[idx, 1], bin_h[idx], gh, pooled[0], bound_h, height)  # [k, PH, gh, 2]
        xs, wx = _axis_corners(corners[idx, 0], bin_w[idx], gw, pooled[1], bound_w, width)  # [k, PW, gw, 2]
        count = (gh.clamp(min=0) * gw.clamp(min=0)).clamp(min=1).to(input.dtype)  # [k]
        plane = rois[idx, 0].long()[:, None, None] * planes + torch.arange(planes, device=input.device).reshape(
            1, pooled[0], pooled[1]
        )  # [k, PH, PW]
        # Entry layout [k, PH, PW, gh, 2, gw, 2]: every sample's four corners, per bin.
        rows = (plane[:, :, :, None, None, None, None] * height + ys[:, :, None, :, :, None, None]) * width + xs[
            :, None, :, None, None, :, :
        ]
        weights = wy[:, :, None, :, :, None, None] * wx[:, None, :, None, None, :, :]
        weights = weights / count.reshape(-1, 1, 1, 1, 1, 1, 1)
        bags = rows.shape[0] * planes
        out = F.embedding_bag(rows.reshape(bags, -1), table, mode="sum", per_sample_weights=weights.reshape(bags, -1))
        return out.reshape(rows.shape[0], pooled[0], pooled[1], channels_out)

    samples = grid_h.clamp(min=1) * grid_w.clamp(min=1)  # [K]
    out = _rois.run_in_chunks(samples, 4 * planes * 2, chunk)  # [K, PH, PW, C_out]
    return out.permute(0, 3, 1, 2).contiguous()


class PSRoIAlign(nn.Module):
    """``ps_roi_align`` as a module: ``PSRoIAlign(output_size, spatial_scale, sampling_ratio)(input, rois)``."""

    def __init__(
        self, output_size: Union[int, List[int], Tuple[int, int]], spatial_scale: float, sampling_ratio: int
    ) -> None:
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio

    def forward(self, input: Tensor, rois: BoxesArg) -> Tensor:
        """input: [B, C, H, W]; rois: [K, 5] or list of [L, 4] -> [K, C / (PH * PW), PH, PW]."""
        return ps_roi_align(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"sampling_ratio={self.sampling_ratio})"
        )
