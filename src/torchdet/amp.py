"""Mixed precision for inference: one switch, the same code on CUDA (float16) and the CPU (bfloat16).

``with inference_autocast(device, enabled):`` runs the block under ``torch.autocast`` in the
device's reduced dtype; ``float32_outputs`` brings the detections' floating tensors back to
float32, the dtype callers (COCO results, pictures) expect.
"""
from __future__ import annotations

import contextlib
from typing import Dict, Iterator, List, Union

import torch

__all__ = ["amp_dtype", "inference_autocast", "float32_outputs", "autocast_active"]


def amp_dtype(device: Union[str, torch.device]) -> torch.dtype:
    """float16 on CUDA, bfloat16 elsewhere (the CPU's autocast dtype)."""
    return torch.float16 if torch.device(device).type == "cuda" else torch.bfloat16


@contextlib.contextmanager
def inference_autocast(device: Union[str, torch.device], enabled: bool = True) -> Iterator[None]:
    """``torch.autocast`` on ``device`` in :func:`amp_dtype` when ``enabled``, else nothing."""
    if not enabled:
        yield
        return
    device_type = torch.device(device).type
    with torch.autocast(device_type, dtype=amp_dtype(device_type)):
        yield


def float32_outputs(detections: List[Dict[str, torch.Tensor]]) -> List[Dict[str, torch.Tensor]]:
    """Per-image detection dicts with every reduced-precision floating tensor as float32."""
    return [{k: v.float() if v.is_floating_point() and v.dtype != torch.float64 else v for k, v in d.items()}
            for d in detections]


def autocast_active(device_type: str) -> bool:
    """True inside ``torch.autocast`` for ``device_type`` (``"cuda"``, ``"cpu"``, ...)."""
    try:
        return bool(torch.is_autocast_enabled(device_type))
    except TypeError:  # torch < 2.4 takes no device type
        if device_type == "cpu":
            return bool(torch.is_autocast_cpu_enabled())
        return bool(torch.is_autocast_enabled())
