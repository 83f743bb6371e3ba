"""The graph-recording forms of NMS: one node in the recorded graph, its value from the eager form.

- ``ONNX_FORM`` (mode ``"trace"``: ``torch.jit.trace``, the TorchScript-based ONNX exporter):
  ``nms`` is the autograd function ``_NMSOp``, whose ONNX symbolic is ``NonMaxSuppression``.
- ``CUSTOM_OP_FORM`` (mode ``"compile"``: ``torch.export``, ``torch.compile``, ``torch.fx``):
  ``nms`` and ``batched_nms`` are the custom ops ``torch.ops.torchdet.nms`` /
  ``torch.ops.torchdet.batched_nms``, whose fake implementations return an int64 vector of
  unbacked length, so graphs stay data-independent.

In the ONNX form, ``batched_nms`` is the coordinate-offset form at every size (a graph cannot
group by class); each node's real computation is the form an eager call on that device would run.
"""
from __future__ import annotations

import torch
from torch import Tensor

from torchdet.ops._nms_common import NMSForm
from torchdet.ops.dispatch import all_dispatchers

__all__ = ["ONNX_FORM", "CUSTOM_OP_FORM"]


def _eager_nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """What an eager ``nms`` call on ``boxes``' device computes (``forced()`` aside)."""
    form = all_dispatchers()["nms"].select(boxes.device.type, "eager", use_forced=False)[1]
    return form.nms(boxes, scores, iou_threshold)


class _NMSOp(torch.autograd.Function):
    """``nms`` as one traced node: the eager result forward, ONNX ``NonMaxSuppression`` symbolic."""

    @staticmethod
    def forward(ctx, boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:  # type: ignore[override]
        state = torch._C._get_tracing_state()  # the graph gets the symbolic only, not these ops
        torch._C._set_tracing_state(None)
        try:
            return _eager_nms(boxes, scores, iou_threshold)
        finally:
            torch._C._set_tracing_state(state)

    @staticmethod
    def symbolic(g, boxes, scores, iou_threshold: float):  # type: ignore[no-untyped-def]
        def const(value: Tensor):  # type: ignore[no-untyped-def]
            return g.op("Constant", value_t=value)

        boxes3 = g.op("Reshape", boxes, const(torch.tensor([1, -1, 4], dtype=torch.int64)))  # [1, N, 4]
        scores3 = g.op("Reshape", scores, const(torch.tensor([1, 1, -1], dtype=torch.int64)))  # [1, 1, N]
        max_out = const(torch.tensor([2**62], dtype=torch.int64))
        threshold = const(torch.tensor([float(iou_threshold)], dtype=torch.float32))
        selected = g.op("NonMaxSuppression", boxes3, scores3, max_out, threshold)  # [K, 3]
        return g.op("Gather", selected, const(torch.tensor(2, dtype=torch.int64)), axis_i=1)  # [K]


@torch.library.custom_op("torchdet::nms", mutates_args=())
def _nms_op(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """``torch.ops.torchdet.nms``: ``[N, 4]`` boxes, ``[N]`` scores -> ``[K]`` int64 kept indices."""
    return _eager_nms(boxes, scores, iou_threshold)


@_nms_op.register_fake
def _nms_op_fake(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    kept = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((kept,), dtype=torch.int64)


def _eager_batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """What an eager ``batched_nms`` call on ``boxes``' device computes (class by class where that is faster)."""
    form = all_dispatchers()["nms"].select(boxes.device.type, "eager", use_forced=False)[1]
    return form.batched_nms(boxes, scores, idxs, iou_threshold)


@torch.library.custom_op("torchdet::batched_nms", mutates_args=())
def _batched_nms_op(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """``torch.ops.torchdet.batched_nms``: ``[N, 4]``, ``[N]``, ``[N]`` class ids -> ``[K]`` int64 kept indices.

    One node for the class-wise NMS, so a compiled graph runs the eager form (per class), not
    one NMS over all ``N`` offset boxes (quadratic in ``N``: thousands of boxes at a low score
    threshold).
    """
    return _eager_batched_nms(boxes, scores, idxs, iou_threshold)


@_batched_nms_op.register_fake
def _batched_nms_op_fake(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    kept = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((kept,), dtype=torch.int64)


def _offset_boxes_graph(boxes: Tensor, idxs: Tensor) -> Tensor:
    """``offset_boxes`` that also records on an empty input (zero joins the maximum; boxes are >= 0)."""
    max_coordinate = torch.cat([boxes.detach().flatten(), boxes.new_zeros(1)]).max()
    offsets = idxs.to(boxes) * (max_coordinate + 1)  # [N]
    return boxes + offsets[:, None]


def _onnx_nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    with torch.no_grad():  # a graph for inference; the op is recorded by its symbolic
        return _NMSOp.apply(boxes, scores, float(iou_threshold))


def _onnx_batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    return _onnx_nms(_offset_boxes_graph(boxes, idxs), scores, iou_threshold)


def _onnx_batched_nms_top(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float, max_kept: int) -> Tensor:
    return _onnx_batched_nms(boxes, scores, idxs, iou_threshold)[:max_kept]


def _custom_op_nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    return torch.ops.torchdet.nms(boxes.detach(), scores.detach(), float(iou_threshold))


def _custom_op_batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    return torch.ops.torchdet.batched_nms(boxes.detach(), scores.detach(), idxs, float(iou_threshold))


def _custom_op_batched_nms_top(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float,
                               max_kept: int) -> Tensor:
    return _custom_op_batched_nms(boxes, scores, idxs, iou_threshold)[:max_kept]


ONNX_FORM = NMSForm(nms=_onnx_nms, batched_nms=_onnx_batched_nms, batched_nms_top=_onnx_batched_nms_top)
CUSTOM_OP_FORM = NMSForm(nms=_custom_op_nms, batched_nms=_custom_op_batched_nms,
                         batched_nms_top=_custom_op_batched_nms_top)
