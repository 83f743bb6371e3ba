"""Dense predictions: the per-anchor outputs of one-stage heads (RetinaNet, FCOS, SSD).

A head's conv gives ``[N, A * K, H, W]`` per feature level; one-stage detectors work on
``[N, H * W * A, K]`` rows, one per anchor, concatenated over levels (the order anchor
generators use: cells row-major, then the cell's anchors). At inference, the best-scoring
(anchor, class) pairs are picked per level, all levels and classes at once.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, List, Sequence, Tuple

import torch
from torch import Tensor, nn

from torchdet.ops.nms import batched_nms

__all__ = [
    "backbone_features", "flatten_head_output", "level_sizes", "topk_per_level", "topk_per_column",
    "select_detections",
]


def flatten_head_output(x: Tensor, num_columns: int) -> Tensor:
    """``[N, A * K, H, W]`` -> ``[N, H * W * A, K]`` with ``K = num_columns``."""
    n, _, h, w = x.shape
    return x.view(n, -1, num_columns, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, num_columns)


def level_sizes(features: Sequence[Tensor], num_rows: int) -> List[int]:
    """Rows per level of a head output with ``num_rows`` rows over the ``[N, C, H_l, W_l]`` features.

    Every level has the same number of anchors per cell, ``A = num_rows / sum_l H_l * W_l``.
    """
    cells = [int(f.shape[-2]) * int(f.shape[-1]) for f in features]
    anchors_per_cell = num_rows // sum(cells)
    return [c * anchors_per_cell for c in cells]


def topk_per_level(scores: Tensor, sizes: Sequence[int], k: int, score_thresh: float) -> Tuple[Tensor, Tensor]:
    """The ``k`` best entries above ``score_thresh`` of each level, every level in one ``topk``.

    Args:
        scores: ``[M]`` scores, the levels one after the other.
        sizes: the length of each level, summing to ``M``.
        k: entries to keep per level (fewer when fewer pass the threshold).
        score_thresh: entries must score strictly above it.

    Returns:
        ``(indices [K], scores [K])`` into ``scores``, level by level, best first within a level.
    """
    candidates = torch.where(scores > score_thresh)[0]  # [C] ascending, so grouped by level
    if candidates.numel() == 0 or k <= 0:
        return candidates[:0], scores[candidates[:0]]
    ends = torch.as_tensor(sizes, device=scores.device).cumsum(0)  # [L]
    level = torch.bucketize(candidates, ends, right=True)  # [C]
    counts = torch.bincount(level, minlength=len(sizes))  # [L]
    starts = counts.cumsum(0) - counts  # [L]
    width = int(counts.max())
    position = torch.arange(candidates.numel(), device=scores.device) - starts[level]  # [C] rank in level
    padded = scores.new_full((len(sizes), width), float("-inf"))
    padded[level, position] = scores[candidates]  # [L, width]
    top_scores, top_position = padded.topk(min(k, width), dim=1)  # [L, k']
    valid = top_position < counts[:, None]
    chosen = candidates[(starts[:, None] + top_position)[valid]]
    return chosen, top_scores[valid]


def topk_per_column(scores: Tensor, k: int, score_thresh: float) -> Tuple[Tensor, Tensor, Tensor]:
    """The ``k`` best rows above ``score_thresh`` of every column, all columns in one ``topk``.

    Args:
        scores: ``[M, C]``, e.g. one column per class.

    Returns:
        ``(rows [K], columns [K], scores [K])``, column by column, best first within a column.
    """
    num_rows = scores.shape[0]
    masked = scores.masked_fill(~(scores > score_thresh), float("-inf"))
    top_scores, top_rows = masked.topk(min(k, num_rows), dim=0)  # [k', C]
    top_scores, top_rows = top_scores.t(), top_rows.t()  # [C, k'], column-major like a per-class loop
    valid = top_scores > score_thresh
    columns = torch.arange(scores.shape[1], device=scores.device)[:, None].expand_as(top_rows)
    return top_rows[valid], columns[valid], top_scores[valid]


def backbone_features(backbone: nn.Module, images: Tensor) -> List[Tensor]:
    """The backbone's feature maps as a list (a single tensor becomes a one-level list)."""
    features = backbone(images)
    if isinstance(features, Tensor):
        features = OrderedDict([("0", features)])
    return list(features.values())


def select_detections(boxes: Tensor, scores: Tensor, labels: Tensor, nms_thresh: float,
                      detections_per_img: int) -> Dict[str, Tensor]:
    """Class-wise NMS over ``[K, 4]`` boxes, then the best ``detections_per_img``."""
    keep = batched_nms(boxes, scores, labels, nms_thresh)[:detections_per_img]
    return {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}
