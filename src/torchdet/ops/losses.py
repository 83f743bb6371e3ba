"""Detection losses on plain tensors: sigmoid focal loss (RetinaNet) and GIoU loss (FCOS)."""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["sigmoid_focal_loss", "generalized_box_iou_loss"]

def _check_reduction(reduction: str) -> None:
    if reduction != "none" and reduction != "mean" and reduction != "sum":
        raise ValueError(f"Invalid reduction '{reduction}'; use one of ('none', 'mean', 'sum')")


def _upcast_non_float(t: Tensor) -> Tensor:
    """float32 unless already float32/float64 (integer and half boxes would lose precision)."""
    return t if t.dtype == torch.float32 or t.dtype == torch.float64 else t.float()


def sigmoid_focal_loss(
    inputs: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0, reduction: str = "none"
) -> Tensor:
    """Focal loss for dense detection (Lin et al., 2017), on logits.

    ``loss = alpha_t * (1 - p_t) ** gamma * BCE(inputs, targets)`` with ``p = sigmoid(inputs)``,
    ``p_t = p * t + (1 - p) * (1 - t)`` and ``alpha_t = alpha * t + (1 - alpha) * (1 - t)``.

    Args:
        inputs: logits, any shape.
        targets: same shape, 0/1 labels (soft labels allowed).
        alpha: weight of positives in ``[0, 1]``; a negative value disables the weighting.
        gamma: focusing exponent; 0 gives plain binary cross-entropy.
        reduction: ``"none"`` (same shape as ``inputs``), ``"mean"`` or ``"sum"``.

    Returns:
        The loss, reduced as asked.
    """
    _check_reduction(reduction)
    p = torch.sigmoid(inputs)
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _loss_inter_union(boxes1: Tensor, boxes2: Tensor) -> Tuple[Tensor, Tensor]:
    """Intersection and union of matched box pairs. ``[..., 4]`` x2 -> ``[...]`` x2."""
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    inter_w = torch.min(x2, x2g) - torch.max(x1, x1g)
    inter_h = torch.min(y2, y2g) - torch.max(y1, y1g)
    overlap = (inter_w > 0) & (inter_h > 0)
    inter = torch.where(overlap, inter_w * inter_h, torch.zeros_like(inter_w))
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - inter
    return inter, union


def generalized_box_iou_loss(
    boxes1: Tensor, boxes2: Tensor, reduction: str = "none", eps: float = 1e-7
) -> Tensor:
    """``1 - GIoU`` of matched box pairs (Rezatofighi et al., 2019).

    Unlike :func:`torchdet.ops.boxes.generalized_box_iou` this compares ``boxes1[i]`` with
    ``boxes2[i]`` only, and is safe for degenerate boxes (``eps`` in the denominators).

    Args:
        boxes1: ``[..., 4]`` boxes in ``xyxy`` format.
        boxes2: ``[..., 4]`` boxes, same shape.
        reduction: ``"none"`` (``[...]``), ``"mean"`` or ``"sum"``.
        eps: added to the denominators.

    Returns:
        The loss, in ``[0, 2]`` per pair, reduced as asked.
    """
    _check_reduction(reduction)
    boxes1 = _upcast_non_float(boxes1)
    boxes2 = _upcast_non_float(boxes2)
    inter, union = _loss_inter_union(boxes1, boxes2)
    iou = inter / (union + eps)

    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    enclose_area = (torch.max(x2, x2g) - torch.min(x1, x1g)) * (torch.max(y2, y2g) - torch.min(y1, y1g))
    giou = iou - ((enclose_area - union) / (enclose_area + eps))
    loss = 1 - giou
    if reduction == "mean":
        return loss.mean() if loss.numel() > 0 else 0.0 * loss.sum()
    if reduction == "sum":
        return loss.sum()
    return loss
