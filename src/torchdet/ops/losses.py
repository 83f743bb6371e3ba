"""Detection losses on plain tensors: sigmoid focal loss (RetinaNet) and GIoU loss (FCOS).

The focal loss runs on every anchor x class of a RetinaNet batch (about 10^7 values), where
autograd's graph of a dozen elementwise ops costs more than the forward. In eager mode it is a
custom autograd function that computes the gradient analytically in the same pass as the loss
and saves only that (``_SigmoidFocalLoss``); scripted code uses the plain formula.
"""
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
    # float32 at least: in float16/bfloat16 the easy negatives' small gradients flush to zero
    # (autocast hands reduced-precision logits; the gradient flows back in their dtype).
    inputs = _upcast_non_float(inputs)
    targets = _upcast_non_float(targets)
    if not torch.jit.is_scripting() and not targets.requires_grad:
        return _fused_focal_loss(inputs, targets, alpha, gamma, reduction)
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


@torch.jit.unused
def _fused_focal_loss(inputs: Tensor, targets: Tensor, alpha: float, gamma: float, reduction: str) -> Tensor:
    return _SigmoidFocalLoss.apply(inputs, targets, float(alpha), float(gamma), reduction)


class _SigmoidFocalLoss(torch.autograd.Function):
    """``sigmoid_focal_loss`` with an analytic gradient (not twice differentiable).

    With ``p = sigmoid(x)``, ``m = 1 - p_t`` and ``ce = BCE(x, t)``:
    ``d loss / dx = alpha_t * ((p - t) * m**gamma - gamma * ce * m**(gamma - 1) * p * (1 - p) * (2t - 1))``.
    The loss values use the same operations in the same order as the plain formula.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, inputs: Tensor, targets: Tensor, alpha: float, gamma: float, reduction: str
    ) -> Tensor:
        p = torch.sigmoid(inputs)
        q = 1 - p
        u = 1 - targets
        ce = u * inputs  # binary_cross_entropy_with_logits, as torch computes it
        ce -= F.logsigmoid(inputs)
        m = p * targets
        m += q * u  # p_t
        torch.sub(1, m, out=m)  # 1 - p_t
        m_gamma = m**gamma
        loss = ce * m_gamma
        alpha_t = None
        if alpha >= 0:
            alpha_t = alpha * targets
            alpha_t += (1 - alpha) * u
            loss = alpha_t * loss
        if ctx.needs_input_grad[0]:
            grad = p - targets
            grad *= m_gamma
            if gamma != 0:
                chain = ce * (m if gamma == 2 else m ** (gamma - 1))
                chain *= p
                chain *= q
                chain *= targets - u  # 2t - 1
                grad.sub_(chain, alpha=gamma)
            if alpha_t is not None:
                grad *= alpha_t
            if reduction == "mean":
                grad /= max(inputs.numel(), 1)
            ctx.save_for_backward(grad)
        ctx.reduction = reduction
        if reduction == "sum":
            return loss.sum()
        if reduction == "mean":
            return loss.mean()
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output: Tensor):  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        return grad * grad_output, None, None, None, None


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
