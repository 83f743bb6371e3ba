"""ONNX through torch's default exporter (``torch.onnx.export(..., dynamo=True)``).

The exporter runs ``torch.export`` (the models' NMS and RoIAlign become the custom ops
``torchdet::nms`` / ``torchdet::roi_align``) and translates the program to ONNX.
:func:`translation_table` maps the two custom ops onto ONNX ``NonMaxSuppression`` and
``RoiAlign`` (opset 16+, ``coordinate_transformation_mode`` carries ``aligned``;
``torchdet::batched_nms`` by coordinate offsets);
:func:`register_default_translations` adds them to the exporter's default table, so that a
plain ``torch.onnx.export(model, (images,), path)`` works after ``import torchdet.export``.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence, Union

import torch
from torch import nn

from torchdet.atomic import atomic_path
from torchdet.export.exported_program import dynamic_shapes, example_images

__all__ = ["translation_table", "register_default_translations", "export_onnx_dynamo", "DYNAMO_OPSET"]

DYNAMO_OPSET = 18  # the exporter's own (torchlib) opset; RoiAlign's half_pixel mode needs 16+
_MAX_KEPT = 2**62  # NonMaxSuppression's max_output_boxes_per_class: no cap


def _nms_to_onnx(boxes: Any, scores: Any, iou_threshold: float) -> Any:
    """``torchdet::nms`` as ``NonMaxSuppression`` on one batch and one class: ``[N, 4]``, ``[N]`` -> ``[K]``."""
    from onnxscript import opset18 as op

    boxes3 = op.Unsqueeze(boxes, op.Constant(value_ints=[0]))  # [1, N, 4]
    scores3 = op.Unsqueeze(scores, op.Constant(value_ints=[0, 1]))  # [1, 1, N]
    max_kept = op.Constant(value_ints=[_MAX_KEPT])
    threshold = op.Constant(value_floats=[float(iou_threshold)])
    selected = op.NonMaxSuppression(boxes3, scores3, max_kept, threshold)  # [K, 3] (batch, class, box)
    return op.Reshape(op.Gather(selected, op.Constant(value_ints=[2]), axis=1), op.Constant(value_ints=[-1]))


def _batched_nms_to_onnx(boxes: Any, scores: Any, idxs: Any, iou_threshold: float) -> Any:
    """``torchdet::batched_nms`` by coordinate offsets: each class's boxes moved past all others', one NMS."""
    from onnxscript import opset18 as op

    zero = op.CastLike(op.Constant(value_floats=[0.0]), boxes)
    largest = op.ReduceMax(op.Concat(op.Reshape(boxes, op.Constant(value_ints=[-1])), zero, axis=0),
                           keepdims=0)  # zero joins: an empty input still has a maximum
    offsets = op.Mul(op.CastLike(idxs, boxes), op.Add(largest, op.CastLike(op.Constant(value_float=1.0), boxes)))
    return _nms_to_onnx(op.Add(boxes, op.Unsqueeze(offsets, op.Constant(value_ints=[1]))), scores, iou_threshold)


def _roi_align_to_onnx(input: Any, rois: Any, pooled_height: int, pooled_width: int, spatial_scale: float,
                       sampling_ratio: int, aligned: bool) -> Any:
    """``torchdet::roi_align`` as ``RoiAlign``: ``[B, C, H, W]``, ``[K, 5]`` rows ``(b, x1, y1, x2, y2)``."""
    from onnxscript import opset18 as op

    batch_indices = op.Cast(op.Gather(rois, op.Constant(value_int=0), axis=1), to=7)  # [K] int64
    boxes = op.Gather(rois, op.Constant(value_ints=[1, 2, 3, 4]), axis=1)  # [K, 4]
    return op.RoiAlign(
        input, boxes, batch_indices, mode="avg", output_height=int(pooled_height), output_width=int(pooled_width),
        spatial_scale=float(spatial_scale), sampling_ratio=max(int(sampling_ratio), 0),
        coordinate_transformation_mode="half_pixel" if aligned else "output_half_pixel",
    )


def translation_table() -> Dict[Callable[..., Any], Callable[..., Any]]:
    """``custom_translation_table`` for ``torch.onnx.export``: the torchdet custom ops -> ONNX ops."""
    import torchdet.ops  # noqa: F401  (registers the custom ops)

    return {torch.ops.torchdet.nms.default: _nms_to_onnx, torch.ops.torchdet.batched_nms.default: _batched_nms_to_onnx,
            torch.ops.torchdet.roi_align.default: _roi_align_to_onnx}


_REGISTERED = False


def register_default_translations() -> bool:
    """Add :func:`translation_table` to the dynamo exporter's default registry (once).

    Returns whether it is registered: it relies on the exporter's torchlib registry (a private
    module of torch), so on a torch without it, pass ``custom_translation_table=translation_table()``.
    """
    global _REGISTERED
    if _REGISTERED:
        return True
    try:
        import onnxscript  # noqa: F401
        from torch.onnx._internal.exporter._torchlib._torchlib_registry import onnx_impl
    except ImportError:
        return False
    for target, function in translation_table().items():
        onnx_impl(target, trace_only=True)(function)
    _REGISTERED = True
    return True


def export_onnx_dynamo(wrapper: nn.Module, path: Union[str, Path], image_size: Sequence[int],
                       batch_size: int, output_names: List[str], dynamic: bool = True) -> Path:
    """Write ``wrapper`` (a :class:`~torchdet.export.onnx.DeployableDetector`) with the dynamo exporter.

    With ``dynamic``, the graph's height and width are free; the batch size is ``batch_size``.
    """
    path = Path(path)
    device = next(wrapper.parameters()).device
    images = example_images(batch_size, image_size, device)
    shapes = dynamic_shapes() if dynamic else None
    with atomic_path(path) as partial:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                wrapper, (images,), str(partial), dynamo=True, dynamic_shapes=shapes, input_names=["images"],
                output_names=output_names, custom_translation_table=translation_table(), opset_version=DYNAMO_OPSET,
                external_data=False, verbose=False,
            )
        if program is None:  # pragma: no cover - the exporter writes the file itself
            raise RuntimeError(f"torch.onnx.export wrote nothing to {partial}")
    return path
