"""Export a detector to a deployable ONNX graph, and run one with onnxruntime.

The graph's contract (every builder):

- input ``images``: float ``[B, 3, H, W]``, pixel values in 0..1;
- outputs ``boxes`` ``[B, D, 4]`` (xyxy, input pixels), ``scores`` ``[B, D]``, ``labels``
  ``[B, D]`` int64, ``num_detections`` ``[B]`` int64: each image's detections come first, by
  decreasing score, and the rows past ``num_detections`` are zeros; ``D`` is the model's
  ``detections_per_img``;
- Mask R-CNN adds ``masks`` ``[B, D, 1, H, W]``; Keypoint R-CNN adds ``keypoints`` ``[B, D, K, 3]``.

How: ``DeployableDetector`` wraps the eager model and pads its per-image dicts; the graph is
recorded by the TorchScript tracer (``torch.onnx.export(..., dynamo=False)``), with NMS and
RoIAlign emitted as ONNX ``NonMaxSuppression`` / ``RoiAlign`` by ``torchdet.ops``. While
tracing, the models keep image sizes as traced values (resize, padding, anchors, box scaling,
mask pasting), so a graph traced at one size is right at every size; each op with a
data-dependent eager form (keypoint decoding, mask pasting) runs its traceable reference form
while tracing (``torchdet.ops.dispatch``). With ``dynamic=True`` the batch axis is an ONNX ``Loop`` (``batch_loop.py``).

``exporter="dynamo"`` records the same wrapper with torch's default exporter instead
(``onnx_dynamo.py``: ``torch.export`` with free H and W, the custom ops translated to
``NonMaxSuppression`` / ``RoiAlign``); its batch size is the example's.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from torchdet.atomic import atomic_path
from torchdet.weights.registry import outputs_of

__all__ = ["DeployableDetector", "to_onnx", "require_onnx", "run_onnx", "default_exporter", "OUTPUT_NAMES",
           "DEFAULT_OPSET", "EXPORTERS"]

DEFAULT_OPSET = 17  # RoiAlign's coordinate_transformation_mode (aligned=True) needs 16+
OUTPUT_NAMES = ("boxes", "scores", "labels", "num_detections")
EXPORTERS = ("legacy", "dynamo")
_INSTALL_HINT = "ONNX export needs the optional packages onnx and onnxruntime: pip install 'torchdet[export]'"


def require_onnx() -> None:
    """Raise ImportError naming the extra to install when onnx or onnxruntime is missing."""
    for module in ("onnx", "onnxruntime"):
        try:
            __import__(module)
        except ImportError as e:
            raise ImportError(f"{_INSTALL_HINT} ({module} is not installed)") from e


def detections_per_img(model: nn.Module) -> int:
    """The most detections the model returns per image (``D``)."""
    for owner in (model, getattr(model, "roi_heads", None)):
        value = getattr(owner, "detections_per_img", None)
        if value is not None:
            return int(value)
    raise ValueError(
        f"{type(model).__name__} has no detections_per_img (nor roi_heads.detections_per_img); "
        "export supports the torchdet detectors"
    )


def _pad_rows(x: Tensor, rows: int) -> Tensor:
    """``[N, ...]`` -> ``[rows, ...]``: zeros appended, then cut to ``rows`` (N <= rows)."""
    return torch.cat([x, x.new_zeros((rows,) + tuple(x.shape[1:]))], dim=0)[:rows]


class DeployableDetector(nn.Module):
    """A detector in eval mode with fixed-size, batched outputs (see the module docstring).

    Args:
        model: a torchdet detector (its ``forward(images)`` returns one dict per image).
        detections_per_img: ``D``; default the model's own.
    """

    def __init__(self, model: nn.Module, detections_per_img: Optional[int] = None) -> None:
        super().__init__()
        self.model = model.eval()
        self.detections_per_img = detections_per_img or globals()["detections_per_img"](model)
        self.eval()

    @staticmethod
    def output_names(sample: Dict[str, List[Tensor]]) -> List[str]:
        """The graph's output names, in order, for the keys present in ``sample``."""
        return list(OUTPUT_NAMES) + [k for k in ("masks", "keypoints") if k in sample]

    def forward(self, images: Tensor) -> Tuple[Tensor, ...]:
        """``images [B, 3, H, W]`` -> ``(boxes, scores, labels, num_detections[, masks][, keypoints])``."""
        results = self.model(list(images.unbind(0)))
        d = self.detections_per_img
        outputs: Dict[str, List[Tensor]] = {}
        for result in results:
            count = torch.ones_like(result["scores"], dtype=torch.int64).sum()  # traced, not a constant
            per_image = {
                "boxes": _pad_rows(result["boxes"], d),
                "scores": _pad_rows(result["scores"], d),
                "labels": _pad_rows(result["labels"].to(torch.int64), d),
                "num_detections": count,
            }
            for key in ("masks", "keypoints"):
                if key in result:
                    per_image[key] = _pad_rows(result[key], d)
            for key, value in per_image.items():
                outputs.setdefault(key, []).append(value)
        return tuple(torch.stack(outputs[name]) for name in self.output_names(outputs))  # type: ignore[arg-type]


def to_onnx(
    model: nn.Module,
    path: Union[str, Path],
    image_size: Sequence[int] = (320, 320),
    dynamic: bool = False,
    opset: Optional[int] = None,
    batch_size: int = 1,
    exporter: Optional[str] = None,
) -> Path:
    """Write ``model`` as a deployable ONNX graph (contract in the module docstring).

    Args:
        model: a torchdet detector; it is put in eval mode.
        path: the ``.onnx`` file to write.
        image_size: ``(H, W)`` of the exported input.
        dynamic: make the batch size, H and W free: the model is traced on one image with free
            H and W, and the batch axis is an ONNX ``Loop`` over the images (``batch_loop.py``).
        opset: ONNX opset (default ``DEFAULT_OPSET``; at least 11).
        batch_size: batch size of the example input used for the trace (fixed-size export only).
        exporter: ``"legacy"`` (the TorchScript-based tracer, ``dynamo=False``) or ``"dynamo"``
            (torch's default exporter, from ``torch.export``; ``onnx_dynamo.py``: with
            ``dynamic``, H and W are free and the batch size is ``batch_size``; ``opset`` is the
            exporter's own). Default :func:`default_exporter` of the model.

    Returns:
        ``path``.
    """
    require_onnx()
    exporter = default_exporter(model) if exporter is None else exporter
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    if len(image_size) != 2 or min(int(s) for s in image_size) < 1:
        raise ValueError(f"image_size must be (height, width) with positive sides, got {tuple(image_size)}")
    opset = DEFAULT_OPSET if opset is None else int(opset)
    if opset < 11:
        raise ValueError(f"opset must be 11 or higher (NonMaxSuppression, RoiAlign), got {opset}")
    path = Path(path)
    if exporter == "dynamo":
        from torchdet.export.onnx_dynamo import export_onnx_dynamo

        names = _output_names(model)
        return export_onnx_dynamo(DeployableDetector(model), path, image_size, batch_size, names, dynamic=dynamic)
    if dynamic:
        batch_size = 1  # traced on one image; the batch axis comes from the Loop (batch_loop.py)
    wrapper = DeployableDetector(model)
    device = next(model.parameters()).device
    # A fixed, textured example: mid-grey noise, so the trace sees detections (data-independent).
    generator = torch.Generator().manual_seed(0)
    images = torch.rand((batch_size, 3, int(image_size[0]), int(image_size[1])), generator=generator).to(device)
    names = _output_names(model)
    dynamic_axes = None
    if dynamic:
        dynamic_axes = {"images": {2: "height", 3: "width"}}
        if "masks" in names:
            dynamic_axes["masks"] = {3: "height", 4: "width"}
    with atomic_path(path) as partial:  # the file appears whole or not at all
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about Python values; the graph is checked by tests
            torch.onnx.export(
                wrapper, (images,), str(partial), opset_version=opset, dynamo=False,
                input_names=["images"], output_names=names, dynamic_axes=dynamic_axes,
            )
        if dynamic:
            import onnx

            from torchdet.export.batch_loop import loop_over_batch

            onnx.save(loop_over_batch(onnx.load(str(partial))), str(partial))
    return path


def default_exporter(model: nn.Module) -> str:
    """The exporter verified for ``model``: ``"legacy"`` for every builder today (its batch axis is
    free; the dynamo graph's batch size is fixed, see ``onnx_dynamo.py``)."""
    return "legacy"


def _output_names(model: nn.Module) -> List[str]:
    """The graph's output names: ``OUTPUT_NAMES`` and the model's masks or keypoints."""
    outputs = outputs_of(model)
    return list(OUTPUT_NAMES) + [k for k in ("masks", "keypoints") if k in outputs]


def run_onnx(path: Union[str, Path], images: Tensor) -> Dict[str, Tensor]:
    """Run an exported graph in onnxruntime (CPU): ``images [B, 3, H, W]`` -> outputs by name."""
    require_onnx()
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    values = session.run(names, {"images": images.detach().cpu().float().numpy()})
    return {name: torch.from_numpy(value) for name, value in zip(names, values)}
