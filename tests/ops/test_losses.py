"""Focal loss and GIoU loss: hand-checked values, reductions, and consistency with box ops."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from torchdet.ops.boxes import generalized_box_iou
from torchdet.ops.losses import generalized_box_iou_loss, sigmoid_focal_loss


def test_focal_loss_hand_checked() -> None:
    # Logit 0: p = 0.5, BCE = ln 2, (1 - p_t)^2 = 1/4; alpha_t = 0.25 for positives, 0.75 for negatives.
    loss = sigmoid_focal_loss(torch.zeros(2), torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(loss, torch.tensor([0.25 * 0.25 * math.log(2), 0.75 * 0.25 * math.log(2)]))


def test_focal_loss_confident_correct_prediction_is_down_weighted() -> None:
    logits, targets = torch.tensor([4.0, -4.0]), torch.tensor([1.0, 0.0])
    p = torch.sigmoid(torch.tensor(4.0))
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    expected = torch.stack([0.25 * (1 - p) ** 2 * bce[0], 0.75 * (1 - p) ** 2 * bce[1]])
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets), expected)


def test_focal_loss_without_focusing_is_bce() -> None:
    g = torch.Generator().manual_seed(0)
    logits, targets = torch.randn(4, 5, generator=g), (torch.rand(4, 5, generator=g) > 0.5).float()
    torch.testing.assert_close(
        sigmoid_focal_loss(logits, targets, alpha=-1, gamma=0),
        F.binary_cross_entropy_with_logits(logits, targets, reduction="none"),
    )


def test_focal_loss_reductions() -> None:
    g = torch.Generator().manual_seed(1)
    logits, targets = torch.randn(3, 7, generator=g), (torch.rand(3, 7, generator=g) > 0.7).float()
    full = sigmoid_focal_loss(logits, targets)
    assert full.shape == (3, 7)
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets, reduction="sum"), full.sum())
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets, reduction="mean"), full.mean())
    with pytest.raises(ValueError, match="avg"):
        sigmoid_focal_loss(logits, targets, reduction="avg")


def test_focal_loss_gradient_is_finite() -> None:
    logits = torch.tensor([-30.0, 0.0, 30.0], requires_grad=True)
    sigmoid_focal_loss(logits, torch.tensor([1.0, 0.0, 1.0]), reduction="sum").backward()
    assert torch.isfinite(logits.grad).all()


def test_giou_loss_hand_checked() -> None:
    boxes1 = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0]])
    boxes2 = torch.tensor([[0.0, 0.0, 2.0, 2.0], [2.0, 2.0, 3.0, 3.0], [1.0, 1.0, 3.0, 3.0]])
    # identical -> 0; disjoint: IoU 0, hull 9, union 2 -> 1 + 7/9; overlapping: 1 - (1/7 - 2/9).
    expected = torch.tensor([0.0, 1 + 7 / 9, 1 - (1 / 7 - 2 / 9)])
    torch.testing.assert_close(generalized_box_iou_loss(boxes1, boxes2), expected, rtol=0, atol=1e-6)


def test_giou_loss_is_one_minus_pairwise_giou() -> None:
    g = torch.Generator().manual_seed(2)
    xy1, xy2 = torch.rand(6, 2, generator=g) * 10, torch.rand(6, 2, generator=g) * 10
    boxes1 = torch.cat([xy1, xy1 + torch.rand(6, 2, generator=g) * 5 + 0.1], dim=1)
    boxes2 = torch.cat([xy2, xy2 + torch.rand(6, 2, generator=g) * 5 + 0.1], dim=1)
    expected = 1 - generalized_box_iou(boxes1, boxes2).diagonal()
    torch.testing.assert_close(generalized_box_iou_loss(boxes1, boxes2), expected, rtol=0, atol=1e-5)


def test_giou_loss_reductions_and_empty() -> None:
    boxes1 = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0]])
    boxes2 = torch.tensor([[0.0, 0.0, 1.0, 2.0], [1.0, 1.0, 2.0, 2.0]])
    full = generalized_box_iou_loss(boxes1, boxes2)
    torch.testing.assert_close(generalized_box_iou_loss(boxes1, boxes2, reduction="sum"), full.sum())
    torch.testing.assert_close(generalized_box_iou_loss(boxes1, boxes2, reduction="mean"), full.mean())
    empty = generalized_box_iou_loss(torch.zeros(0, 4), torch.zeros(0, 4), reduction="mean")
    assert empty.shape == () and float(empty) == 0.0
    with pytest.raises(ValueError, match="max"):
        generalized_box_iou_loss(boxes1, boxes2, reduction="max")


def test_giou_loss_degenerate_boxes_have_finite_gradient() -> None:
    boxes1 = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0]], requires_grad=True)
    boxes2 = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0]])
    loss = generalized_box_iou_loss(boxes1, boxes2, reduction="sum")
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(boxes1.grad).all()


def test_giou_loss_integer_boxes_upcast() -> None:
    loss = generalized_box_iou_loss(torch.tensor([[0, 0, 2, 2]]), torch.tensor([[1, 1, 3, 3]]))
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, torch.tensor([1 - (1 / 7 - 2 / 9)]))


class _Losses(torch.nn.Module):
    def forward(self, logits: torch.Tensor, targets: torch.Tensor, boxes1: torch.Tensor, boxes2: torch.Tensor):
        return (
            sigmoid_focal_loss(logits, targets),
            sigmoid_focal_loss(logits, targets, 0.5, 1.5, "sum"),
            sigmoid_focal_loss(logits, targets, alpha=-1.0, reduction="mean"),
            generalized_box_iou_loss(boxes1, boxes2),
            generalized_box_iou_loss(boxes1, boxes2, "mean"),
            generalized_box_iou_loss(boxes1, boxes2, reduction="sum", eps=1e-5),
        )


def test_scripted_losses_equal_eager() -> None:
    g = torch.Generator().manual_seed(3)
    logits, targets = torch.randn(40, 9, generator=g), (torch.rand(40, 9, generator=g) > 0.8).float()
    boxes1, boxes2 = torch.rand(20, 4, generator=g).cumsum(1), torch.rand(20, 4, generator=g).cumsum(1)
    scripted = torch.jit.script(_Losses())
    for got, expected in zip(scripted(logits, targets, boxes1, boxes2), _Losses()(logits, targets, boxes1, boxes2)):
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=0)
    with pytest.raises(Exception, match="avg"):
        torch.jit.script(sigmoid_focal_loss)(logits, targets, 0.25, 2.0, "avg")


def _plain_focal_loss(inputs: torch.Tensor, targets: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """The formula with autograd through every op (what the fused eager function must reproduce)."""
    p = torch.sigmoid(inputs)
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (-1.0, 0.0), (0.5, 1.5), (0.9, 3.0), (0.25, 1.0)])
def test_focal_loss_values_and_gradient_match_the_plain_formula(reduction: str, alpha: float, gamma: float) -> None:
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(300, 11, generator=g) * 6
    targets = (torch.rand(300, 11, generator=g) > 0.9).float()
    targets[:5] = torch.rand(5, 11, generator=g)  # soft labels too
    fused_in, plain_in = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    fused = sigmoid_focal_loss(fused_in, targets, alpha, gamma, reduction)
    plain = _plain_focal_loss(plain_in, targets, alpha, gamma)
    plain = {"none": plain, "sum": plain.sum(), "mean": plain.mean()}[reduction]
    torch.testing.assert_close(fused, plain, rtol=1e-6, atol=1e-7)
    weight = torch.randn(fused.shape, generator=g)
    (fused * weight).sum().backward()
    (plain * weight).sum().backward()
    torch.testing.assert_close(fused_in.grad, plain_in.grad, rtol=1e-5, atol=1e-7)


def test_focal_loss_gradcheck_and_soft_target_gradients() -> None:
    g = torch.Generator().manual_seed(5)
    logits = (torch.randn(6, 4, generator=g, dtype=torch.float64) * 3).requires_grad_()
    targets = torch.rand(6, 4, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: sigmoid_focal_loss(x, targets, 0.3, 2.5, "sum"), (logits,))
    soft = targets.clone().requires_grad_()  # targets that need a gradient take the plain formula
    sigmoid_focal_loss(logits, soft, reduction="sum").backward()
    assert soft.grad is not None and torch.isfinite(soft.grad).all()


def _scaled_fp16_grad(logits: torch.Tensor, targets: torch.Tensor, num_foreground: int, scale: float) -> torch.Tensor:
    """The focal loss's input gradient as mixed precision delivers it: float16 logits, the loss
    normalised as RetinaNet's (sum / foreground count) and scaled as a GradScaler's."""
    x = logits.half().requires_grad_()
    loss = sigmoid_focal_loss(x, targets.half(), reduction="sum") / num_foreground
    (loss * scale).backward()
    return x.grad.float() / scale


def test_focal_loss_gradient_of_easy_negatives_survives_float16() -> None:
    # Logits near -7 on negatives: p ~ 1e-3, the gradient ~ 1e-9 per element, below float16's
    # smallest subnormal (6e-8) unless it is computed in float32 and scaled before the cast.
    g = torch.Generator().manual_seed(0)
    logits = (-7.0 + 0.5 * torch.randn(4096, generator=g)).half().float()
    targets = torch.zeros(4096)
    reference = logits.clone().requires_grad_()
    (sigmoid_focal_loss(reference, targets, reduction="sum") / 10).backward()
    grad = _scaled_fp16_grad(logits, targets, num_foreground=10, scale=2.0**16)
    # Computed in float16 (before the scaler scales it) every one of these gradients flushes.
    assert (grad == 0).float().mean() < 0.05
    step = 2.0**-24 / 2.0**16  # float16's smallest subnormal, unscaled
    torch.testing.assert_close(grad, reference.grad, rtol=0.01, atol=step)


def test_focal_loss_upcasts_reduced_precision_inputs() -> None:
    logits, targets = torch.randn(8, 3), (torch.rand(8, 3) > 0.5).float()
    for dtype in (torch.float16, torch.bfloat16):
        loss = sigmoid_focal_loss(logits.to(dtype), targets.to(dtype), reduction="sum")
        assert loss.dtype == torch.float32
        torch.testing.assert_close(loss, sigmoid_focal_loss(logits.to(dtype).float(), targets, reduction="sum"))
