"""DIoU and CIoU losses: hand-worked pairs, pairwise-IoU agreement, reductions, gradients, tracing."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torchdet.ops import complete_box_iou, complete_box_iou_loss, distance_box_iou, distance_box_iou_loss


def test_hand_worked_distance_loss() -> None:
    # [0, 0, 2, 2] vs [1, 1, 3, 3]: IoU 1/7, centres sqrt(2) apart, enclosing diagonal^2 18.
    b1, b2 = torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[1.0, 1.0, 3.0, 3.0]])
    expected = 1 - 1 / 7 + 2 / 18
    assert distance_box_iou_loss(b1, b2).item() == pytest.approx(expected, abs=1e-6)
    # Same aspect ratio: no CIoU penalty.
    assert complete_box_iou_loss(b1, b2).item() == pytest.approx(expected, abs=1e-6)
    assert distance_box_iou_loss(b1, b1).item() == pytest.approx(0.0, abs=1e-6)


def test_hand_worked_complete_loss() -> None:
    # [0, 0, 4, 2] vs [0, 0, 2, 4]: IoU 4/12, centres (2, 1) and (1, 2), enclosing 4x4.
    b1, b2 = torch.tensor([[0.0, 0.0, 4.0, 2.0]]), torch.tensor([[0.0, 0.0, 2.0, 4.0]])
    iou = 1 / 3
    diou_loss = 1 - iou + 2 / 32
    v = 4 / math.pi**2 * (math.atan(0.5) - math.atan(2.0)) ** 2
    alpha = v / (1 - iou + v)
    assert distance_box_iou_loss(b1, b2).item() == pytest.approx(diou_loss, abs=1e-6)
    assert complete_box_iou_loss(b1, b2).item() == pytest.approx(diou_loss + alpha * v, abs=1e-6)


boxes = st.lists(st.floats(0, 50), min_size=4, max_size=4).map(
    lambda c: [min(c[0], c[2]), min(c[1], c[3]), max(c[0], c[2]) + 1, max(c[1], c[3]) + 1]
)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.lists(st.tuples(boxes, boxes), min_size=1, max_size=6))
def test_losses_are_one_minus_the_pairwise_ious_on_the_diagonal(pairs: list) -> None:
    b1 = torch.tensor([p[0] for p in pairs], dtype=torch.float64)
    b2 = torch.tensor([p[1] for p in pairs], dtype=torch.float64)
    diou = torch.diagonal(distance_box_iou(b1, b2))
    ciou = torch.diagonal(complete_box_iou(b1, b2))
    torch.testing.assert_close(distance_box_iou_loss(b1, b2), 1 - diou, atol=1e-6, rtol=0)
    torch.testing.assert_close(complete_box_iou_loss(b1, b2), 1 - ciou, atol=1e-6, rtol=0)
    assert bool((distance_box_iou_loss(b1, b2) >= -1e-9).all()) and bool((distance_box_iou_loss(b1, b2) < 2).all())


def test_reductions_and_empty_input() -> None:
    b1 = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 4.0, 2.0]])
    b2 = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 4.0]])
    for loss_fn in (distance_box_iou_loss, complete_box_iou_loss):
        per_pair = loss_fn(b1, b2)
        assert per_pair.shape == (2,)
        torch.testing.assert_close(loss_fn(b1, b2, reduction="sum"), per_pair.sum())
        torch.testing.assert_close(loss_fn(b1, b2, reduction="mean"), per_pair.mean())
        empty = torch.zeros(0, 4, requires_grad=True)
        assert loss_fn(empty, empty, reduction="mean").item() == 0.0
        with pytest.raises(ValueError, match="reduction"):
            loss_fn(b1, b2, reduction="max")
    assert distance_box_iou_loss(b1.int(), b2.int()).dtype == torch.float32


def test_gradcheck() -> None:
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(5, 2, dtype=torch.float64, generator=g) * 10
    b1 = torch.cat([xy, xy + 1 + torch.rand(5, 2, dtype=torch.float64, generator=g) * 5], dim=1).requires_grad_()
    b2 = (b1.detach() + torch.randn(5, 4, dtype=torch.float64, generator=g)).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: distance_box_iou_loss(a, b, "sum"), (b1, b2))
    # CIoU holds alpha constant in the gradient (as torchvision does), so its gradient is that of
    # DIoU loss + alpha0 * v with alpha0 frozen at the evaluation point; check it numerically.

    def aspect_term(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        wa, ha = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
        wb, hb = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        return 4 / math.pi**2 * (torch.atan(wb / hb) - torch.atan(wa / ha)) ** 2

    with torch.no_grad():
        v0 = aspect_term(b1, b2)
        alpha0 = (complete_box_iou_loss(b1, b2) - distance_box_iou_loss(b1, b2)) / v0

    def frozen(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (distance_box_iou_loss(a, b) + alpha0 * aspect_term(a, b)).sum()

    assert torch.autograd.gradcheck(frozen, (b1, b2))
    ours = torch.autograd.grad(complete_box_iou_loss(b1, b2, "sum"), (b1, b2))
    reference = torch.autograd.grad(frozen(b1, b2), (b1, b2))
    for got, want in zip(ours, reference):
        torch.testing.assert_close(got, want)


def test_traces_and_exports() -> None:
    class Loss(torch.nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return distance_box_iou_loss(a, b, "mean") + complete_box_iou_loss(a, b, "sum")

    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 4.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 4.0]])
    expected = Loss()(a, b)
    torch.testing.assert_close(torch.fx.symbolic_trace(Loss())(a, b), expected)
    torch.testing.assert_close(torch.export.export(Loss(), (a, b), strict=False).module()(a, b), expected)
