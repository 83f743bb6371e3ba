"""The device form of NMS: exact greedy NMS that stays on the boxes' device (CUDA, or any other).

Greedy NMS visits boxes by decreasing score and keeps a box unless a kept, earlier box overlaps
it above the threshold. With ``M[i, j] = 1`` when ``i < j`` (in score order) and ``IoU > t``,
the kept set ``x`` is the unique solution of ``x[j] = not any_i (x[i] and M[i, j])``: ``x[j]``
depends only on earlier entries, so by induction over ``j`` there is one solution, and it is
the greedy one. Iterating ``x <- step(x)`` from "all kept" reaches it: after ``t`` steps every
box whose chain of decisions is shorter than ``t`` is final (Cluster-NMS, Zheng et al. 2020).
So the algorithm is

1. sort by score (by class first for per-class NMS, one table row per class, NaN-padded);
2. ``M`` in row tiles, the IoU computed in the boxes' dtype with the reference's operation order;
3. rounds of ``step`` (one matrix-vector product each), then one host read of the kept count
   and of whether one more step changes anything; a converged round ends the loop, else the
   next round runs twice as many steps;
4. the kept positions are compacted with a stable sort (their count is known), not ``nonzero``.

Host synchronisations per call: one per round (one in practice: RPN-like inputs of 12000 boxes
converge in under 16 steps, the first round's length), plus one for the class table's size in
per-class NMS. Nothing is copied to the host but those scalars. Memory: ``N * N`` mask entries
for ``nms``, ``G * n * n`` for ``G`` classes of at most ``n`` boxes.
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor

from torchdet.ops._nms_common import NMSForm, batched_by_size, compute_coords, threshold_below

__all__ = ["DEVICE_FORM"]

_FIRST_ROUND = 16  # fixed-point steps before the first convergence read
_TILE_ELEMENTS = 1 << 24  # mask entries computed per IoU tile


def _mask_dtype(device: torch.device) -> torch.dtype:
    """The dtype of ``M`` for the matrix products: half on CUDA (sums of 0/1 stay > 0), else float32."""
    return torch.float16 if device.type == "cuda" else torch.float32


def _overlap_mask(table: Tensor, threshold: float) -> Tensor:
    """``[G, n, n]`` mask: 1 where row ``i`` precedes column ``j`` and their IoU is above ``threshold``.

    Args:
        table: ``[G, n, 4]`` boxes per group in visiting order (NaN rows for padding never overlap).
        threshold: from ``threshold_below`` (a value of the table's dtype).
    """
    g, n = table.shape[0], table.shape[1]
    area = (table[..., 2] - table[..., 0]) * (table[..., 3] - table[..., 1])  # [G, n]
    mask = torch.zeros((g, n, n), dtype=_mask_dtype(table.device), device=table.device)
    columns = torch.arange(n, device=table.device)
    step = max(1, _TILE_ELEMENTS // max(g * n, 1))
    for start in range(0, n, step):
        stop = min(start + step, n)
        r = table[:, start:stop, None, :]  # [G, R, 1, 4]
        c = table[:, None, :, :]  # [G, 1, n, 4]
        w = (torch.minimum(r[..., 2], c[..., 2]) - torch.maximum(r[..., 0], c[..., 0])).clamp(min=0)
        h = (torch.minimum(r[..., 3], c[..., 3]) - torch.maximum(r[..., 1], c[..., 1])).clamp(min=0)
        inter = w * h  # [G, R, n]
        union = area[:, start:stop, None] + area[:, None, :] - inter
        above = (inter / union > threshold) & (columns > columns[start:stop, None])  # 0/0 is NaN: never above
        mask[:, start:stop] = above.to(mask.dtype)
    return mask


def _greedy_fixed_point(mask: Tensor, real: Tensor) -> Tuple[Tensor, int]:
    """The greedy kept set of every group, by fixed-point iteration (see the module docstring).

    Args:
        mask: ``[G, n, n]`` from ``_overlap_mask``.
        real: ``[N]`` flat positions (``group * n + slot``) of the real boxes, in output order.

    Returns:
        ``[N]`` bool, kept, and the number of kept boxes (read on the host).
    """

    def step(kept: Tensor) -> Tensor:
        return torch.bmm(kept.to(mask.dtype)[:, None, :], mask)[:, 0] == 0  # [G, n]

    kept = torch.ones(mask.shape[:2], dtype=torch.bool, device=mask.device)
    steps = _FIRST_ROUND
    while True:
        for _ in range(steps):
            kept = step(kept)
        following = step(kept)
        flat = following.flatten()[real]
        changed = (following != kept).any()
        status = int((flat.sum() * 2 + changed).item())  # the round's one host read
        if status % 2 == 0:
            return flat, status // 2
        kept, steps = following, steps * 2


def _compact(order: Tensor, kept: Tensor, count: int) -> Tensor:
    """``order[kept]`` with ``count = kept.sum()`` known: a stable sort moves the kept entries first."""
    return order[torch.sort((~kept).to(torch.uint8), stable=True)[1][:count]]


def _nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    n = boxes.shape[0]
    if n == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores.detach(), descending=True, stable=True)[1]  # [N]
    table = compute_coords(boxes)[order][None]  # [1, N, 4]
    mask = _overlap_mask(table, threshold_below(iou_threshold, table.dtype == torch.float64))
    kept, count = _greedy_fixed_point(mask, torch.arange(n, device=boxes.device))
    return _compact(order, kept, count)


def _batched_nms_grouped(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """Per-class greedy NMS, every class a row of one NaN-padded table."""
    n = boxes.shape[0]
    device = boxes.device
    order = torch.sort(scores.detach(), descending=True, stable=True)[1]
    classes = idxs[order]
    by_class = torch.sort(classes, stable=True)[1]
    order, classes = order[by_class], classes[by_class]  # by class, then decreasing score
    position = torch.arange(n, device=device)
    first = torch.ones(n, dtype=torch.bool, device=device)
    first[1:] = classes[1:] != classes[:-1]
    group = torch.cumsum(first.long(), 0) - 1  # [N] dense class number
    slot = position - torch.where(first, position, 0).cummax(0)[0]  # [N] rank within the class
    layout = int((group[-1] * (n + 1) + slot.max()).item())  # one host read: table size
    groups, width = layout // (n + 1) + 1, layout % (n + 1) + 1
    coords = compute_coords(boxes)
    table = torch.full((groups, width, 4), float("nan"), dtype=coords.dtype, device=device)
    table[group, slot] = coords[order]
    mask = _overlap_mask(table, threshold_below(iou_threshold, coords.dtype == torch.float64))
    kept, count = _greedy_fixed_point(mask, group * width + slot)
    keep = torch.sort(_compact(order, kept, count))[0]
    return keep[torch.sort(scores.detach()[keep], descending=True, stable=True)[1]]


def _batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    return batched_by_size(boxes, scores, idxs, iou_threshold, _nms, _batched_nms_grouped)


def _batched_nms_top(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float, max_kept: int) -> Tensor:
    return _batched_nms(boxes, scores, idxs, iou_threshold)[:max_kept]


DEVICE_FORM = NMSForm(nms=_nms, batched_nms=_batched_nms, batched_nms_top=_batched_nms_top)
