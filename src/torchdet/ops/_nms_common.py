"""What every form of NMS shares: the bundle type, the coordinate-offset trick and its switch point."""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import Tensor

__all__ = ["NMSForm", "offset_trick_limit", "offset_boxes"]


class NMSForm(NamedTuple):
    """One implementation of the NMS family: ``nms``, ``batched_nms`` and ``batched_nms_top``.

    Each takes checked inputs with the public functions' signatures and returns their result.
    """

    nms: Callable[[Tensor, Tensor, float], Tensor]
    batched_nms: Callable[[Tensor, Tensor, Tensor, float], Tensor]
    batched_nms_top: Callable[[Tensor, Tensor, Tensor, float, int], Tensor]


def offset_trick_limit(device_type: str) -> int:
    """Above this many box coordinates (``N * 4``), ``batched_nms`` groups boxes by class instead of
    offsetting their coordinates: torchvision's switch points, so both round alike."""
    return 4000 if device_type == "cpu" else 100_000


def offset_boxes(boxes: Tensor, idxs: Tensor) -> Tensor:
    """``[N, 4]`` boxes shifted by ``idxs * (max coordinate + 1)``, so that classes never overlap.

    ``boxes`` must be non-empty (the maximum of nothing is undefined).
    """
    offsets = idxs.to(boxes) * (boxes.max() + 1)  # [N]; no host scalar copied to the device
    return boxes + offsets[:, None]
