"""Every registered form of NMS against the reference, the device form's host reads, and graph capture."""
from __future__ import annotations

from typing import Callable, Dict, List

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode

from _oracle import load_ops
from torchdet.errors import InvalidOpInputError
from torchdet.ops._nms_common import offset_trick_limit
from torchdet.ops.dispatch import forced
from torchdet.ops.nms import batched_nms, batched_nms_top, nms, nms_dispatcher

ORACLE = load_ops()
FORMS = nms_dispatcher.implementations()
EAGER_FORMS = ["reference", "numpy", "device"]  # the graph forms use the offset form of batched_nms at any size


def test_the_registered_forms() -> None:
    assert list(FORMS) == ["reference", "numpy", "device", "onnx", "custom_op"]
    assert nms_dispatcher.select("cpu", "eager")[0] == "numpy"
    assert nms_dispatcher.select("cuda", "eager")[0] == "device"
    assert nms_dispatcher.select("cuda", "trace")[0] == "onnx"
    assert nms_dispatcher.select("cpu", "compile")[0] == "custom_op"


# ---------------------------------------------------------------- every form on the oracle's cases


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("case", ORACLE["nms"], ids=lambda c: f"n{len(c['scores'])}")
def test_every_form_matches_the_oracle_nms(form: str, case: dict) -> None:
    with forced("nms", form):
        keep = nms(case["boxes"], case["scores"], case["iou_threshold"])
    assert keep.dtype == torch.int64 and torch.equal(keep, case["keep"])


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("case", ORACLE["batched_nms"], ids=lambda c: f"n{len(c['scores'])}")
def test_every_form_matches_the_oracle_batched_nms(form: str, case: dict) -> None:
    if form not in EAGER_FORMS and case["boxes"].numel() > offset_trick_limit("cpu"):
        pytest.skip("graph forms offset coordinates at every size; the oracle grouped these by class")
    with forced("nms", form):
        keep = batched_nms(case["boxes"], case["scores"], case["idxs"], case["iou_threshold"])
        top = batched_nms_top(case["boxes"], case["scores"], case["idxs"], case["iou_threshold"], 20)
    assert torch.equal(keep, case["keep"]) and torch.equal(top, case["keep"][:20])


# ---------------------------------------------------------------- properties: every form = reference


@st.composite
def detections(draw: st.DrawFn):
    """0-30 boxes on a small grid (overlaps, repeats and exact ties happen), up to 12 classes."""
    n = draw(st.integers(0, 30))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    if draw(st.booleans()):
        coord, side = st.integers(0, 16), st.integers(0, 10)  # side 0: empty boxes
    else:
        coord, side = st.floats(0.0, 16.0, width=32), st.floats(0.0, 10.0, width=32)
    xywh = torch.tensor([[draw(coord), draw(coord), draw(side), draw(side)] for _ in range(n)], dtype=dtype)
    xywh = xywh.reshape(n, 4)
    boxes = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)
    scores = torch.tensor([draw(st.integers(0, 4)) / 4 for _ in range(n)], dtype=dtype)
    classes = draw(st.integers(1, 12))
    idxs = torch.tensor([draw(st.integers(0, classes - 1)) for _ in range(n)], dtype=torch.int64)
    return boxes, scores, idxs


@settings(max_examples=150, deadline=None, derandomize=True)
@given(detections(), st.sampled_from([0.0, 0.2, 0.5, 0.7, 1.0]), st.integers(1, 10))
def test_every_form_keeps_what_the_reference_keeps(data, thr: float, max_kept: int) -> None:
    boxes, scores, idxs = data
    reference = FORMS["reference"]
    expected = (reference.nms(boxes, scores, thr), reference.batched_nms(boxes, scores, idxs, thr),
                reference.batched_nms_top(boxes, scores, idxs, thr, max_kept))
    for name, form in FORMS.items():
        got = (form.nms(boxes, scores, thr), form.batched_nms(boxes, scores, idxs, thr),
               form.batched_nms_top(boxes, scores, idxs, thr, max_kept))
        for what, a, b in zip(("nms", "batched_nms", "batched_nms_top"), got, expected):
            assert a.dtype == torch.int64 and a.tolist() == b.tolist(), f"{name} {what}"


def _random_detections(n: int, classes: int, seed: int, dtype: torch.dtype = torch.float32, ties: bool = True):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 200
    boxes = torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 60 + 1], dim=1).to(dtype)
    boxes[::29, 2:] = boxes[::29, :2]  # empty boxes
    boxes[1::31] = boxes[0]  # repeats
    if ties:
        scores = (torch.randint(0, 25, (n,), generator=g).double() / 25).to(dtype)
    else:
        scores = torch.rand(n, generator=g, dtype=torch.float64).to(dtype)
    return boxes, scores, torch.randint(0, classes, (n,), generator=g) * 3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n,classes", [(700, 1), (900, 40), (1500, 3), (2500, 90)])
def test_eager_forms_agree_on_many_boxes(n: int, classes: int, dtype: torch.dtype) -> None:
    """Several blocks, both forms of batched_nms (offsets up to 1000 boxes, grouping above), score ties."""
    boxes, scores, idxs = _random_detections(n, classes, seed=n + classes, dtype=dtype)
    reference = FORMS["reference"]
    for thr in (0.3, 0.7):
        expected = reference.nms(boxes, scores, thr), reference.batched_nms(boxes, scores, idxs, thr)
        for name in EAGER_FORMS[1:]:
            form = FORMS[name]
            assert torch.equal(form.nms(boxes, scores, thr), expected[0]), name
            assert torch.equal(form.batched_nms(boxes, scores, idxs, thr), expected[1]), name
            assert torch.equal(form.batched_nms_top(boxes, scores, idxs, thr, 50), expected[1][:50]), name


@pytest.mark.parametrize("form", list(FORMS))
def test_all_suppressed_but_one(form: str) -> None:
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0]]).repeat(6, 1)
    scores = torch.tensor([0.2, 0.9, 0.9, 0.1, 0.5, 0.9])
    with forced("nms", form):
        assert nms(boxes, scores, 0.5).tolist() == [1]
        assert batched_nms(boxes, scores, torch.tensor([0, 1, 1, 0, 0, 2]), 0.5).tolist() == [1, 5, 4]


@pytest.mark.parametrize("form", list(FORMS))
def test_bad_shapes_raise_for_every_form(form: str) -> None:
    with forced("nms", form):
        with pytest.raises(InvalidOpInputError, match=r"boxes of shape \[N, 4\], got \[3, 5\]"):
            nms(torch.zeros(3, 5), torch.zeros(3), 0.5)
        with pytest.raises(RuntimeError, match="idxs of shape"):
            batched_nms_top(torch.zeros(3, 4), torch.zeros(3), torch.zeros(2, dtype=torch.int64), 0.5, 10)


# ---------------------------------------------------------------- the device form's host reads


class _HostReads(TorchDispatchMode):
    """Counts the ops that make the host wait for a device: scalar reads, data-dependent shapes, copies."""

    SCALAR = {"_local_scalar_dense", "item", "is_nonzero", "equal", "allclose"}
    DATA_DEPENDENT = {"nonzero", "masked_select", "_unique2", "unique_dim", "unique_consecutive",
                      "repeat_interleave", "bincount"}

    def __init__(self) -> None:
        super().__init__()
        self.reads: List[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        if name in self.SCALAR or name in self.DATA_DEPENDENT:
            self.reads.append(name)
        elif name in ("index", "index_put", "index_put_") and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] or [])
        ):
            self.reads.append(f"{name}[bool]")
        elif name == "_to_copy" and kwargs.get("device", args[0].device) != args[0].device:
            self.reads.append(f"_to_copy->{kwargs['device']}")
        elif name == "copy_" and args[0].device != args[1].device:
            self.reads.append(f"copy_->{args[0].device}")
        return func(*args, **kwargs)


def host_reads(fn: Callable[[], torch.Tensor]) -> List[str]:
    with _HostReads() as mode:
        fn()
    return mode.reads


def test_the_counter_sees_host_reads() -> None:
    x = torch.tensor([0.0, 1.0, 2.0])
    assert host_reads(lambda: x[x > 0] + x.sum().item() + x.nonzero()[0]) == ["index[bool]", "_local_scalar_dense",
                                                                             "nonzero"]
    assert host_reads(lambda: x.to("meta") + torch.zeros(3, device="meta").copy_(x)) == ["_to_copy->meta", "copy_->meta"]
    assert host_reads(lambda: x.to(torch.float64) + torch.zeros(3).copy_(x)) == []


@pytest.mark.parametrize("thr", [0.3, 0.7])
def test_device_form_reads_the_host_a_constant_number_of_times(thr: float) -> None:
    device = FORMS["device"]
    counts: Dict[str, List[int]] = {"nms": [], "offset": [], "grouped": []}
    for n in (100, 3000):
        boxes, scores, idxs = _random_detections(n, 7, seed=n, ties=False)
        counts["nms"].append(len(host_reads(lambda: device.nms(boxes, scores, thr))))
    for n in (100, 900):
        boxes, scores, idxs = _random_detections(n, 7, seed=n)
        counts["offset"].append(len(host_reads(lambda: device.batched_nms(boxes, scores, idxs, thr))))
    for n in (1100, 3000):  # above 1000 boxes on the CPU: grouped by class
        boxes, scores, idxs = _random_detections(n, 60, seed=n)
        counts["grouped"].append(len(host_reads(lambda: device.batched_nms_top(boxes, scores, idxs, thr, 100))))
    assert counts == {"nms": [1, 1], "offset": [1, 1], "grouped": [2, 2]}
    boxes, scores, idxs = _random_detections(3000, 1, seed=1, ties=False)
    assert len(host_reads(lambda: FORMS["reference"].nms(boxes, scores, thr))) > 20  # one per block and more


def test_device_form_takes_more_rounds_on_long_chains() -> None:
    """A chain of boxes each overlapping the next only: the greedy result alternates kept and
    suppressed, and the fixed point needs one step per box; every round still reads once."""
    n = 80
    x = torch.arange(n, dtype=torch.float64) * 0.5
    boxes = torch.stack([x, torch.zeros(n), x + 1, torch.ones(n)], dim=1)  # neighbours' IoU 1/3
    scores = torch.linspace(1, 0, n, dtype=torch.float64)
    expected = FORMS["reference"].nms(boxes, scores, 0.3)
    assert expected.tolist() == list(range(0, n, 2))
    reads: List[str] = []
    with _HostReads() as mode:
        keep = FORMS["device"].nms(boxes, scores, 0.3)
        reads = mode.reads
    assert torch.equal(keep, expected)
    assert reads == ["_local_scalar_dense"] * 3  # rounds of 16, 32, 64 steps


# ---------------------------------------------------------------- graph capture


class _Postprocess(torch.nn.Module):
    def forward(self, boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor):  # type: ignore[no-untyped-def]
        return nms(boxes, scores, 0.5), batched_nms(boxes, scores, idxs, 0.4), batched_nms_top(boxes, scores, idxs, 0.4, 7)


def _inputs(n: int = 300):  # type: ignore[no-untyped-def]
    boxes, scores, idxs = _random_detections(n, 3, seed=n, ties=False)
    return boxes, scores, idxs


def _assert_same(got, expected) -> None:  # type: ignore[no-untyped-def]
    assert len(got) == len(expected) and all(torch.equal(a, b) for a, b in zip(got, expected))


def test_fx_symbolic_trace_records_the_custom_op() -> None:
    graph = torch.fx.symbolic_trace(_Postprocess())
    targets = [node.target for node in graph.graph.nodes if node.op == "call_function"]
    # nms, then batched_nms and batched_nms_top as the class-wise op (each class by the eager form).
    assert targets.count(torch.ops.torchdet.nms) == 1 and targets.count(torch.ops.torchdet.batched_nms) == 2
    for n in (300, 40):
        inputs = _inputs(n)
        _assert_same(graph(*inputs), _Postprocess()(*inputs))


def test_torch_export_gives_eager_results_at_other_sizes() -> None:
    batch = torch.export.Dim("n", min=1)
    program = torch.export.export(_Postprocess(), _inputs(), dynamic_shapes=({0: batch}, {0: batch}, {0: batch}),
                                  strict=False)
    assert any(node.target == torch.ops.torchdet.batched_nms.default for node in program.graph.nodes)
    for n in (300, 57):
        inputs = _inputs(n)
        _assert_same(program.module()(*inputs), _Postprocess()(*inputs))


@pytest.mark.slow
def test_torch_compile_gives_eager_results() -> None:
    compiled = torch.compile(_Postprocess(), fullgraph=False)
    inputs = _inputs()
    _assert_same(compiled(*inputs), _Postprocess()(*inputs))


def test_custom_op_passes_opcheck() -> None:
    boxes, scores, _ = _inputs(50)
    torch.library.opcheck(torch.ops.torchdet.nms.default, (boxes, scores, 0.5),
                          test_utils=("test_schema", "test_faketensor"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_form_on_cuda_matches_the_cpu() -> None:
    boxes, scores, idxs = _random_detections(3000, 90, seed=0, ties=True)
    for thr in (0.5, 0.7):
        keep = nms(boxes.cuda(), scores.cuda(), thr)
        assert keep.is_cuda and torch.equal(keep.cpu(), nms(boxes, scores, thr))
        on_device = boxes.cuda(), scores.cuda(), idxs.cuda()  # 12000 coordinates: the offset form on CUDA
        assert torch.equal(batched_nms(*on_device, thr), FORMS["reference"].batched_nms(*on_device, thr))
