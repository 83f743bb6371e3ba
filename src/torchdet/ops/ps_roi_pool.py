"""Position-sensitive RoI average pooling (Dai et al., R-FCN) in pure PyTorch.

The input has ``C = C_out * PH * PW`` channels; output bin ``(c, ph, pw)`` averages input channel
``(c * PH + ph) * PW + pw`` over the bin's pixels. Bins follow torchvision's integer rules: the
corners are scaled and rounded half away from zero, the RoI spans ``max(x2 - x1, 1)`` pixels (no
``+ 1``, unlike ``roi_pool``), bin ``p`` covers ``[floor(p * size / P), ceil((p + 1) * size / P))``
shifted to the RoI and clipped to the map; an empty bin is 0.

How it runs: the input is laid out as one table of ``C_out``-vectors per (image, bin, pixel), so
a bin reads only its own channels, and ``F.embedding_bag`` sums each bin's pixels with weight
``1 / area`` in one fused gather; bins are padded to the chunk's largest (zero weights).
"""
from __future__ import annotations

from typing import List, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchdet.ops import _rois
from torchdet.ops._fx import fx_leaf
from torchdet.ops._rois import BoxesArg
from torchdet.ops.roi_pool import _roi_pixel_bins, _window_entries

__all__ = ["ps_roi_pool", "PSRoIPool"]


def position_sensitive_table(input: Tensor, pooled: Tuple[int, int]) -> Tensor:
    """``[B * PH*PW * H * W, C_out]``: row ``((b * PH*PW + bin) * H + y) * W + x`` holds the
    channels ``c * PH*PW + bin`` of pixel ``(y, x)`` of image ``b``."""
    batch, channels, height, width = input.shape
    bins = pooled[0] * pooled[1]
    grouped = input.reshape(batch, channels // bins, bins, height, width)
    return grouped.permute(0, 2, 3, 4, 1).contiguous().reshape(batch * bins * height * width, channels // bins)


@fx_leaf
def ps_roi_pool(
    input: Tensor, boxes: BoxesArg, output_size: Union[int, List[int], Tuple[int, int]], spatial_scale: float = 1.0
) -> Tensor:
    """Position-sensitive RoI average pooling (R-FCN).

    Args:
        input: ``[B, C, H, W]`` with ``C`` a multiple of ``PH * PW``.
        boxes: ``[K, 5]`` RoIs ``(batch_index, x1, y1, x2, y2)`` in ``input``'s dtype, or a list
            of ``[L_i, 4]`` boxes per image.
        output_size: ``(PH, PW)`` or one int for both.
        spatial_scale: factor from box coordinates to ``input``'s pixels.

    Returns:
        ``[K, C / (PH * PW), PH, PW]``.
    """
    pooled, rois, channels_out = _rois.position_sensitive_arguments(input, boxes, output_size, "ps_roi_pool")
    height, width = input.shape[2], input.shape[3]
    if rois.shape[0] == 0:
        return input.new_zeros((0, channels_out, pooled[0], pooled[1]))
    table = position_sensitive_table(input, pooled)
    bins = _roi_pixel_bins(rois, spatial_scale, pooled, height, width, plus_one=False)
    lo_h, hi_h, lo_w, hi_w = bins
    window = (hi_h - lo_h).amax(dim=1).clamp(min=1) * (hi_w - lo_w).amax(dim=1).clamp(min=1)  # [K]
    planes = pooled[0] * pooled[1]

    def chunk(idx: Tensor) -> Tensor:
        chunk_bins = [b[idx] for b in bins]
        rows, valid = _window_entries(rois[idx, 0].long(), *chunk_bins, height, width, planes)
        area = valid.sum(dim=3, keepdim=True).clamp(min=1).to(input.dtype)  # [k, PH, PW, 1]
        weights = valid.to(input.dtype) / area
        count = rows.shape[0] * planes
        pooled_bins = F.embedding_bag(
            rows.reshape(count, -1), table, mode="sum", per_sample_weights=weights.reshape(count, -1)
        )  # [k * PH * PW, C_out]
        return pooled_bins.reshape(rows.shape[0], pooled[0], pooled[1], channels_out)

    out = _rois.run_in_chunks(window, 4 * planes, chunk)  # [K, PH, PW, C_out]
    return out.permute(0, 3, 1, 2).contiguous()


class PSRoIPool(nn.Module):
    """``ps_roi_pool`` as a module: ``PSRoIPool(output_size, spatial_scale)(input, rois)``."""

    def __init__(self, output_size: Union[int, List[int], Tuple[int, int]], spatial_scale: float) -> None:
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale

    def forward(self, input: Tensor, rois: BoxesArg) -> Tensor:
        """input: [B, C, H, W]; rois: [K, 5] or list of [L, 4] -> [K, C / (PH * PW), PH, PW]."""
        return ps_roi_pool(input, rois, self.output_size, self.spatial_scale)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(output_size={self.output_size}, spatial_scale={self.spatial_scale})"
