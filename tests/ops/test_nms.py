"""NMS: the oracle's kept indices, hand-checked cases, and properties against a slow greedy loop."""
from __future__ import annotations

import importlib
from typing import List, Tuple

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from _oracle import load_ops
from torchdet.errors import InvalidOpInputError
from torchdet.ops.boxes import box_iou
from torchdet.ops.nms import batched_nms, batched_nms_top, nms

ORACLE = load_ops()


def reference_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> List[int]:
    """The textbook greedy loop: visit by score (ties: lower index), keep unless IoU > threshold."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    boxes = boxes.float() if boxes.dtype != torch.float64 else boxes
    iou = box_iou(boxes, boxes).double()  # inter / (area_i + area_j - inter), compared as double
    kept: List[int] = []
    for i in order:
        if all(not float(iou[k, i]) > iou_threshold for k in kept):
            kept.append(i)
    return kept


# ---------------------------------------------------------------- oracle


@pytest.mark.parametrize("case", ORACLE["nms"], ids=lambda c: f"n{len(c['scores'])}-iou{c['iou_threshold']}")
def test_nms_matches_oracle(case: dict) -> None:
    keep = nms(case["boxes"], case["scores"], case["iou_threshold"])
    assert keep.dtype == torch.int64
    assert torch.equal(keep, case["keep"])


@pytest.mark.parametrize(
    "case", ORACLE["batched_nms"], ids=lambda c: f"n{len(c['scores'])}-iou{c['iou_threshold']}"
)
def test_batched_nms_matches_oracle(case: dict) -> None:
    keep = batched_nms(case["boxes"], case["scores"], case["idxs"], case["iou_threshold"])
    assert torch.equal(keep, case["keep"])


# ---------------------------------------------------------------- hand-checked cases


def test_nms_suppresses_overlapping_lower_score() -> None:
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [20.0, 20.0, 30.0, 30.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    # IoU(0, 1) = 81 / 119 = 0.68
    assert nms(boxes, scores, 0.5).tolist() == [0, 2]
    assert nms(boxes, scores, 0.7).tolist() == [0, 1, 2]


def test_nms_orders_by_score_not_index() -> None:
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0], [5.0, 5.0, 6.0, 6.0], [10.0, 10.0, 11.0, 11.0]])
    assert nms(boxes, torch.tensor([0.1, 0.9, 0.5]), 0.5).tolist() == [1, 2, 0]


def test_nms_ties_keep_lower_index_first() -> None:
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]])
    scores = torch.tensor([0.5, 0.5, 0.5])
    assert nms(boxes, scores, 0.5).tolist() == [0, 2]


def test_nms_iou_equal_to_threshold_is_not_suppressed() -> None:
    boxes = torch.tensor([[0.0, 0.0, 4.0, 1.0], [0.0, 0.0, 2.0, 1.0]])  # IoU exactly 0.5
    scores = torch.tensor([0.9, 0.8])
    assert nms(boxes, scores, 0.5).tolist() == [0, 1]
    assert nms(boxes, scores, 0.49).tolist() == [0]


def test_nms_compares_float_iou_with_double_threshold() -> None:
    # IoU = 3 / 10 rounds to float32 0.30000001 > 0.3 (the double), so the box goes, as in
    # torchvision's kernel; a float32 comparison (0.30000001 > float32(0.3)) would keep it.
    boxes = torch.tensor([[0.0, 0.0, 3.0, 1.0], [0.0, 0.0, 10.0, 1.0]])
    scores = torch.tensor([0.9, 0.8])
    assert nms(boxes, scores, 0.3).tolist() == [0]


def test_nms_empty_and_single() -> None:
    empty = nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
    assert empty.dtype == torch.int64 and empty.shape == (0,)
    assert nms(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([0.3]), 0.5).tolist() == [0]
    assert batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5).shape == (0,)


def test_nms_degenerate_boxes_do_not_suppress() -> None:
    boxes = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0]])
    assert nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5).tolist() == [0, 1, 2]


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64])
def test_nms_other_dtypes(dtype: torch.dtype) -> None:
    case = ORACLE["nms"][1]
    boxes, scores = case["boxes"].to(dtype), case["scores"].to(dtype)
    keep = nms(boxes, scores, case["iou_threshold"])
    assert keep.dtype == torch.int64
    assert keep.tolist() == reference_nms(boxes, scores, case["iou_threshold"])


def test_batched_nms_classes_do_not_interact() -> None:
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert batched_nms(boxes, scores, torch.tensor([0, 1, 0]), 0.5).tolist() == [0, 1]


def test_rejects_bad_shapes() -> None:
    with pytest.raises(InvalidOpInputError, match="boxes"):
        nms(torch.zeros(3, 5), torch.zeros(3), 0.5)
    with pytest.raises(ValueError, match="scores"):
        nms(torch.zeros(3, 4), torch.zeros(2), 0.5)
    with pytest.raises(ValueError, match="idxs"):
        batched_nms(torch.zeros(3, 4), torch.zeros(3), torch.zeros(2, dtype=torch.int64), 0.5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_nms_cuda() -> None:
    case = ORACLE["batched_nms"][1]
    keep = batched_nms(case["boxes"].cuda(), case["scores"].cuda(), case["idxs"].cuda(), case["iou_threshold"])
    assert keep.is_cuda and torch.equal(keep.cpu(), case["keep"])


def _random_boxes(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 200
    return torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 60 + 1], dim=1)


def test_nms_many_blocks_matches_reference() -> None:
    """Several greedy blocks and column tiles, many ties in score."""
    boxes = _random_boxes(700, seed=3)
    scores = torch.randint(0, 20, (700,), generator=torch.Generator().manual_seed(4)).float()
    assert nms(boxes, scores, 0.4).tolist() == reference_nms(boxes, scores, 0.4)


@pytest.mark.parametrize("side_by_side", [False, True])
def test_batched_nms_grouped_path_equals_per_class_nms(side_by_side: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above 1000 boxes batched_nms groups by class (no coordinate offsets): exactly per-class NMS,
    whether the classes' passes run one after the other or side by side."""
    nms_module = importlib.import_module("torchdet.ops._nms_numpy")
    monkeypatch.setattr(nms_module, "_MIN_GROUPS_SIDE_BY_SIDE", 1 if side_by_side else 10**9)
    n = 1500
    boxes = _random_boxes(n, seed=5)
    scores = torch.rand(n, generator=torch.Generator().manual_seed(6))
    idxs = torch.randint(0, 7, (n,), generator=torch.Generator().manual_seed(7))
    keep = batched_nms(boxes, scores, idxs, 0.5)
    assert keep.tolist() == per_class_nms(boxes, scores, idxs, 0.5)


def test_batched_nms_many_classes_equals_per_class_nms() -> None:
    """The all-classes-at-once pass: 60 classes of 1 to 150 boxes (several rounds per class),
    score ties, empty and repeated boxes, class ids with gaps."""
    g = torch.Generator().manual_seed(8)
    sizes = torch.randint(1, 150, (60,), generator=g)
    idxs = torch.repeat_interleave(torch.arange(60) * 3 + 1, sizes)
    idxs = idxs[torch.randperm(idxs.numel(), generator=g)]
    n = idxs.numel()
    boxes = _random_boxes(n, seed=9)
    boxes[::17, 2:] = boxes[::17, :2]  # empty boxes
    boxes[1::23] = boxes[0]  # repeats
    scores = torch.randint(0, 30, (n,), generator=g).float()
    for thr in [0.0, 0.3, 0.7]:
        assert batched_nms(boxes, scores, idxs, thr).tolist() == per_class_nms(boxes, scores, idxs, thr)


def per_class_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, thr: float) -> List[int]:
    kept: List[int] = []
    for c in idxs.unique().tolist():
        members = torch.where(idxs == c)[0]
        kept += members[nms(boxes[members], scores[members], thr)].tolist()
    return sorted(kept, key=lambda i: (-float(scores[i]), i))


# ---------------------------------------------------------------- properties


@st.composite
def detections(draw: st.DrawFn, integer: bool = False):
    """Boxes on a small grid (so overlaps and exact ties happen), scores with ties."""
    n = draw(st.integers(1, 25))
    if integer:
        coord, side = st.integers(0, 20), st.integers(1, 12)
    else:
        coord = st.floats(0.0, 20.0, allow_nan=False, width=32)
        side = st.floats(0.125, 12.0, allow_nan=False, width=32)
    xywh = torch.tensor([[draw(coord), draw(coord), draw(side), draw(side)] for _ in range(n)], dtype=torch.float32)
    boxes = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)
    scores = torch.tensor([draw(st.integers(0, 6)) / 6 for _ in range(n)], dtype=torch.float32)
    return boxes, scores


THRESHOLDS = st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.7, 0.95, 1.0])


@settings(max_examples=60, deadline=None, derandomize=True)
@given(detections(), THRESHOLDS)
def test_nms_properties(data, thr: float) -> None:
    boxes, scores = data
    keep = nms(boxes, scores, thr)
    kept = keep.tolist()
    assert len(set(kept)) == len(kept) and all(0 <= i < len(boxes) for i in kept)
    assert bool((scores[keep][1:] <= scores[keep][:-1]).all()), "not sorted by decreasing score"
    iou = box_iou(boxes, boxes).double()
    for a, i in enumerate(kept):
        for j in kept[a + 1 :]:
            assert not float(iou[i, j]) > thr, f"kept boxes {i} and {j} overlap with IoU {float(iou[i, j])}"
    rank = {i: r for r, i in enumerate(sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i)))}
    for j in set(range(len(boxes))) - set(kept):
        assert any(rank[i] < rank[j] and float(iou[i, j]) > thr for i in kept), f"box {j} removed without cause"
    assert kept == reference_nms(boxes, scores, thr)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(detections(integer=True), THRESHOLDS, st.data())
def test_batched_nms_equals_per_class_nms(data, thr: float, draw) -> None:
    boxes, scores = data
    idxs = torch.tensor(draw.draw(st.lists(st.integers(0, 3), min_size=len(boxes), max_size=len(boxes))))
    assert batched_nms(boxes, scores, idxs, thr).tolist() == per_class_nms(boxes, scores, idxs, thr)


# ---------------------------------------------------------------- TorchScript


class _NMSModule(torch.nn.Module):
    def forward(
        self, boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        return nms(boxes, scores, iou_threshold), batched_nms(boxes, scores, idxs, iou_threshold)


@pytest.fixture(scope="module")
def scripted_nms() -> torch.jit.ScriptModule:
    return torch.jit.script(_NMSModule())


def test_scripted_nms_matches_oracle(scripted_nms: torch.jit.ScriptModule) -> None:
    for case in ORACLE["nms"]:
        no_classes = torch.zeros(case["scores"].shape, dtype=torch.int64)
        keep, _ = scripted_nms(case["boxes"], case["scores"], no_classes, case["iou_threshold"])
        assert torch.equal(keep, case["keep"])
    for case in ORACLE["batched_nms"]:
        _, keep = scripted_nms(case["boxes"], case["scores"], case["idxs"], case["iou_threshold"])
        assert torch.equal(keep, case["keep"])


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_scripted_nms_equals_eager(scripted_nms: torch.jit.ScriptModule, dtype: torch.dtype) -> None:
    """Several blocks, score ties, both forms of batched_nms (offsets up to 1000 boxes, grouping above;
    the NumPy form runs the classes' passes one after the other below 8 classes, side by side from 8)."""
    for n, classes in [(300, 3), (700, 1), (1500, 7), (1200, 12)]:
        boxes = _random_boxes(n, seed=n).to(dtype)
        scores = torch.randint(0, 20, (n,), generator=torch.Generator().manual_seed(n + 1)).to(dtype)
        idxs = torch.randint(0, classes, (n,), generator=torch.Generator().manual_seed(n + 2))
        keep, keep_batched = scripted_nms(boxes, scores, idxs, 0.4)
        assert torch.equal(keep, nms(boxes, scores, 0.4))
        assert torch.equal(keep_batched, batched_nms(boxes, scores, idxs, 0.4))
    empty = scripted_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5)
    assert empty[0].shape == (0,) and empty[1].shape == (0,)


def test_scripted_nms_rejects_bad_shapes(scripted_nms: torch.jit.ScriptModule) -> None:
    with pytest.raises(Exception, match="boxes of shape"):
        scripted_nms(torch.zeros(3, 5), torch.zeros(3), torch.zeros(3, dtype=torch.int64), 0.5)


@pytest.mark.parametrize("n,classes,max_kept,ties", [
    (3000, 90, 100, False),  # many classes: the first prefix is enough
    (3000, 90, 100, True),   # scores from 12 values: prefixes end inside runs of ties
    (2500, 2, 300, False),   # two classes: heavy suppression, the prefix has to grow
    (5000, 1, 50, True),
    (1200, 5, 1000, False),  # max_kept * 4 >= n: plain batched_nms
    (600, 4, 10, False),     # below the grouping size: plain batched_nms (offset form)
])
def test_batched_nms_top_equals_the_head_of_batched_nms(n: int, classes: int, max_kept: int, ties: bool) -> None:
    generator = torch.Generator().manual_seed(n + classes)
    boxes = _random_boxes(n, seed=n + 7)
    if ties:
        scores = torch.randint(0, 12, (n,), generator=generator).float() / 12
    else:
        scores = torch.rand(n, generator=generator)
    idxs = torch.randint(0, classes, (n,), generator=generator)
    expected = batched_nms(boxes, scores, idxs, 0.5)[:max_kept]
    assert torch.equal(batched_nms_top(boxes, scores, idxs, 0.5, max_kept), expected)


def test_scripted_batched_nms_top_equals_eager() -> None:
    scripted = torch.jit.script(batched_nms_top)
    boxes = _random_boxes(2000, seed=3)
    scores = torch.rand(2000, generator=torch.Generator().manual_seed(4))
    idxs = torch.randint(0, 9, (2000,), generator=torch.Generator().manual_seed(5))
    assert torch.equal(scripted(boxes, scores, idxs, 0.5, 100), batched_nms_top(boxes, scores, idxs, 0.5, 100))
