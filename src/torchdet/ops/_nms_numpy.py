"""The NumPy form of NMS: the fast eager path for CPU tensors.

Boxes are taken in score order in blocks of ``_BLOCK`` rows. Inside a block the pairwise IoU
matrix is small, and a short Python loop runs the greedy pass over it (only over rows that
suppress something). The block's kept boxes then suppress all later boxes at once with one
vectorised IoU computation, tiled over columns so memory stays ``O(_BLOCK * _TILE)``. Boxes
already suppressed are dropped from every later block, so work shrinks as suppression proceeds.
NumPy runs these elementwise passes faster than PyTorch's small-op overhead allows.

The IoU of a pair is ``inter / (area_i + area_j - inter)`` in float32 (float64 boxes stay
float64) and compared through ``threshold_below``, exactly as the reference does.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from torchdet.ops._nms_common import NMSForm, batched_by_size, compute_coords, offset_trick_limit, threshold_below

__all__ = ["NUMPY_FORM"]

_BLOCK = 128  # rows whose greedy pass is resolved together (128 beat 64 and 256 on RPN-like and uniform boxes)
_TILE = 1024  # columns per vectorised IoU tile


def _iou_above(
    rows: np.ndarray, cols: np.ndarray, coords: np.ndarray, area: np.ndarray, threshold: np.floating
) -> np.ndarray:
    """Whether IoU > threshold for every (row, col) pair.

    Args:
        rows: ``[R]`` box indices.
        cols: ``[M]`` box indices.
        coords: ``[4, N]`` x1, y1, x2, y2 rows.
        area: ``[N]`` box areas.
        threshold: from ``_threshold``.

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
        threshold: from ``_threshold``.
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
        threshold: from ``_threshold``.

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
        threshold: from ``_threshold``.

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
    return np.ascontiguousarray(compute_coords(boxes).cpu().numpy().T)


def _threshold(iou_threshold: float, dtype: np.dtype) -> np.floating:
    """``threshold_below`` as a NumPy scalar of the coordinates' dtype."""
    return np.dtype(dtype).type(threshold_below(iou_threshold, dtype == np.float64))


def _as_numpy_scores(scores: Tensor) -> np.ndarray:
    """``[N]`` scores as float32/float64 NumPy (exact for every floating dtype torch sorts)."""
    scores = scores.detach().cpu()
    return (scores if scores.dtype == torch.float64 else scores.float()).numpy()


def _nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    if boxes.shape[0] == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores.detach().cpu(), descending=True, stable=True)[1]  # [N]
    coords = _as_numpy_coords(boxes)[:, order.numpy()]
    keep = _greedy_keep(coords, _threshold(iou_threshold, coords.dtype))
    return order[torch.from_numpy(keep)].to(boxes.device)


def _batched_nms_grouped(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """Per-class greedy passes over boxes ordered by (class, decreasing score), all classes at once.

    The index bookkeeping is done in NumPy: small torch ops pay for the intra-op thread pool.
    """
    score = _as_numpy_scores(scores)
    order = np.lexsort((-score, idxs.detach().cpu().numpy()))  # by class, then score; ties by index
    coords = _as_numpy_coords(boxes)[:, order]
    groups = idxs.detach().cpu().numpy()[order]
    threshold = _threshold(iou_threshold, coords.dtype)
    if np.count_nonzero(np.diff(groups)) + 1 >= _MIN_GROUPS_SIDE_BY_SIDE:
        keep = order[_greedy_keep_classes(coords, groups, threshold)]
    else:
        keep = order[_greedy_keep(coords, threshold, groups)]
    keep.sort()
    keep = keep[np.argsort(-score[keep], kind="stable")]
    return torch.from_numpy(keep).to(boxes.device)


def _batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    return batched_by_size(boxes, scores, idxs, iou_threshold, _nms, _batched_nms_grouped)


def _batched_nms_top(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float, max_kept: int) -> Tensor:
    """The head of ``_batched_nms``, from greedy passes over growing prefixes of the score order.

    A box's fate depends only on the boxes of its class that precede it in (decreasing score,
    increasing index) order, so the passes over a prefix of that order decide the prefix
    exactly. The prefix starts at ``4 * max_kept`` boxes (widened to take every box tied with its
    last score) and grows 4x until it holds ``max_kept`` kept boxes or every box. With thousands
    of low-score candidates (SSD's 0.01 threshold over 90 classes) this skips most of the work.
    """
    n = boxes.shape[0]
    if boxes.numel() <= offset_trick_limit(boxes.device.type) or max_kept * 4 >= n:
        return _batched_nms(boxes, scores, idxs, iou_threshold)[:max_kept]
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


NUMPY_FORM = NMSForm(nms=_nms, batched_nms=_batched_nms, batched_nms_top=_batched_nms_top)
