"""Distance and complete IoU losses (Zheng et al., 2020) on matched box pairs.

Unlike the pairwise ``distance_box_iou`` / ``complete_box_iou``, these compare ``boxes1[i]``
with ``boxes2[i]`` elementwise, as ``generalized_box_iou_loss`` does:

- ``DIoU loss = 1 - IoU + d^2 / (c^2 + eps)`` with ``d`` the distance between the centres and
  ``c`` the diagonal of the smallest enclosing box; ``IoU = inter / (union + eps)``;
- ``CIoU loss = DIoU loss + alpha * v`` with ``v = 4 / pi^2 * (atan(w2 / h2) - atan(w1 / h1))^2``
  and ``alpha = v / (1 - IoU + v + eps)`` held constant in the gradient.
"""
from __future__ import annotations

import math
from typing import Tuple

import torch
from torch import Tensor

from torchdet.ops._fx import fx_leaf

__all__ = ["distance_box_iou_loss", "complete_box_iou_loss"]


def _upcast_non_float(t: Tensor) -> Tensor:
    return t if t.dtype == torch.float32 or t.dtype == torch.float64 else t.float()


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return loss
    if reduction == "mean":
        return loss.mean() if loss.numel() > 0 else 0.0 * loss.sum()
    if reduction == "sum":
        return loss.sum()
    raise ValueError(
        f"Invalid Value for arg 'reduction': '{reduction} \n Supported reduction modes: 'none', 'mean', 'sum'"
    )


def _diou_loss_and_iou(boxes1: Tensor, boxes2: Tensor, eps: float) -> Tuple[Tensor, Tensor]:
    """Elementwise ``(DIoU loss, IoU)``, both ``[...]``, for ``[..., 4]`` ``xyxy`` boxes."""
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    inter_w = torch.min(x2, x2g) - torch.max(x1, x1g)
    inter_h = torch.min(y2, y2g) - torch.max(y1, y1g)
    overlaps = (inter_w > 0) & (inter_h > 0)
    inter = torch.where(overlaps, inter_w * inter_h, torch.zeros_like(inter_w))
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - inter
    iou = inter / (union + eps)
    enclose_w = torch.max(x2, x2g) - torch.min(x1, x1g)
    enclose_h = torch.max(y2, y2g) - torch.min(y1, y1g)
    diagonal_squared = enclose_w**2 + enclose_h**2 + eps
    centres_squared = ((x1 + x2) / 2 - (x1g + x2g) / 2) ** 2 + ((y1 + y2) / 2 - (y1g + y2g) / 2) ** 2
    return 1 - iou + centres_squared / diagonal_squared, iou


@fx_leaf
def distance_box_iou_loss(boxes1: Tensor, boxes2: Tensor, reduction: str = "none", eps: float = 1e-7) -> Tensor:
    """Distance IoU loss of matched boxes.

    Args:
        boxes1: ``[..., 4]`` predicted boxes, ``xyxy``.
        boxes2: ``[..., 4]`` target boxes, ``xyxy``, same shape.
        reduction: ``"none"`` (``[...]``), ``"mean"`` or ``"sum"``.
        eps: guards the divisions.

    Returns:
        The loss, in ``[0, 2)`` per pair, reduced as asked.
    """
    boxes1, boxes2 = _upcast_non_float(boxes1), _upcast_non_float(boxes2)
    loss, _ = _diou_loss_and_iou(boxes1, boxes2, eps)
    return _reduce(loss, reduction)


@fx_leaf
def complete_box_iou_loss(boxes1: Tensor, boxes2: Tensor, reduction: str = "none", eps: float = 1e-7) -> Tensor:
    """Complete IoU loss of matched boxes.

    Args:
        boxes1: ``[..., 4]`` predicted boxes, ``xyxy``.
        boxes2: ``[..., 4]`` target boxes, ``xyxy``, same shape.
        reduction: ``"none"`` (``[...]``), ``"mean"`` or ``"sum"``.
        eps: guards the divisions.

    Returns:
        The loss, reduced as asked.
    """
    boxes1, boxes2 = _upcast_non_float(boxes1), _upcast_non_float(boxes2)
    diou_loss, iou = _diou_loss_and_iou(boxes1, boxes2, eps)
    w_pred, h_pred = boxes1[..., 2] - boxes1[..., 0], boxes1[..., 3] - boxes1[..., 1]
    w_gt, h_gt = boxes2[..., 2] - boxes2[..., 0], boxes2[..., 3] - boxes2[..., 1]
    v = (4 / (math.pi**2)) * (torch.atan(w_gt / h_gt) - torch.atan(w_pred / h_pred)) ** 2
    with torch.no_grad():
        alpha = v / (1 - iou + v + eps)
    return _reduce(diou_loss + alpha * v, reduction)
