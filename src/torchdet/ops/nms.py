"""Non-maximum suppression, exact greedy semantics, pure PyTorch + NumPy.

Greedy NMS visits boxes by decreasing score (ties: lower index first) and keeps a box unless
its IoU with an already kept box is greater than ``iou_threshold``. The IoU of a pair is
``inter / (area_i + area_j - inter)`` in the boxes' floating dtype, compared with the threshold
as a double, exactly as torchvision's kernel does, so the kept sets are identical.

How it is fast without a compiled kernel: boxes are taken in score order in blocks of
``_BLOCK`` rows. Inside a block the pairwise IoU matrix is small, and a short Python loop runs
the greedy pass over it (only over rows that suppress something). The block's kept boxes then
suppress all later boxes at once with one vectorised IoU computation, tiled over columns so
memory stays ``O(_BLOCK * _TILE)``. Boxes already suppressed are dropped from every later block,
so work shrinks as suppression proceeds. The arithmetic runs on CPU in NumPy (faster than
PyTorch for these elementwise passes); CUDA inputs are copied to the CPU and back.

Export: while tracing (``torch.onnx.export`` with ``dynamo=False``, ``torch.jit.trace``) ``nms``
runs through ``_NMSOp``, whose forward is the implementation above and whose ONNX symbolic is
``NonMaxSuppression``; ``batched_nms`` then always uses the coordinate-offset form (one NMS), as
the ONNX graph cannot group by class. Eager calls never take that path.

TorchScript: under ``torch.jit.script`` the NumPy code, the export path and the profiling
wrapper are not compiled (they sit in ``@torch.jit.unused`` functions); ``nms`` and
``batched_nms`` then run ``_greedy_keep_torch``, the same blocked greedy pass written with torch
ops, so scripted and eager calls keep exactly the same boxes.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from torchdet.ops._profiling import profiled

__all__ = ["nms", "batched_nms", "batched_nms_top"]

_BLOCK = 128  # rows whose greedy pass is resolved together (128 beat 64 and 256 on RPN-like and uniform boxes)
_TILE = 1024  # columns per vectorised IoU tile



def _offset_trick_limit(device_type: str) -> int:
    """Above this many box coordinates (N * 4), batched_nms groups by class instead of offsetting
    coordinates; the same switch points as torchvision, so both give bit-identical results."""
    return 4000 if device_type == "cpu" else 20000


def _threshold_below(iou_threshold: float, dtype: np.dtype) -> np.floating:
    """The largest value ``t`` of ``dtype`` with ``t <= iou_threshold``.

    For every ``x`` of ``dtype``, ``x > t`` holds exactly when ``float(x) > iou_threshold``, so the
    comparison can stay in ``dtype`` and still match a comparison made in double precision.
    """
    t = np.asarray(iou_threshold, dtype=dtype)
    if float(t) > iou_threshold:
        t = np.nextafter(t, np.asarray(-np.inf, dtype=dtype))
    return t[()]


def _iou_above(
    rows: np.ndarray, cols: np.ndarray, coords: np.ndarray, area: np.ndarray, threshold: np.floating
) -> np.ndarray:
    """Whether IoU > threshold for every (row, col) pair.

    Args:
        rows: ``[R]`` box indices.
        cols: ``[M]`` box indices.
        coords: ``[4, N]`` x1, y1, x2, y2 rows.
        area: ``[N]`` box areas.
        threshold: from ``_threshold_below``.

    Returns:
        ``[R, M]`` bool.
    """
    x1, y1, x2, y2 = coords
    w = np.minimum(x2[rows, None], x2[cols])
    w -= np.maximum(x1[rows, None], x1[cols])
    np.maximum(w, 0, out=w)
    h = np.minimum(y2[rows, None], y2[cols])
    h -= np.maximum(y1[rows, None], y1[cols])
    np.maximum(h, 0, out=h)
    w *= h  # intersection
    union = area[rows, None] + area[cols]
    union -= w
    with np.errstate(divide="ignore", invalid="ignore"):
        w /= union  # 0/0 (two empty boxes) is NaN and never above the threshold
    return w > threshold


def _greedy_keep(
    coords: np.ndarray, threshold: np.floating, groups: Optional[np.ndarray] = None
) -> np.ndarray:
    """Greedy NMS over boxes already in visiting order.

    Args:
        coords: ``[4, N]`` x1, y1, x2, y2 rows, boxes sorted by decreasing score.
        threshold: from ``_threshold_below``.
        groups: optional ``[N]`` non-decreasing group ids; boxes only suppress boxes of
            their own group (each group's boxes still by decreasing score).

    Returns:
        ``[N]`` bool, True for kept boxes.
    """
    n = coords.shape[1]
    x1, y1, x2, y2 = coords
    area = (x2 - x1) * (y2 - y1)
    alive = np.ones(n, dtype=bool)
    group_end = None
    if groups is not None:
        # group_end[i]: one past the last position of i's group.
        group_end = np.searchsorted(groups, groups, side="right")
    for start in range(0, n, _BLOCK):
        stop = min(start + _BLOCK, n)
        rows = start + np.flatnonzero(alive[start:stop])
        if rows.size == 0:
            continue
        # Greedy pass inside the block.
        over = np.triu(_iou_above(rows, rows, coords, area, threshold), 1)  # [R, R]
        if groups is not None:
            over &= groups[rows, None] == groups[rows]
        suppressed = np.zeros(rows.size, dtype=bool)
        for r in np.flatnonzero(over.any(axis=1)).tolist():
            if not suppressed[r]:
                suppressed |= over[r]
        alive[rows[suppressed]] = False
        kept = rows[~suppressed]
        # The block's kept boxes suppress later boxes.
        end = n if group_end is None else int(group_end[rows[-1]])
        later = stop + np.flatnonzero(alive[stop:end])
        for tile_start in range(0, later.size, _TILE):
            cols = later[tile_start : tile_start + _TILE]
            hit = _iou_above(kept, cols, coords, area, threshold)  # [K, T]
            if groups is not None:
                hit &= groups[kept, None] == groups[cols]
            alive[cols[hit.any(axis=0)]] = False
    return alive


_CLASS_BLOCK = 64  # rows per group resolved together by _greedy_keep_classes
# With fewer groups than this, running them side by side does not pay for the padding to the
# largest group (e.g. the RPN's 4-5 levels of 48 to 2000 boxes): _greedy_keep runs instead.
_MIN_GROUPS_SIDE_BY_SIDE = 8
_TILE_ELEMENTS = 1 << 15  # pairs per IoU tile: the temporaries stay in the L2 cache


def _iou_above_tiled(
    rows: np.ndarray, row_area: np.ndarray, cols: np.ndarray, col_area: np.ndarray, threshold: np.floating
) -> np.ndarray:
    """``_iou_above`` for ``k`` independent groups at once, same arithmetic, tiled over groups.

    Args:
        rows: ``[4, k, b]`` x1, y1, x2, y2 of each group's row boxes (NaN for padding).
        row_area: ``[k, b]``.
        cols: ``[4, k, m]`` column boxes (NaN for padding).
        col_area: ``[k, m]``.
        threshold: from ``_threshold_below``.

    Returns:
        ``[k, b, m]`` bool, IoU > threshold (False wherever a padding box is involved).
    """
    k, b = row_area.shape
    m = col_area.shape[1]
    out = np.empty((k, b, m), dtype=bool)
    step = max(1, _TILE_ELEMENTS // max(b * m, 1))
    buffers = [np.empty((min(step, k), b, m), dtype=rows.dtype) for _ in range(3)]
    with np.errstate(invalid="ignore", divide="ignore"):
        for start in range(0, k, step):
            stop = min(start + step, k)
            w, t1, t2 = (buf[: stop - start] for buf in buffers)
            r = rows[:, start:stop, :, None]
            c = cols[:, start:stop, None, :]
            np.minimum(r[2], c[2], out=w)
            w -= np.maximum(r[0], c[0], out=t1)
            np.maximum(w, 0, out=w)
            np.minimum(r[3], c[3], out=t1)
            t1 -= np.maximum(r[1], c[1], out=t2)
            np.maximum(t1, 0, out=t1)
            w *= t1  # intersection
            np.add(row_area[start:stop, :, None], col_area[start:stop, None, :], out=t1)
            t1 -= w  # union
            w /= t1
            np.greater(w, threshold, out=out[start:stop])
    return out


def _ranks(mask: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The True entries of ``[k, L]`` ``mask``: group, position, rank within its group, and group counts."""
    group, position = np.nonzero(mask)  # row-major: by group, then position
    counts = np.bincount(group, minlength=mask.shape[0])
    rank = np.arange(group.size) - (np.cumsum(counts) - counts)[group]
    return group, position, rank, counts


def _greedy_keep_classes(coords: np.ndarray, groups: np.ndarray, threshold: np.floating) -> np.ndarray:
    """``_greedy_keep`` with groups, every group's greedy pass run side by side.

    The groups are laid out as rows of a ``[G, n + 1]`` table (``n``: largest group; padding and
    the extra last column are NaN boxes, which never overlap anything). Each round takes the
    next ``block`` undecided boxes of every group, resolves them greedily among
    themselves (one short loop over row positions, vectorised over groups), and lets the kept
    ones suppress all later undecided boxes of their group in one tiled IoU computation. So the
    Python loops run about ``n`` steps in all, not ``N``, and suppressed boxes never become rows.

    Args:
        coords: ``[4, N]`` boxes ordered by group, then by decreasing score.
        groups: ``[N]`` non-decreasing group ids.
        threshold: from ``_threshold_below``.

    Returns:
        ``[N]`` bool, True for kept boxes.
    """
    total = coords.shape[1]
    starts = np.flatnonzero(np.diff(groups, prepend=groups[0] - 1))  # first box of each group
    counts = np.diff(np.append(starts, total))
    group_of = np.repeat(np.arange(starts.size), counts)
    slot_of = np.arange(total) - np.repeat(starts, counts)
    n = int(counts.max())
    table = np.full((4, starts.size, n + 1), np.nan, dtype=coords.dtype)
    table[:, group_of, slot_of] = coords
    area = (table[2] - table[0]) * (table[3] - table[1])
    undecided = np.zeros((starts.size, n + 1), dtype=bool)
    undecided[group_of, slot_of] = True
    keep = np.zeros_like(undecided)
    block = _CLASS_BLOCK
    later_in_block = np.triu(np.ones((block, block), dtype=bool), 1)
    active = np.arange(starts.size)  # groups with undecided boxes
    while active.size:
        pending = undecided[active]
        rank = np.cumsum(pending, axis=1)  # 1-based rank of each undecided box in its group
        alive = rank[:, -1] > 0
        if not alive.all():
            active, pending, rank = active[alive], pending[alive], rank[alive]
            if active.size == 0:
                break
        k = active.size
        # This round's rows: the first `block` undecided boxes of every group.
        group, slot, row, _ = _ranks(pending & (rank <= block))
        b = int(row.max()) + 1
        row_slot = np.full((k, b), n)  # column n is a NaN box
        row_slot[group, row] = slot
        rows = table[:, active[:, None], row_slot]  # [4, k, b]
        row_area = area[active[:, None], row_slot]
        over = _iou_above_tiled(rows, row_area, rows, row_area, threshold)
        over &= later_in_block[:b, :b]
        suppressed = np.zeros((k, b), dtype=bool)
        for r in np.flatnonzero(over.any(axis=(0, 2))).tolist():
            suppressed |= over[:, r, :] & ~suppressed[:, r : r + 1]
        undecided[active[group], slot] = False
        keep[active[group], slot] = ~suppressed[group, row]
        # The kept rows suppress the later undecided boxes of their group.
        group, slot, col, col_counts = _ranks(pending & (rank > block))
        if group.size == 0:
            continue
        col_slot = np.full((k, int(col_counts.max())), n)
        col_slot[group, col] = slot
        # Only the kept rows, packed to the left (suppressed rows would only add NaN work).
        kept_group, kept_row, kept_rank, kept_counts = _ranks(~suppressed & (row_slot < n))
        kept_slot = np.full((k, int(kept_counts.max())), n)
        kept_slot[kept_group, kept_rank] = row_slot[kept_group, kept_row]
        hit = _iou_above_tiled(
            table[:, active[:, None], kept_slot], area[active[:, None], kept_slot],
            table[:, active[:, None], col_slot], area[active[:, None], col_slot], threshold,
        )
        undecided[active[group], slot] = ~hit.any(axis=1)[group, col]
    return keep[group_of, slot_of]


def _as_numpy_coords(boxes: Tensor) -> np.ndarray:
    """``[N, 4]`` boxes -> ``[4, N]`` contiguous float32/float64 NumPy array on the CPU."""
    boxes = boxes.detach()
    if boxes.dtype != torch.float64:
        boxes = boxes.float()
    return np.ascontiguousarray(boxes.cpu().numpy().T)


def _is_exporting() -> bool:
    """True while ``torch.onnx.export`` or ``torch.jit.trace`` records the graph."""
    return torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()


class _NMSOp(torch.autograd.Function):
    """``nms`` as one traced node: the eager implementation forward, ONNX ``NonMaxSuppression`` symbolic."""

    @staticmethod
    def forward(ctx, boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:  # type: ignore[override]
        state = torch._C._get_tracing_state()  # the graph gets the symbolic only, not these ops
        torch._C._set_tracing_state(None)
        try:
            return _nms_eager(boxes, scores, iou_threshold)
        finally:
            torch._C._set_tracing_state(state)

    @staticmethod
    def symbolic(g, boxes, scores, iou_threshold: float):  # type: ignore[no-untyped-def]
        def const(value: Tensor):  # type: ignore[no-untyped-def]
            return g.op("Constant", value_t=value)

        boxes3 = g.op("Reshape", boxes, const(torch.tensor([1, -1, 4], dtype=torch.int64)))  # [1, N, 4]
        scores3 = g.op("Reshape", scores, const(torch.tensor([1, 1, -1], dtype=torch.int64)))  # [1, 1, N]
        max_out = const(torch.tensor([2**62], dtype=torch.int64))
        threshold = const(torch.tensor([float(iou_threshold)], dtype=torch.float32))
        selected = g.op("NonMaxSuppression", boxes3, scores3, max_out, threshold)  # [K, 3]
        return g.op("Gather", selected, const(torch.tensor(2, dtype=torch.int64)), axis_i=1)  # [K]


def _check_inputs(boxes: Tensor, scores: Tensor) -> None:
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"nms expects boxes of shape [N, 4], got {list(boxes.shape)}")
    if scores.dim() != 1 or scores.shape[0] != boxes.shape[0]:
        raise ValueError(f"nms expects scores of shape [N] with N = {boxes.shape[0]} boxes, got {list(scores.shape)}")


def _check_idxs(scores: Tensor, idxs: Tensor) -> None:
    if idxs.shape != scores.shape:
        raise ValueError(f"batched_nms expects idxs of shape {list(scores.shape)}, got {list(idxs.shape)}")


def _score_order(scores: Tensor) -> Tensor:
    """``[N]`` indices by decreasing score, ties by increasing index."""
    return torch.sort(scores.detach().cpu(), descending=True, stable=True)[1]


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
    _check_inputs(boxes, scores)
    if torch.jit.is_scripting():
        return _nms_torch(boxes, scores, iou_threshold, None)
    return _nms_python(boxes, scores, iou_threshold)


@torch.jit.unused
@profiled("nms")
def _nms_python(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Eager ``nms`` on checked inputs: the export node while tracing, else the NumPy pass."""
    if _is_exporting():
        with torch.no_grad():  # a graph for inference; the op is recorded by its symbolic
            return _NMSOp.apply(boxes, scores, float(iou_threshold))
    return _nms_eager(boxes, scores, iou_threshold)


def _nms_eager(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """``nms`` without the input checks (see there)."""
    if boxes.shape[0] == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    order = _score_order(scores)  # [N]
    coords = _as_numpy_coords(boxes)[:, order.numpy()]
    keep = _greedy_keep(coords, _threshold_below(iou_threshold, coords.dtype))
    return order[torch.from_numpy(keep)].to(boxes.device)


def _batched_nms_offset(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """Shift each class's boxes far apart so that one NMS never mixes classes."""
    max_coordinate = boxes.max()
    offsets = idxs.to(boxes) * (max_coordinate + torch.tensor(1).to(boxes))  # [N]
    return nms(boxes + offsets[:, None], scores, iou_threshold)


def _batched_nms_grouped(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """Per-class greedy passes over boxes ordered by (class, decreasing score), all classes at once.

    The index bookkeeping is done in NumPy: small torch ops pay for the intra-op thread pool.
    """
    score = _as_numpy_scores(scores)
    order = np.lexsort((-score, idxs.detach().cpu().numpy()))  # by class, then score; ties by index
    coords = _as_numpy_coords(boxes)[:, order]
    groups = idxs.detach().cpu().numpy()[order]
    threshold = _threshold_below(iou_threshold, coords.dtype)
    if np.count_nonzero(np.diff(groups)) + 1 >= _MIN_GROUPS_SIDE_BY_SIDE:
        keep = order[_greedy_keep_classes(coords, groups, threshold)]
    else:
        keep = order[_greedy_keep(coords, threshold, groups)]
    keep.sort()
    keep = keep[np.argsort(-score[keep], kind="stable")]
    return torch.from_numpy(keep).to(boxes.device)


def _as_numpy_scores(scores: Tensor) -> np.ndarray:
    """``[N]`` scores as float32/float64 NumPy (exact for every floating dtype torch sorts)."""
    scores = scores.detach().cpu()
    return (scores if scores.dtype == torch.float64 else scores.float()).numpy()


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
    _check_inputs(boxes, scores)
    _check_idxs(scores, idxs)
    if torch.jit.is_scripting():
        return _batched_nms_torch(boxes, scores, idxs, iou_threshold)
    return _batched_nms_python(boxes, scores, idxs, iou_threshold)


@torch.jit.unused
@profiled("nms")
def _batched_nms_python(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """Eager ``batched_nms`` on checked inputs (see there)."""
    if _is_exporting():
        # A zero is included in the maximum so that an empty input traces too (boxes are >= 0).
        max_coordinate = torch.cat([boxes.detach().flatten(), boxes.new_zeros(1)]).max()
        offsets = idxs.to(boxes) * (max_coordinate + 1)  # [N]
        return nms(boxes + offsets[:, None], scores, iou_threshold)
    if boxes.shape[0] == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    if boxes.numel() > _offset_trick_limit(boxes.device.type):
        return _batched_nms_grouped(boxes, scores, idxs, iou_threshold)
    return _batched_nms_offset(boxes, scores, idxs, iou_threshold)


def batched_nms_top(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float, max_kept: int) -> Tensor:
    """``batched_nms(boxes, scores, idxs, iou_threshold)[:max_kept]``, computed from the best boxes first.

    Detectors keep only their best ``detections_per_img`` boxes after NMS. A box's fate depends
    only on the boxes of its class that precede it in (decreasing score, increasing index)
    order, so the greedy passes over a prefix of that order decide the prefix exactly. The
    prefix starts at ``4 * max_kept`` boxes (widened to take every box tied with its last score)
    and grows 4x until it holds ``max_kept`` kept boxes or every box. With thousands of
    low-score candidates (SSD's 0.01 threshold over 90 classes) this skips most of the work.

    Returns:
        ``[min(K, max_kept)]`` int64 indices, by decreasing score, equal to the slice above.
    """
    _check_inputs(boxes, scores)
    _check_idxs(scores, idxs)
    if torch.jit.is_scripting():
        return _batched_nms_torch(boxes, scores, idxs, iou_threshold)[:max_kept]
    return _batched_nms_top_python(boxes, scores, idxs, iou_threshold, max_kept)


@torch.jit.unused
@profiled("nms")
def _batched_nms_top_python(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float,
                            max_kept: int) -> Tensor:
    """Eager ``batched_nms_top`` on checked inputs (see there)."""
    n = boxes.shape[0]
    if _is_exporting() or boxes.numel() <= _offset_trick_limit(boxes.device.type) or max_kept * 4 >= n:
        return _batched_nms_python(boxes, scores, idxs, iou_threshold)[:max_kept]
    # The full input would take the grouped path (the offset trick's shifted coordinates round
    # differently), so every prefix takes it too.
    score = _as_numpy_scores(scores)
    order = np.argsort(-score, kind="stable")  # decreasing score, ties by increasing index
    size = max_kept * 4
    while True:
        if size < n:
            size = int(np.searchsorted(-score[order], -score[order[size - 1]], side="right"))  # close the tie
        prefix = np.sort(order[:size])  # ascending indices: local ties order as global ones
        rows = torch.from_numpy(prefix).to(boxes.device)
        keep = _batched_nms_grouped(boxes[rows], scores[rows], idxs[rows], iou_threshold)
        if keep.shape[0] >= max_kept or size >= n:
            return rows[keep[:max_kept]]
        size *= 4


# ---------------------------------------------------------------- TorchScript path


def _threshold_below_torch(iou_threshold: float, dtype: torch.dtype) -> Tensor:
    """``_threshold_below`` as a 0-dim tensor of ``dtype``."""
    t = torch.tensor(iou_threshold, dtype=dtype)
    if float(t) > iou_threshold:
        t = torch.nextafter(t, torch.tensor(float("-inf"), dtype=dtype))
    return t


def _iou_above_torch(rows: Tensor, cols: Tensor, coords: Tensor, area: Tensor, threshold: Tensor) -> Tensor:
    """``_iou_above`` in torch ops, same operation order. ``coords``: ``[N, 4]``. Returns ``[R, M]`` bool."""
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
    """``_greedy_keep`` in torch ops (the TorchScript path): same blocks, same decisions.

    Args:
        coords: ``[N, 4]`` boxes sorted by decreasing score, float32 or float64.
        threshold: from ``_threshold_below_torch``.
        groups: optional ``[N]`` non-decreasing group ids (see ``_greedy_keep``).

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


def _ranks_torch(mask: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """``_ranks`` in torch ops."""
    found = torch.nonzero(mask)  # [P, 2], row-major
    group, position = found[:, 0], found[:, 1]
    counts = torch.bincount(group, minlength=mask.shape[0])
    rank = torch.arange(group.numel(), device=mask.device) - (torch.cumsum(counts, 0) - counts)[group]
    return group, position, rank, counts


def _iou_above_groups_torch(
    rows: Tensor, row_area: Tensor, cols: Tensor, col_area: Tensor, threshold: Tensor, budget: int = 1 << 20
) -> Tensor:
    """``_iou_above_tiled`` in torch ops. ``rows [k, b, 4]``, ``cols [k, m, 4]`` -> ``[k, b, m]`` bool."""
    k, b, m = rows.shape[0], rows.shape[1], cols.shape[1]
    step = max(1, budget // max(b * m, 1))
    parts: List[Tensor] = []
    for start in range(0, k, step):
        r, c = rows[start : start + step, :, None, :], cols[start : start + step, None, :, :]
        w = torch.minimum(r[..., 2], c[..., 2]) - torch.maximum(r[..., 0], c[..., 0])
        w = w.clamp(min=0)
        h = torch.minimum(r[..., 3], c[..., 3]) - torch.maximum(r[..., 1], c[..., 1])
        h = h.clamp(min=0)
        inter = w * h
        union = row_area[start : start + step, :, None] + col_area[start : start + step, None, :]
        union = union - inter
        parts.append(inter / union > threshold)
    return torch.cat(parts) if len(parts) > 1 else parts[0]


def _greedy_keep_classes_torch(coords: Tensor, groups: Tensor, threshold: Tensor, block: int = _CLASS_BLOCK) -> Tensor:
    """``_greedy_keep_classes`` in torch ops (the TorchScript path), same rounds and decisions.

    ``coords``: ``[N, 4]`` ordered by group, then decreasing score; ``groups``: ``[N]`` non-decreasing.
    """
    device = coords.device
    total = coords.shape[0]
    first = torch.ones(total, dtype=torch.bool, device=device)
    first[1:] = groups[1:] != groups[:-1]
    starts = torch.nonzero(first).flatten()
    counts = torch.diff(starts, append=torch.full((1,), total, dtype=starts.dtype, device=device))
    num_groups = starts.numel()
    group_of = torch.repeat_interleave(torch.arange(num_groups, device=device), counts)
    slot_of = torch.arange(total, device=device) - torch.repeat_interleave(starts, counts)
    n = int(counts.max())
    table = torch.full((num_groups, n + 1, 4), float("nan"), dtype=coords.dtype, device=device)
    table[group_of, slot_of] = coords
    area = (table[:, :, 2] - table[:, :, 0]) * (table[:, :, 3] - table[:, :, 1])
    undecided = torch.zeros((num_groups, n + 1), dtype=torch.bool, device=device)
    undecided[group_of, slot_of] = True
    keep = torch.zeros_like(undecided)
    later_in_block = torch.triu(torch.ones((block, block), dtype=torch.bool, device=device), 1)
    active = torch.arange(num_groups, device=device)
    while active.numel() > 0:
        pending = undecided[active]
        rank = torch.cumsum(pending.long(), dim=1)
        alive = rank[:, -1] > 0
        if not bool(alive.all()):
            active, pending, rank = active[alive], pending[alive], rank[alive]
            if active.numel() == 0:
                break
        k = active.numel()
        group, slot, row, _ = _ranks_torch(pending & (rank <= block))
        b = int(row.max()) + 1
        row_slot = torch.full((k, b), n, dtype=torch.long, device=device)
        row_slot[group, row] = slot
        rows = table[active[:, None], row_slot]  # [k, b, 4]
        row_area = area[active[:, None], row_slot]
        over = _iou_above_groups_torch(rows, row_area, rows, row_area, threshold) & later_in_block[:b, :b]
        suppressed = torch.zeros((k, b), dtype=torch.bool, device=device)
        candidates: List[int] = torch.nonzero(over.any(dim=2).any(dim=0)).flatten().tolist()
        for r in candidates:
            suppressed |= over[:, r, :] & ~suppressed[:, r : r + 1]
        undecided[active[group], slot] = False
        keep[active[group], slot] = ~suppressed[group, row]
        group, slot, col, col_counts = _ranks_torch(pending & (rank > block))
        if group.numel() == 0:
            continue
        col_slot = torch.full((k, int(col_counts.max())), n, dtype=torch.long, device=device)
        col_slot[group, col] = slot
        kept_group, kept_row, kept_rank, kept_counts = _ranks_torch(~suppressed & (row_slot < n))
        kept_slot = torch.full((k, int(kept_counts.max())), n, dtype=torch.long, device=device)
        kept_slot[kept_group, kept_rank] = row_slot[kept_group, kept_row]
        hit = _iou_above_groups_torch(
            table[active[:, None], kept_slot], area[active[:, None], kept_slot],
            table[active[:, None], col_slot], area[active[:, None], col_slot], threshold,
        )
        undecided[active[group], slot] = ~hit.any(dim=1)[group, col]
    return keep[group_of, slot_of]


def _compute_coords(boxes: Tensor) -> Tensor:
    """Boxes in the dtype IoUs are computed in: float64 stays, everything else becomes float32."""
    boxes = boxes.detach()
    return boxes if boxes.dtype == torch.float64 else boxes.float()


def _nms_torch(
    boxes: Tensor, scores: Tensor, iou_threshold: float, idxs: Optional[Tensor], min_groups: int = _MIN_GROUPS_SIDE_BY_SIDE
) -> Tensor:
    """``nms`` (``idxs`` None) or per-class NMS (the grouped ``batched_nms``) in torch ops only."""
    if boxes.shape[0] == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores.detach(), descending=True, stable=True)[1]  # [N]
    groups: Optional[Tensor] = None
    if idxs is not None:
        classes = idxs[order]
        by_class = torch.sort(classes, stable=True)[1]
        order = order[by_class]
        groups = classes[by_class]
    coords = _compute_coords(boxes)[order]
    threshold = _threshold_below_torch(iou_threshold, coords.dtype)
    if groups is not None and int((groups[1:] != groups[:-1]).sum()) + 1 >= min_groups:
        alive = _greedy_keep_classes_torch(coords, groups, threshold)
    else:
        alive = _greedy_keep_torch(coords, threshold, groups)
    keep = order[alive]
    if idxs is not None:
        keep = torch.sort(keep)[0]
        keep = keep[torch.sort(scores.detach()[keep], descending=True, stable=True)[1]]
    return keep


def _batched_nms_torch(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """``batched_nms`` in torch ops only (TorchScript), same switch between the two forms as eager."""
    if boxes.shape[0] == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    if boxes.numel() > _offset_trick_limit(boxes.device.type):
        return _nms_torch(boxes, scores, iou_threshold, idxs)
    max_coordinate = boxes.max()
    offsets = idxs.to(boxes) * (max_coordinate + torch.tensor(1).to(boxes))  # [N]
    return _nms_torch(boxes + offsets[:, None], scores, iou_threshold, None)
