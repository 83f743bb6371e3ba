"""Non-maximum suppression: ``nms``, ``batched_nms``, ``batched_nms_top``, one reference and its faster forms.

Greedy NMS visits boxes by decreasing score (ties: lower index first) and keeps a box unless
its IoU with an already kept box is greater than ``iou_threshold``. The IoU of a pair is
``inter / (area_i + area_j - inter)`` in the boxes' floating dtype (float32 for half types),
compared with the threshold as a double, exactly as torchvision's kernel does, so the kept sets
are identical. ``batched_nms`` runs it per class: by offsetting each class's coordinates while
``N * 4`` is at most ``offset_trick_limit`` (4000 on the CPU, 100_000 elsewhere, as torchvision),
else by grouping the boxes by class.

The reference below (plain torch, what TorchScript compiles) defines the result. The other
forms are registered on ``nms_dispatcher`` and chosen per call by the boxes' device and the
execution mode (``dispatch.current_mode()``); each computes the reference's kept indices:

==========  ===========  =======  =====================================================
form        devices      mode     how
==========  ===========  =======  =====================================================
numpy       cpu          eager    blocked greedy passes in NumPy (``_nms_numpy``)
device      any          eager    IoU mask + fixed-point greedy on the device (``_nms_device``)
onnx        any          trace    ``NonMaxSuppression`` node (``_nms_export``)
custom_op   any          compile  ``torch.ops.torchdet.nms``, unbacked output size (``_nms_export``)
==========  ===========  =======  =====================================================

The graph forms use the offset form of ``batched_nms`` at every size.
"""
from __future__ import annotations

from typing import List, Optional

import torch
from torch import Tensor

from torchdet.errors import InvalidOpInputError
from torchdet.ops._nms_common import NMSForm, compute_coords, offset_boxes, offset_trick_limit
from torchdet.ops._nms_device import DEVICE_FORM
from torchdet.ops._nms_export import CUSTOM_OP_FORM, ONNX_FORM
from torchdet.ops._nms_numpy import NUMPY_FORM
from torchdet.ops._profiling import profiled
from torchdet.ops.dispatch import OpDispatcher

__all__ = ["nms", "batched_nms", "batched_nms_top", "nms_dispatcher"]

_BLOCK = 128  # rows of the reference's greedy blocks
_TILE = 1024  # columns per IoU tile of the reference


# ---------------------------------------------------------------- reference


def _threshold_below_torch(iou_threshold: float, dtype: torch.dtype) -> Tensor:
    """``_nms_common.threshold_below`` in torch ops (TorchScript cannot call NumPy), a 0-dim tensor of ``dtype``."""
    t = torch.tensor(iou_threshold, dtype=dtype)
    if float(t) > iou_threshold:
        t = torch.nextafter(t, torch.tensor(float("-inf"), dtype=dtype))
    return t


def _iou_above_torch(rows: Tensor, cols: Tensor, coords: Tensor, area: Tensor, threshold: Tensor) -> Tensor:
    """Whether IoU > threshold for every (row, col) pair.

    ``rows [R]``, ``cols [M]``: box indices into ``coords [N, 4]`` and ``area [N]``. Returns ``[R, M]`` bool.
    """
    a, b = coords[rows], coords[cols]  # [R, 4], [M, 4]
    w = torch.minimum(a[:, 2:3], b[:, 2]) - torch.maximum(a[:, 0:1], b[:, 0])
    w = w.clamp(min=0)
    h = torch.minimum(a[:, 3:4], b[:, 3]) - torch.maximum(a[:, 1:2], b[:, 1])
    h = h.clamp(min=0)
    inter = w * h
    union = area[rows][:, None] + area[cols]
    union = union - inter
    return inter / union > threshold  # 0/0 is NaN, never above


def _greedy_keep_torch(
    coords: Tensor, threshold: Tensor, groups: Optional[Tensor], block: int = _BLOCK, tile: int = _TILE
) -> Tensor:
    """Greedy NMS over boxes already in visiting order, ``block`` rows at a time.

    Inside a block the greedy pass runs over the block's pairwise overlaps; the block's kept
    boxes then suppress every later box (of their group) at once, ``tile`` columns at a time.

    Args:
        coords: ``[N, 4]`` boxes sorted by decreasing score, float32 or float64.
        threshold: from ``_threshold_below_torch``.
        groups: optional ``[N]`` non-decreasing group ids; boxes only suppress boxes of their
            own group (each group's boxes still by decreasing score).

    Returns:
        ``[N]`` bool, True for kept boxes.
    """
    n = coords.shape[0]
    area = (coords[:, 2] - coords[:, 0]) * (coords[:, 3] - coords[:, 1])
    alive = torch.ones(n, dtype=torch.bool, device=coords.device)
    group_end: Optional[Tensor] = None
    if groups is not None:
        group_end = torch.searchsorted(groups, groups, right=True)
    for start in range(0, n, block):
        stop = min(start + block, n)
        rows = start + torch.nonzero(alive[start:stop]).flatten()
        if rows.numel() == 0:
            continue
        over = torch.triu(_iou_above_torch(rows, rows, coords, area, threshold), 1)  # [R, R]
        if groups is not None:
            over &= groups[rows][:, None] == groups[rows][None, :]
        suppressed = torch.zeros(rows.numel(), dtype=torch.bool, device=coords.device)
        candidates: List[int] = torch.nonzero(over.any(dim=1)).flatten().tolist()
        for r in candidates:
            if not bool(suppressed[r]):
                suppressed |= over[r]
        alive[rows[suppressed]] = False
        kept = rows[~suppressed]
        end = n
        if group_end is not None:
            end = int(group_end[rows[-1]])
        later = stop + torch.nonzero(alive[stop:end]).flatten()
        for tile_start in range(0, later.numel(), tile):
            cols = later[tile_start : tile_start + tile]
            hit = _iou_above_torch(kept, cols, coords, area, threshold)  # [K, T]
            if groups is not None:
                hit &= groups[kept][:, None] == groups[cols][None, :]
            alive[cols[hit.any(dim=0)]] = False
    return alive


def _greedy_nms_reference(boxes: Tensor, scores: Tensor, iou_threshold: float, idxs: Optional[Tensor]) -> Tensor:
    """Greedy NMS (``idxs`` None) or per-class greedy NMS on the original coordinates."""
    if boxes.shape[0] == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores.detach(), descending=True, stable=True)[1]  # [N]
    groups: Optional[Tensor] = None
    if idxs is not None:
        classes = idxs[order]
        by_class = torch.sort(classes, stable=True)[1]
        order = order[by_class]
        groups = classes[by_class]
    coords = compute_coords(boxes)[order]
    alive = _greedy_keep_torch(coords, _threshold_below_torch(iou_threshold, coords.dtype), groups)
    keep = order[alive]
    if idxs is not None:
        keep = torch.sort(keep)[0]
        keep = keep[torch.sort(scores.detach()[keep], descending=True, stable=True)[1]]
    return keep


def _nms_reference(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    return _greedy_nms_reference(boxes, scores, iou_threshold, None)


def _batched_nms_reference(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    if boxes.shape[0] == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    if boxes.numel() > offset_trick_limit(boxes.device.type):
        return _greedy_nms_reference(boxes, scores, iou_threshold, idxs)
    return _greedy_nms_reference(offset_boxes(boxes, idxs), scores, iou_threshold, None)


def _batched_nms_top_reference(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float,
                               max_kept: int) -> Tensor:
    return _batched_nms_reference(boxes, scores, idxs, iou_threshold)[:max_kept]


REFERENCE_FORM = NMSForm(nms=_nms_reference, batched_nms=_batched_nms_reference,
                         batched_nms_top=_batched_nms_top_reference)

nms_dispatcher = OpDispatcher("nms", reference=REFERENCE_FORM)
nms_dispatcher.register("numpy", devices=("cpu",), modes=("eager",), priority=1)(NUMPY_FORM)
nms_dispatcher.register("device", modes=("eager",))(DEVICE_FORM)
nms_dispatcher.register("onnx", modes=("trace",))(ONNX_FORM)
nms_dispatcher.register("custom_op", modes=("compile",))(CUSTOM_OP_FORM)


# ---------------------------------------------------------------- public ops


def _check_inputs(boxes: Tensor, scores: Tensor) -> None:
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise InvalidOpInputError(f"nms expects boxes of shape [N, 4], got {list(boxes.shape)}")
    if scores.dim() != 1 or scores.shape[0] != boxes.shape[0]:
        raise InvalidOpInputError(
            f"nms expects scores of shape [N] with N = {boxes.shape[0]} boxes, got {list(scores.shape)}")


def _check_idxs(scores: Tensor, idxs: Tensor) -> None:
    if idxs.shape != scores.shape:
        raise InvalidOpInputError(
            f"batched_nms expects idxs of shape {list(scores.shape)} (one class per box), got {list(idxs.shape)}")


@torch.jit.unused
def _form(boxes: Tensor, scores: Tensor, idxs: Optional[Tensor] = None) -> NMSForm:
    """Check the inputs and pick the form for the boxes' device and the current mode.

    ``torch.fx.symbolic_trace`` passes proxies, whose shapes are unknown: only the mode decides.
    """
    if not isinstance(boxes, Tensor):
        return nms_dispatcher.select("meta")[1]
    _check_inputs(boxes, scores)
    if idxs is not None:
        _check_idxs(scores, idxs)
    return nms_dispatcher.select(boxes.device.type)[1]


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression.

    Args:
        boxes: ``[N, 4]`` boxes in ``xyxy`` format.
        scores: ``[N]`` scores.
        iou_threshold: a box is discarded when its IoU with a kept, higher-scoring box is
            greater than this.

    Returns:
        ``[K]`` int64 indices of the kept boxes, by decreasing score, on ``boxes.device``.
    """
    if torch.jit.is_scripting():
        _check_inputs(boxes, scores)
        return _nms_reference(boxes, scores, iou_threshold)
    return _nms_dispatched(boxes, scores, iou_threshold)


@torch.jit.unused
@profiled("nms")
def _nms_dispatched(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    return _form(boxes, scores).nms(boxes, scores, iou_threshold)


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """Non-maximum suppression run independently per category.

    Args:
        boxes: ``[N, 4]`` boxes in ``xyxy`` format.
        scores: ``[N]`` scores.
        idxs: ``[N]`` integer category of each box; boxes of different categories never
            suppress each other.
        iou_threshold: as in ``nms``.

    Returns:
        ``[K]`` int64 indices of the kept boxes, by decreasing score, on ``boxes.device``.
    """
    if torch.jit.is_scripting():
        _check_inputs(boxes, scores)
        _check_idxs(scores, idxs)
        return _batched_nms_reference(boxes, scores, idxs, iou_threshold)
    return _batched_nms_dispatched(boxes, scores, idxs, iou_threshold)


@torch.jit.unused
@profiled("nms")
def _batched_nms_dispatched(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    return _form(boxes, scores, idxs).batched_nms(boxes, scores, idxs, iou_threshold)


def batched_nms_top(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float, max_kept: int) -> Tensor:
    """``batched_nms(boxes, scores, idxs, iou_threshold)[:max_kept]``, for detectors that keep only
    their best ``max_kept`` boxes (the NumPy form decides the head from the best boxes first).

    Returns:
        ``[min(K, max_kept)]`` int64 indices, by decreasing score, equal to the slice above.
    """
    if torch.jit.is_scripting():
        _check_inputs(boxes, scores)
        _check_idxs(scores, idxs)
        return _batched_nms_top_reference(boxes, scores, idxs, iou_threshold, max_kept)
    return _batched_nms_top_dispatched(boxes, scores, idxs, iou_threshold, max_kept)


@torch.jit.unused
@profiled("nms")
def _batched_nms_top_dispatched(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float,
                                max_kept: int) -> Tensor:
    return _form(boxes, scores, idxs).batched_nms_top(boxes, scores, idxs, iou_threshold, max_kept)
