"""RoI max pooling (Girshick, Fast R-CNN) in pure PyTorch, with torchvision's rules.

For each RoI ``(b, x1, y1, x2, y2)`` the corners are scaled by ``spatial_scale`` and rounded
half away from zero; the RoI spans ``max(x2 - x1 + 1, 1)`` columns and likewise rows. Output bin
``(ph, pw)`` is the maximum over pixel rows ``[floor(ph * h / PH), ceil((ph + 1) * h / PH))`` and
the matching columns, shifted to the RoI and clipped to the map; an empty bin is 0. The gradient
goes to the pixel holding the maximum.

How it runs, two forms behind one dispatcher:

- reference (any device, tracing and export): the feature map becomes a table of ``C``-vectors
  (``[B*H*W, C]``); each bin's pixels are gathered with ``F.embedding`` into a window padded to
  the largest bin of a chunk of RoIs (RoIs sorted by bin size so little is padded), padding is
  set to ``-inf`` and the window max taken. Under ``torch.export`` the window size is a
  data-dependent size of the exported program.
- ``crop_loop`` (eager, CPU): a RoI inside the map (or overhanging it by a pixel or two, read as
  ``-inf``) whose bins are adaptive pooling's (``floor(i * h / P)``, ``ceil((i + 1) * h / P)`` in
  integers, which the float rule nearly always gives) is ``F.adaptive_max_pool2d`` of its crop, a
  view of the channels-last map; the backward runs the same loop with
  ``adaptive_max_pool2d_backward``. The other RoIs take the reference path. Reading the crops in
  place avoids the padded windows' memory traffic, an order of magnitude on detection-sized RoIs.
"""
from __future__ import annotations

from typing import List, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchdet.ops import _rois
from torchdet.ops._fx import fx_leaf
from torchdet.ops._rois import BoxesArg
from torchdet.ops.dispatch import OpDispatcher

__all__ = ["roi_pool", "RoIPool"]


def _roi_pixel_bins(
    rois: Tensor, spatial_scale: float, pooled: Tuple[int, int], height: int, width: int, plus_one: bool
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Integer bins ``(lo_h, hi_h, lo_w, hi_w)`` (``[K, PH]`` and ``[K, PW]``) of the RoIs."""
    corners = _rois.c_round(rois[:, 1:] * spatial_scale)  # [K, 4]
    extra = 1 if plus_one else 0
    roi_w = (corners[:, 2] - corners[:, 0] + extra).clamp(min=1)
    roi_h = (corners[:, 3] - corners[:, 1] + extra).clamp(min=1)
    lo_h, hi_h = _rois.integer_bins(corners[:, 1], roi_h, pooled[0], height)
    lo_w, hi_w = _rois.integer_bins(corners[:, 0], roi_w, pooled[1], width)
    return lo_h, hi_h, lo_w, hi_w


def _window_entries(
    batch: Tensor, lo_h: Tensor, hi_h: Tensor, lo_w: Tensor, hi_w: Tensor, height: int, width: int, planes: int
) -> Tuple[Tensor, Tensor]:
    """Table rows and validity of every pixel of every bin, padded to the chunk's largest bin.

    The table has ``planes`` planes of ``H * W`` rows per image (one for roi_pool, one per bin for
    the position-sensitive pools, where bin ``(ph, pw)`` reads plane ``ph * PW + pw``).

    Returns:
        ``(rows, valid)``, both ``[K, PH, PW, window]``.
    """
    count, ph, pw = lo_h.shape[0], lo_h.shape[1], lo_w.shape[1]
    bound_h = _rois.window_bound(hi_h - lo_h, 0)
    bound_w = _rois.window_bound(hi_w - lo_w, 0)
    ys, valid_y = _rois.window_indices(lo_h, hi_h, bound_h, height)  # [K, PH, bh]
    xs, valid_x = _rois.window_indices(lo_w, hi_w, bound_w, width)  # [K, PW, bw]
    plane = batch[:, None, None] * planes  # [K, 1, 1]
    if planes > 1:
        plane = plane + torch.arange(ph * pw, device=batch.device).reshape(1, ph, pw)
    rows = (plane[:, :, :, None, None] * height + ys[:, :, None, :, None]) * width + xs[:, None, :, None, :]
    valid = valid_y[:, :, None, :, None] & valid_x[:, None, :, None, :]  # [K, PH, PW, bh, bw]
    window = bound_h * bound_w
    return rows.reshape(count, ph, pw, window), valid.reshape(count, ph, pw, window)


def _max_pool_chunk(
    table: Tensor, rois: Tensor, bins: Tuple[Tensor, Tensor, Tensor, Tensor], height: int, width: int
) -> Tensor:
    """``[k, PH, PW, C]`` maxima for one chunk of RoIs."""
    lo_h, hi_h, lo_w, hi_w = bins
    rows, valid = _window_entries(rois[:, 0].long(), lo_h, hi_h, lo_w, hi_w, height, width, 1)
    values = F.embedding(rows, table)  # [k, PH, PW, window, C]
    values = values.masked_fill(~valid[..., None], float("-inf"))
    maxima = values.max(dim=3).values  # [k, PH, PW, C]
    empty = ~valid.any(dim=3)  # [k, PH, PW]
    return maxima.masked_fill(empty[..., None], 0.0)


def _roi_pool_reference(input: Tensor, rois: Tensor, pooled: Tuple[int, int], spatial_scale: float) -> Tensor:
    """``[K, C, PH, PW]`` by gathered windows (any device, traceable, exportable)."""
    batch, channels, height, width = input.shape
    if rois.shape[0] == 0:
        return input.new_zeros((0, channels, pooled[0], pooled[1]))
    table = input.permute(0, 2, 3, 1).contiguous().reshape(batch * height * width, channels)
    bins = _roi_pixel_bins(rois, spatial_scale, pooled, height, width, plus_one=True)
    lo_h, hi_h, lo_w, hi_w = bins
    window = (hi_h - lo_h).amax(dim=1).clamp(min=1) * (hi_w - lo_w).amax(dim=1).clamp(min=1)  # [K]

    def chunk(idx: Tensor) -> Tensor:
        return _max_pool_chunk(table, rois[idx], tuple(b[idx] for b in bins), height, width)  # type: ignore[arg-type]

    out = _rois.run_in_chunks(window, pooled[0] * pooled[1] * channels, chunk)  # [K, PH, PW, C]
    return out.permute(0, 3, 1, 2).contiguous()


roi_pool_dispatch = OpDispatcher("roi_pool", reference=_roi_pool_reference)


_MAX_MARGIN = 2  # pixels of -inf padding: RoIs of clipped proposals overhang the map by at most 1


def _adaptive_bins_match(size: Tensor, pooled: int) -> Tensor:
    """``[K]``: the float-rule bin offsets of RoIs ``size`` pixels long equal adaptive pooling's
    integer ones (``floor(p * size / P)``, ``ceil((p + 1) * size / P)``)."""
    p = torch.arange(pooled, device=size.device, dtype=size.dtype)
    bin_size = size / pooled
    float_lo = torch.floor(p[None, :] * bin_size[:, None]).long()
    float_hi = torch.ceil((p[None, :] + 1) * bin_size[:, None]).long()
    q, length = p.long()[None, :], size.long()[:, None]
    return (float_lo == (q * length) // pooled).all(dim=1) & (float_hi == ((q + 1) * length + pooled - 1) // pooled).all(
        dim=1
    )


def _pool_crops(input: Tensor, rows: Tensor, pooled: Tuple[int, int], margin: int) -> Tensor:
    """``[k, C, PH, PW]``: adaptive max pooling of each RoI's crop.

    ``rows`` is ``[k, 5]`` int64 ``(b, y, x, h, w)``: image, first row and column, size. Crops may
    overhang the map by ``margin`` pixels, which read ``-inf``: a bin partly outside takes the max
    of its pixels inside (clipping), a bin wholly outside is 0 (empty).
    """
    # Channels-last crops let adaptive_max_pool2d vectorise over channels (an order of magnitude).
    feature = input.detach()
    if margin > 0:
        feature = F.pad(feature, (margin, margin, margin, margin), value=float("-inf"))
    feature = feature.contiguous(memory_format=torch.channels_last)
    return _CropMaxPool.apply(input, feature, rows, pooled, margin)


class _CropMaxPool(torch.autograd.Function):
    """Forward: adaptive max pooling of each (padded, channels-last) crop. Backward: the same loop
    with ``adaptive_max_pool2d_backward`` into a padded gradient map (each RoI's argmax stays in
    its crop), then the padding is cut off."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, input: Tensor, feature: Tensor, rows: Tensor, pooled: Tuple[int, int], margin: int
    ) -> Tensor:
        boxes = rows.tolist()
        values, argmaxes = [], []
        for b, y, x, h, w in boxes:
            crop = feature[b : b + 1, :, y + margin : y + margin + h, x + margin : x + margin + w]  # a view
            if ctx.needs_input_grad[0]:
                pooled_values, argmax = F.adaptive_max_pool2d(crop, pooled, return_indices=True)
                argmaxes.append(argmax)
            else:
                pooled_values = F.adaptive_max_pool2d(crop, pooled)
            values.append(pooled_values)
        out = torch.cat(values, dim=0).contiguous()  # [k, C, PH, PW]
        ctx.boxes, ctx.argmaxes, ctx.margin, ctx.shape = boxes, argmaxes, margin, feature.shape
        return out.masked_fill(torch.isneginf(out), 0.0)

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        margin = ctx.margin
        grad = grad_out.new_zeros(ctx.shape).contiguous(memory_format=torch.channels_last)
        for i, ((b, y, x, h, w), argmax) in enumerate(zip(ctx.boxes, ctx.argmaxes)):
            region = grad[b : b + 1, :, y + margin : y + margin + h, x + margin : x + margin + w]
            region += torch.ops.aten.adaptive_max_pool2d_backward(grad_out[i : i + 1], region, argmax)
        height, width = ctx.shape[2] - 2 * margin, ctx.shape[3] - 2 * margin
        grad = grad[:, :, margin : margin + height, margin : margin + width].contiguous()
        return grad, None, None, None, None


@roi_pool_dispatch.register("crop_loop", devices=("cpu",), modes=("eager",))
def _roi_pool_crop_loop(input: Tensor, rois: Tensor, pooled: Tuple[int, int], spatial_scale: float) -> Tensor:
    """``[K, C, PH, PW]`` by adaptive max pooling of each RoI's crop (eager only)."""
    batch, channels, height, width = input.shape
    corners = _rois.c_round(rois[:, 1:] * spatial_scale)  # [K, 4]
    roi_w = (corners[:, 2] - corners[:, 0] + 1).clamp(min=1)
    roi_h = (corners[:, 3] - corners[:, 1] + 1).clamp(min=1)
    overhang = torch.stack(
        [-corners[:, 0], -corners[:, 1], corners[:, 0] + roi_w - width, corners[:, 1] + roi_h - height], dim=1
    ).amax(dim=1).clamp(min=0)  # [K] pixels outside the map
    margin = min(int(overhang.max()), _MAX_MARGIN) if rois.shape[0] > 0 else 0
    fast = (overhang <= margin) & (rois[:, 0] >= 0) & (rois[:, 0] < batch)
    fast &= _adaptive_bins_match(roi_h, pooled[0]) & _adaptive_bins_match(roi_w, pooled[1])
    fast_idx = torch.nonzero(fast).flatten()
    slow_idx = torch.nonzero(~fast).flatten()
    pieces = []
    if fast_idx.numel() > 0:
        rows = torch.stack([rois[fast_idx, 0], corners[fast_idx, 1], corners[fast_idx, 0], roi_h[fast_idx],
                            roi_w[fast_idx]], dim=1).long()
        pieces.append(_pool_crops(input, rows, pooled, margin))
    if slow_idx.numel() > 0:
        pieces.append(_roi_pool_reference(input, rois[slow_idx], pooled, spatial_scale))
    if not pieces:
        return input.new_zeros((0, channels, pooled[0], pooled[1]))
    order = torch.cat([fast_idx, slow_idx])
    return torch.cat(pieces, dim=0)[torch.argsort(order)]


@fx_leaf
def roi_pool(
    input: Tensor, boxes: BoxesArg, output_size: Union[int, List[int], Tuple[int, int]], spatial_scale: float = 1.0
) -> Tensor:
    """RoI max pooling (Fast R-CNN).

    Args:
        input: ``[B, C, H, W]`` feature map (float).
        boxes: ``[K, 5]`` RoIs ``(batch_index, x1, y1, x2, y2)`` in the same dtype as ``input``,
            or a list of ``[L_i, 4]`` boxes per image.
        output_size: ``(PH, PW)`` or one int for both.
        spatial_scale: factor from box coordinates to ``input``'s pixels (e.g. 1/16).

    Returns:
        ``[K, C, PH, PW]`` pooled features.
    """
    pooled = _rois.pair(output_size, "output_size", "roi_pool")
    rois = _rois.to_rois(boxes, "roi_pool")
    _rois.check_input(input, rois, "roi_pool")
    # The mode is known without dispatch.current_mode(): fx proxies never reach this point (fx_leaf).
    mode = "compile" if _rois.is_exporting() else ("trace" if torch.jit.is_tracing() else "eager")
    _, implementation = roi_pool_dispatch.select(input.device.type, mode)
    return implementation(input, rois.detach(), pooled, spatial_scale)


class RoIPool(nn.Module):
    """``roi_pool`` as a module: ``RoIPool(output_size, spatial_scale)(input, rois)``."""

    def __init__(self, output_size: Union[int, List[int], Tuple[int, int]], spatial_scale: float) -> None:
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale

    def forward(self, input: Tensor, rois: BoxesArg) -> Tensor:
        """input: [B, C, H, W]; rois: [K, 5] or list of [L, 4] -> [K, C, PH, PW]."""
        return roi_pool(input, rois, self.output_size, self.spatial_scale)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(output_size={self.output_size}, spatial_scale={self.spatial_scale})"
