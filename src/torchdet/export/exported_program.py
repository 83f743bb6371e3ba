"""Export a detector with ``torch.export``: one ``ExportedProgram`` for every image size.

The program is the detector's own eval forward, resize included:

- input ``images``: float ``[B, 3, H, W]`` in 0..1; ``H`` and ``W`` are free (between
  ``min_side`` and ``max_side``); ``B`` is the example's (the models loop over the images of a
  batch in Python, so the batch size is part of the graph);
- output: one dict per image with ``boxes`` ``[D_i, 4]``, ``scores`` ``[D_i]``, ``labels``
  ``[D_i]`` (and ``masks`` / ``keypoints``), ``D_i`` an unbacked size: the eager contract.

Nothing is frozen at the example's values: NMS and RoIAlign are the custom ops
``torchdet::nms`` / ``torchdet::roi_align`` (fake kernels with unbacked output sizes, chosen by
``torchdet.ops.dispatch`` while compiling), and the models keep sizes symbolic (``sym_min`` for
the resize scale and top-k counts, no branch on a detection count).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import torch
from torch import Tensor, nn
from torch.export import Dim, ExportedProgram

from torchdet.atomic import atomic_path

__all__ = ["export_program", "dynamic_shapes", "example_images", "save_program", "load_program",
           "MIN_SIDE", "MAX_SIDE"]

MIN_SIDE = 32
MAX_SIDE = 4096


def example_images(batch_size: int = 1, image_size: Sequence[int] = (320, 320),
                   device: Union[str, torch.device] = "cpu") -> Tensor:
    """A fixed, textured example batch ``[B, 3, H, W]`` in 0..1 (the values do not shape the graph)."""
    if len(image_size) != 2 or min(int(s) for s in image_size) < 1 or batch_size < 1:
        raise ValueError(f"need batch_size >= 1 and image_size (height, width) with positive sides; got "
                         f"batch_size={batch_size}, image_size={tuple(image_size)}")
    generator = torch.Generator().manual_seed(0)
    return torch.rand((batch_size, 3, int(image_size[0]), int(image_size[1])), generator=generator).to(device)


def dynamic_shapes(min_side: int = MIN_SIDE, max_side: int = MAX_SIDE) -> Dict[str, Dict[int, Any]]:
    """``dynamic_shapes`` for ``torch.export.export(model, (images,), ...)``: free height and width."""
    if not 2 <= min_side <= max_side:
        raise ValueError(f"need 2 <= min_side <= max_side; got min_side={min_side}, max_side={max_side}")
    height = Dim("height", min=min_side, max=max_side)
    width = Dim("width", min=min_side, max=max_side)
    return {"images": {2: height, 3: width}}


def export_program(model: nn.Module, images: Optional[Tensor] = None, *, image_size: Sequence[int] = (320, 320),
                   batch_size: int = 1, strict: bool = False, min_side: int = MIN_SIDE,
                   max_side: int = MAX_SIDE) -> ExportedProgram:
    """``torch.export.export`` of ``model`` in eval mode with free image height and width.

    Args:
        model: a torchdet detector; it is put in eval mode.
        images: the example ``[B, 3, H, W]``; default :func:`example_images` of ``batch_size``
            and ``image_size``, on the model's device.
        strict: trace with dynamo (``True``; one eager run on ``images`` first) or with Python
            itself (``False``, torch's default).
        min_side, max_side: the range of ``H`` and ``W`` the program accepts.

    Returns:
        the program; ``program.module()(images)`` gives the eager detections.
    """
    model = model.eval()
    if images is None:
        device = next(model.parameters()).device
        images = example_images(batch_size, image_size, device)
    if images.dim() != 4:
        raise ValueError(f"images must be one [B, 3, H, W] tensor; got shape {list(images.shape)}")
    with torch.no_grad():
        if strict:
            model(images)  # one eager run caches the RoI poolers' scales, which dynamo would guard on
        return torch.export.export(model, (images,), dynamic_shapes=dynamic_shapes(min_side, max_side),
                                   strict=strict)


def save_program(program: ExportedProgram, path: Union[str, Path]) -> Path:
    """Write ``program`` as a ``.pt2`` archive (``torch.export.save``); the file appears whole or not at all."""
    path = Path(path)
    with atomic_path(path) as partial:
        torch.export.save(program, str(partial))
    return path


def load_program(path: Union[str, Path]) -> ExportedProgram:
    """Read a ``.pt2`` written by :func:`save_program`; the torchdet custom ops must be registered
    (``import torchdet.ops``), the model code is not needed."""
    import torchdet.ops  # noqa: F401  (registers torchdet::nms and torchdet::roi_align)

    return torch.export.load(str(path))
