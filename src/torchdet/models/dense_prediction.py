"""Dense predictions: the per-anchor outputs of one-stage heads (RetinaNet, FCOS, SSD).

A head's conv gives ``[N, A * K, H, W]`` per feature level; one-stage detectors work on
``[N, H * W * A, K]`` rows, one per anchor, concatenated over levels (the order anchor
generators use: cells row-major, then the cell's anchors). At inference, the best-scoring
(anchor, class) pairs are picked per level, all levels and classes at once.

Everything here is scriptable, and traceable with free image sizes: level sizes and top-k
counts stay traced values while tracing (a level can hold fewer than ``k`` entries at one
image size and more at another).
"""
from typing import Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from torchdet.ops.nms import batched_nms_top

__all__ = [
    "backbone_features", "as_feature_list", "flatten_head_output", "level_sizes", "topk_per_level", "topk_per_column",
    "split_levels", "select_detections", "sum_tensors", "model_outputs",
]


def flatten_head_output(x: Tensor, num_columns: int) -> Tensor:
    """``[N, A * K, H, W]`` -> ``[N, H * W * A, K]`` with ``K = num_columns``."""
    n, h, w = x.shape[0], x.shape[2], x.shape[3]
    return x.view(n, -1, num_columns, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, num_columns)


def level_sizes(features: List[Tensor], num_rows: int) -> List[int]:
    """Rows per level of a head output with ``num_rows`` rows over the ``[N, C, H_l, W_l]`` features.

    Every level has the same number of anchors per cell, ``A = num_rows / sum_l H_l * W_l``.
    """
    cells = [f.shape[-2] * f.shape[-1] for f in features]  # traced values while tracing
    total = 0
    for c in cells:
        total += c
    anchors_per_cell = num_rows // total
    return [c * anchors_per_cell for c in cells]


def split_levels(head_outputs: Dict[str, Tensor], anchors: List[Tensor], features: List[Tensor]
                 ) -> Tuple[Dict[str, List[Tensor]], List[List[Tensor]]]:
    """Head outputs ``[N, M, *]`` and per-image ``[M, 4]`` anchors as lists over the levels of ``features``.

    For heads with the same number of anchors per cell on every level (see :func:`level_sizes`).
    """
    sizes = level_sizes(features, anchors[0].shape[0])
    split_outputs = {k: list(v.split(sizes, dim=1)) for k, v in head_outputs.items()}
    return split_outputs, [list(a.split(sizes)) for a in anchors]


def _topk_count(values: Tensor, k: int) -> int:
    """``min(k, len(values))`` for ``[M, ...]`` values: a traced value while tracing, else an int."""
    if torch.jit.is_tracing():
        return _traced_topk_count(values, k)
    if torch.jit.is_scripting():
        return min(k, values.shape[0])
    return _symbolic_min(k, values.shape[0])


@torch.jit.unused
def _symbolic_min(a: int, b: int) -> int:
    """``min(a, b)`` that keeps a symbolic size symbolic (``min`` would guard on the comparison)."""
    return torch.sym_min(a, b)


@torch.jit.unused
def _traced_topk_count(values: Tensor, k: int) -> int:
    return torch.clamp(torch._shape_as_tensor(values)[0], max=k)  # type: ignore[return-value]


def topk_per_level(levels: List[Tensor], k: int) -> Tuple[Tensor, Tensor]:
    """The ``k`` largest entries of each level (fewer when a level is shorter).

    One ``topk`` per level, straight on the level's values: nothing is copied, masked or padded
    (for RetinaNet at 800x1333 the levels hold ~15M (anchor, class) logits). Measured 2-4x
    faster than thresholding first or padding the levels into one ``[L, max_len]`` batch.

    Args:
        levels: ``[M_l]`` ranking values (e.g. logits) of each level.

    Returns:
        ``(indices [K], values [K])``: indices into the levels' concatenation, level by level,
        largest first within a level.
    """
    indices: List[Tensor] = []
    values: List[Tensor] = []
    offset = 0
    for level in levels:
        top_values, top_indices = level.topk(_topk_count(level, k))
        indices.append(top_indices + offset)
        values.append(top_values)
        offset = offset + level.shape[0]
    return torch.cat(indices), torch.cat(values)


def topk_per_column(scores: Tensor, k: int, score_thresh: float) -> Tuple[Tensor, Tensor, Tensor]:
    """The ``k`` best rows above ``score_thresh`` of every column, all columns in one ``topk``.

    The threshold is applied after the ``topk``: the top-k rows above the threshold are exactly
    the top-k rows that pass it, so the ``[M, C]`` scores are never masked or gathered.

    Args:
        scores: ``[M, C]``, e.g. one column per class.

    Returns:
        ``(rows [K], columns [K], scores [K])``, column by column, best first within a column.
    """
    top_scores, top_rows = scores.t().topk(_topk_count(scores, k), dim=1)  # [C, k']
    columns = torch.arange(scores.shape[1], device=scores.device)[:, None].expand_as(top_rows)
    keep = torch.nonzero((top_scores > score_thresh).flatten()).squeeze(1)  # one sync for the three gathers
    return top_rows.flatten()[keep], columns.flatten()[keep], top_scores.flatten()[keep]


def as_feature_list(features: Union[Tensor, Dict[str, Tensor]]) -> List[Tensor]:
    """A backbone's output as a list of feature maps (a single tensor becomes a one-level list)."""
    if isinstance(features, Tensor):
        return [features]
    return list(features.values())


@torch.jit.unused
def backbone_features(backbone: nn.Module, images: Tensor) -> List[Tensor]:
    """The backbone's feature maps as a list (a single tensor becomes a one-level list)."""
    return as_feature_list(backbone(images))


def select_detections(boxes: Tensor, scores: Tensor, labels: Tensor, nms_thresh: float,
                      detections_per_img: int, anchor_index: Optional[Tensor] = None) -> Dict[str, Tensor]:
    """Class-wise NMS over ``[K, 4]`` boxes, then the best ``detections_per_img``.

    With the candidates' ``[K]`` ``anchor_index``, the result keeps it for the kept ones (for the
    detection extras; see :class:`~torchdet.models.one_stage.OneStageDetector`).
    """
    keep = batched_nms_top(boxes, scores, labels, nms_thresh, detections_per_img)
    selected = {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}
    if anchor_index is not None:
        selected["anchor_index"] = anchor_index[keep]
    return selected



def sum_tensors(values: List[Tensor]) -> Tensor:
    """``sum(values)`` as Python computes it (left to right), scriptable. ``values`` is non-empty."""
    total = values[0]
    for value in values[1:]:
        total = total + value
    return total


@torch.jit.unused
def model_outputs(training: bool, losses: Dict[str, Tensor],
                  detections: List[Dict[str, Tensor]]) -> Union[Dict[str, Tensor], List[Dict[str, Tensor]]]:
    """What an eager detector returns: the losses in training, the detections in eval.

    (A scripted detector returns ``(losses, detections)``: TorchScript needs one return type.)
    """
    return losses if training else detections
