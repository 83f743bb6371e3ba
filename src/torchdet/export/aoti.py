"""AOTInductor: compile a detector's ExportedProgram into a package that runs without its Python code.

``to_aoti(model, "model.pt2")`` exports the model (``exported_program.py``: free height and
width) and compiles it with ``torch._inductor.aoti_compile_and_package``. The package is run by
``torch._inductor.aoti_load_package(path)`` on ``images`` ``[B, 3, H, W]`` in 0..1; it returns
the ONNX graph's outputs (``onnx.py``): ``boxes`` ``[B, D, 4]``, ``scores`` ``[B, D]``,
``labels`` ``[B, D]``, ``num_detections`` ``[B]`` (then ``masks`` or ``keypoints``), each
image's detections first and zero rows after them.

The package calls the custom ops ``torchdet::nms`` / ``torchdet::roi_align`` (their CPU kernels
are Python), so the process that loads it registers them first: ``import torchdet.ops``, which
imports no model code (``scripts/run_aoti.py``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence, Union

import torch
from torch import Tensor, nn

from torchdet.atomic import atomic_path
from torchdet.export.exported_program import export_program
from torchdet.export.onnx import OUTPUT_NAMES, DeployableDetector

__all__ = ["to_aoti", "load_aoti", "unpad_detections"]


def to_aoti(model: nn.Module, path: Union[str, Path], image_size: Sequence[int] = (320, 320),
            batch_size: int = 1) -> Path:
    """Export ``model`` (free H and W, ``batch_size`` images) and compile it into the package ``path`` (``.pt2``)."""
    path = Path(path)
    if path.suffix != ".pt2":
        raise ValueError(f"an AOTInductor package is a .pt2 file; got {str(path)!r} (use e.g. model.pt2)")
    program = export_program(DeployableDetector(model), image_size=image_size, batch_size=batch_size)
    with atomic_path(path) as partial:
        torch._inductor.aoti_compile_and_package(program, package_path=str(partial))
    return path


def load_aoti(path: Union[str, Path]):  # type: ignore[no-untyped-def]
    """The package's runner: ``runner(images)`` -> the list of outputs (see the module docstring)."""
    import torchdet.ops  # noqa: F401  (the package's custom ops)

    return torch._inductor.aoti_load_package(str(path))


def unpad_detections(outputs: Sequence[Tensor]) -> List[Dict[str, Tensor]]:
    """``(boxes, scores, labels, num_detections, ...)`` -> one dict per image with its own rows."""
    names = list(OUTPUT_NAMES) + (["masks" if outputs[4].dim() == 5 else "keypoints"] if len(outputs) > 4 else [])
    by_name = dict(zip(names, outputs))
    counts = by_name.pop("num_detections").tolist()
    return [{k: v[b, :count] for k, v in by_name.items()} for b, count in enumerate(counts)]
