"""Box utilities: hand-checked cases, the oracle's IoU/GIoU, and properties."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from _oracle import load_ops
from torchdet.ops.boxes import (
    _box_inter_union,
    box_area,
    box_convert,
    box_iou,
    clip_boxes_to_image,
    generalized_box_iou,
    masks_to_boxes,
    remove_small_boxes,
)

FORMATS = ("xyxy", "xywh", "cxcywh")


# ---------------------------------------------------------------- hand-checked cases


def test_box_area() -> None:
    boxes = torch.tensor([[0.0, 0.0, 2.0, 3.0], [1.0, 1.0, 1.0, 5.0], [-1.0, -2.0, 1.0, 2.0]])
    assert box_area(boxes).tolist() == [6.0, 0.0, 8.0]


def test_box_area_keeps_integer_dtypes_and_upcasts_half() -> None:
    assert box_area(torch.tensor([[0, 0, 3, 4]])).dtype == torch.int64
    assert box_area(torch.tensor([[0, 0, 3, 4]], dtype=torch.uint8)).dtype == torch.int32
    assert box_area(torch.tensor([[0, 0, 300, 400]], dtype=torch.float16)).tolist() == [120000.0]


def test_box_iou_known_pairs() -> None:
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor(
        [
            [1.0, 1.0, 3.0, 3.0],  # inter 1, union 7
            [2.0, 0.0, 4.0, 2.0],  # touching edge: inter 0
            [0.0, 0.0, 2.0, 2.0],  # identical
            [0.0, 0.0, 1.0, 2.0],  # inside: inter 2, union 4
        ]
    )
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[1 / 7, 0.0, 1.0, 0.5]]))
    inter, union = _box_inter_union(a, b)
    assert inter.tolist() == [[1.0, 0.0, 4.0, 2.0]]
    assert union.tolist() == [[7.0, 8.0, 4.0, 4.0]]


def test_generalized_box_iou_known_pairs() -> None:
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [2.0, 2.0, 3.0, 3.0]])
    # [0,0,2,2] vs [1,1,3,3]: IoU 1/7, hull 9, union 7 -> 1/7 - 2/9.
    # [0,0,1,1] vs [2,2,3,3]: IoU 0, hull 9, union 2 -> -7/9.
    giou = generalized_box_iou(a, b)
    torch.testing.assert_close(giou[0, 0], torch.tensor(1 / 7 - 2 / 9))
    torch.testing.assert_close(giou[1, 1], torch.tensor(-7 / 9))


def test_box_iou_integer_boxes_give_float() -> None:
    iou = box_iou(torch.tensor([[0, 0, 2, 2]]), torch.tensor([[1, 1, 3, 3]]))
    assert iou.is_floating_point()
    torch.testing.assert_close(iou, torch.tensor([[1 / 7]]))


def test_box_iou_empty() -> None:
    assert box_iou(torch.zeros(0, 4), torch.rand(3, 4)).shape == (0, 3)
    assert generalized_box_iou(torch.rand(2, 4), torch.zeros(0, 4)).shape == (2, 0)


def test_box_convert_known_values() -> None:
    xyxy = torch.tensor([[10.0, 20.0, 30.0, 60.0]])
    xywh = torch.tensor([[10.0, 20.0, 20.0, 40.0]])
    cxcywh = torch.tensor([[20.0, 40.0, 20.0, 40.0]])
    table = {"xyxy": xyxy, "xywh": xywh, "cxcywh": cxcywh}
    for src in FORMATS:
        for dst in FORMATS:
            torch.testing.assert_close(box_convert(table[src], src, dst), table[dst], msg=f"{src} -> {dst}")


def test_box_convert_same_format_is_a_copy() -> None:
    boxes = torch.rand(3, 4)
    out = box_convert(boxes, "xywh", "xywh")
    assert torch.equal(out, boxes) and out.data_ptr() != boxes.data_ptr()


def test_box_convert_batched_shape() -> None:
    boxes = torch.rand(2, 5, 4)
    assert box_convert(boxes, "cxcywh", "xywh").shape == (2, 5, 4)


def test_box_convert_rejects_unknown_format() -> None:
    with pytest.raises(ValueError, match="xyxyz"):
        box_convert(torch.rand(1, 4), "xyxyz", "xyxy")


def test_clip_boxes_to_image() -> None:
    boxes = torch.tensor([[-5.0, -5.0, 50.0, 50.0], [10.0, 20.0, 200.0, 300.0]])
    clipped = clip_boxes_to_image(boxes, (100, 150))  # (height, width)
    assert clipped.tolist() == [[0.0, 0.0, 50.0, 50.0], [10.0, 20.0, 150.0, 100.0]]


def test_clip_boxes_to_image_any_leading_shape() -> None:
    boxes = torch.tensor([[[-1.0, 2.0, 9.0, 12.0]], [[3.0, -4.0, 5.0, 6.0]]])  # [2, 1, 4]
    clipped = clip_boxes_to_image(boxes, (10, 8))
    assert clipped.shape == (2, 1, 4)
    assert clipped.tolist() == [[[0.0, 2.0, 8.0, 10.0]], [[3.0, 0.0, 5.0, 6.0]]]


def test_remove_small_boxes() -> None:
    boxes = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],  # 10 x 10
            [0.0, 0.0, 0.5, 10.0],  # too narrow
            [0.0, 0.0, 10.0, 0.9],  # too short
            [5.0, 5.0, 6.0, 6.0],  # exactly 1 x 1: kept (>=)
        ]
    )
    keep = remove_small_boxes(boxes, min_size=1.0)
    assert keep.dtype == torch.int64
    assert keep.tolist() == [0, 3]
    assert remove_small_boxes(torch.zeros(0, 4), 1.0).tolist() == []


def test_masks_to_boxes_drawn_rectangle() -> None:
    masks = torch.zeros(3, 8, 10, dtype=torch.uint8)
    masks[0, 2:5, 3:8] = 1  # rows 2..4, cols 3..7
    masks[1, 6, 9] = 255  # one pixel at row 6, col 9
    masks[2, 0, 0] = 1
    masks[2, 7, 1] = 1  # spans rows 0..7, cols 0..1
    boxes = masks_to_boxes(masks)
    assert boxes.dtype == torch.float32
    assert boxes.tolist() == [[3.0, 2.0, 7.0, 4.0], [9.0, 6.0, 9.0, 6.0], [0.0, 0.0, 1.0, 7.0]]


def test_masks_to_boxes_bool_and_empty() -> None:
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[1, 1:3, 2] = True
    assert masks_to_boxes(masks).tolist() == [[0.0, 0.0, 0.0, 0.0], [2.0, 1.0, 2.0, 2.0]]
    assert masks_to_boxes(torch.zeros(0, 5, 5)).shape == (0, 4)


# ---------------------------------------------------------------- oracle


def test_box_iou_matches_oracle() -> None:
    case = load_ops()["box_iou"][0]
    torch.testing.assert_close(box_iou(case["a"], case["b"]), case["iou"], rtol=0, atol=1e-6)
    torch.testing.assert_close(generalized_box_iou(case["a"], case["b"]), case["giou"], rtol=0, atol=1e-6)


# ---------------------------------------------------------------- properties


@st.composite
def boxes_strategy(draw: st.DrawFn, max_n: int = 8) -> torch.Tensor:
    """``[N, 4]`` valid xyxy boxes (positive width and height)."""
    n = draw(st.integers(1, max_n))
    coord = st.floats(-50.0, 150.0, allow_nan=False, width=32)
    side = st.floats(0.25, 100.0, allow_nan=False, width=32)
    rows = [[draw(coord), draw(coord), draw(side), draw(side)] for _ in range(n)]
    xywh = torch.tensor(rows, dtype=torch.float32)
    return torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(boxes_strategy(), boxes_strategy())
def test_iou_symmetric_and_bounded(a: torch.Tensor, b: torch.Tensor) -> None:
    iou = box_iou(a, b)
    assert torch.equal(iou, box_iou(b, a).T)
    assert bool((iou >= 0).all()) and bool((iou <= 1).all())


@settings(max_examples=60, deadline=None, derandomize=True)
@given(boxes_strategy())
def test_iou_with_itself_is_one(a: torch.Tensor) -> None:
    torch.testing.assert_close(box_iou(a, a).diagonal(), torch.ones(len(a)))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(boxes_strategy(), boxes_strategy())
def test_giou_bounded_and_at_most_iou(a: torch.Tensor, b: torch.Tensor) -> None:
    giou = generalized_box_iou(a, b)
    assert bool((giou >= -1 - 1e-6).all()) and bool((giou <= 1 + 1e-6).all())
    assert bool((giou <= box_iou(a, b) + 1e-6).all())


@settings(max_examples=60, deadline=None, derandomize=True)
@given(boxes_strategy(), st.sampled_from(FORMATS), st.sampled_from(FORMATS))
def test_box_convert_round_trip(boxes: torch.Tensor, fmt_a: str, fmt_b: str) -> None:
    there = box_convert(box_convert(boxes, "xyxy", fmt_a), fmt_a, fmt_b)
    back = box_convert(box_convert(there, fmt_b, fmt_a), fmt_a, "xyxy")
    torch.testing.assert_close(back, boxes, rtol=1e-5, atol=1e-4)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(boxes_strategy(), st.integers(1, 200), st.integers(1, 200))
def test_clip_stays_inside(boxes: torch.Tensor, height: int, width: int) -> None:
    clipped = clip_boxes_to_image(boxes, (height, width))
    assert bool((clipped[:, 0::2] >= 0).all()) and bool((clipped[:, 0::2] <= width).all())
    assert bool((clipped[:, 1::2] >= 0).all()) and bool((clipped[:, 1::2] <= height).all())


def test_box_ops_script():
    import torchdet.ops.boxes as B

    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [-5.0, 2.0, 30.0, 8.0]])
    for name in B.__all__:
        torch.jit.script(getattr(B, name))
    assert torch.equal(torch.jit.script(B.clip_boxes_to_image)(boxes, (8, 20)), B.clip_boxes_to_image(boxes, (8, 20)))
    assert torch.equal(torch.jit.script(B.box_convert)(boxes, "xyxy", "cxcywh"), B.box_convert(boxes, "xyxy", "cxcywh"))


# --- fmt parameters, batched pairwise ops, DIoU / CIoU, rotated formats -------------------------

from torchdet.ops.boxes import complete_box_iou, distance_box_iou  # noqa: E402


@settings(max_examples=30, deadline=None, derandomize=True)
@given(boxes_strategy(), boxes_strategy(), st.sampled_from(["xyxy", "xywh", "cxcywh"]))
def test_box_iou_and_area_in_any_format(boxes1: torch.Tensor, boxes2: torch.Tensor, fmt: str) -> None:
    b1, b2 = box_convert(boxes1, "xyxy", fmt), box_convert(boxes2, "xyxy", fmt)
    torch.testing.assert_close(box_iou(b1, b2, fmt=fmt), box_iou(boxes1, boxes2), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(box_area(b1, fmt=fmt), box_area(boxes1), atol=1e-3, rtol=1e-5)


def test_fmt_hand_worked_and_refused() -> None:
    a = torch.tensor([[1.0, 1.0, 2.0, 2.0]])  # cxcywh: the box 0..2 x 0..2
    b = torch.tensor([[2.0, 2.0, 2.0, 2.0]])  # cxcywh: the box 1..3 x 1..3
    assert box_iou(a, b, fmt="cxcywh").item() == pytest.approx(1 / 7)
    assert box_area(torch.tensor([[5.0, 5.0, 3.0, 4.0]]), fmt="xywh").item() == 12.0
    with pytest.raises(ValueError, match="fmt='xywhr'"):
        box_iou(a, b, fmt="xywhr")
    with pytest.raises(ValueError, match="fmt='yxyx'"):
        box_area(a, fmt="yxyx")


def test_pairwise_ops_take_batches() -> None:
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(3, 5, 2, generator=g) * 20
    b1 = torch.cat([xy, xy + 1 + torch.rand(3, 5, 2, generator=g) * 10], dim=-1)  # [3, 5, 4]
    b2 = b1[:, :4] + torch.rand(3, 4, 4, generator=g)  # [3, 4, 4]
    for fn in (box_iou, generalized_box_iou, distance_box_iou, complete_box_iou):
        batched = fn(b1, b2)
        assert batched.shape == (3, 5, 4)
        for i in range(3):
            torch.testing.assert_close(batched[i], fn(b1[i], b2[i]))
    assert box_area(b1).shape == (3, 5)


def test_distance_and_complete_iou_hand_worked() -> None:
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 4.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 4.0]])
    diou = distance_box_iou(a, b)
    assert diou[0, 0].item() == pytest.approx(1 / 7 - 2 / 18, abs=1e-6)
    assert diou[1, 1].item() == pytest.approx(1 / 3 - 2 / 32, abs=1e-6)
    ciou = complete_box_iou(a, b)
    assert ciou[0, 0].item() == pytest.approx(diou[0, 0].item(), abs=1e-6)  # equal aspect ratios
    v = 4 / math.pi**2 * (math.atan(2.0) - math.atan(0.5)) ** 2
    assert ciou[1, 1].item() == pytest.approx(1 / 3 - 2 / 32 - v / (1 - 1 / 3 + v) * v, abs=1e-6)
    torch.testing.assert_close(torch.diagonal(distance_box_iou(a, a)), torch.ones(2))
    assert distance_box_iou(a.int(), b.int()).dtype == torch.float32


def test_rotated_formats_hand_worked() -> None:
    # Unrotated: a 4 x 2 box centred at (5, 5).
    box = torch.tensor([[5.0, 5.0, 4.0, 2.0, 0.0]])
    torch.testing.assert_close(box_convert(box, "cxcywhr", "xywhr"), torch.tensor([[3.0, 4.0, 4.0, 2.0, 0.0]]))
    corners = torch.tensor([[3.0, 4.0, 7.0, 4.0, 7.0, 6.0, 3.0, 6.0]])  # TL, TR, BR, BL
    torch.testing.assert_close(box_convert(box, "cxcywhr", "xyxyxyxy"), corners)
    # A 2 x 2 box at the origin turned 90 degrees counter-clockwise (y points down): the top-left
    # corner moves to (-1, 1) and the top edge now runs upwards to (-1, -1).
    turned = box_convert(torch.tensor([[0.0, 0.0, 2.0, 2.0, 90.0]]), "cxcywhr", "xyxyxyxy")
    torch.testing.assert_close(turned, torch.tensor([[-1.0, 1.0, -1.0, -1.0, 1.0, -1.0, 1.0, 1.0]]), atol=1e-6, rtol=0)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    st.lists(
        st.tuples(st.floats(-50, 50), st.floats(-50, 50), st.floats(1, 30), st.floats(1, 30), st.floats(-179, 179)),
        min_size=1, max_size=5,
    ),
    st.sampled_from(["xywhr", "xyxyxyxy"]),
)
def test_rotated_round_trips(rows: list, fmt: str) -> None:
    boxes = torch.tensor(rows, dtype=torch.float64)
    back = box_convert(box_convert(boxes, "cxcywhr", fmt), fmt, "cxcywhr")
    torch.testing.assert_close(back, boxes, atol=1e-6, rtol=1e-6)


def test_rotated_and_axis_aligned_do_not_mix() -> None:
    with pytest.raises(NotImplementedError, match="rotated"):
        box_convert(torch.zeros(1, 4), "xyxy", "xywhr")
    with pytest.raises(ValueError, match="xyxyr"):
        box_convert(torch.zeros(1, 5), "xyxyr", "xywhr")


def test_new_box_ops_trace_and_export() -> None:
    class Ious(torch.nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return (
                box_iou(a, b, fmt="cxcywh") + generalized_box_iou(a, b) + distance_box_iou(a, b) + complete_box_iou(a, b)
                + box_area(a, fmt="xywh")[..., :, None]
            )

    a = torch.tensor([[[1.0, 1.0, 3.0, 4.0], [0.0, 0.0, 2.0, 2.0]]])
    b = torch.tensor([[[2.0, 2.0, 3.0, 3.0]]])
    expected = Ious()(a, b)
    torch.testing.assert_close(torch.fx.symbolic_trace(Ious())(a, b), expected)
    torch.testing.assert_close(torch.export.export(Ious(), (a, b), strict=False).module()(a, b), expected)
