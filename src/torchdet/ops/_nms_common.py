"""What every form of NMS shares: the bundle type, the coordinate-offset trick and its switch point."""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import torch
from torch import Tensor

__all__ = ["NMSForm", "offset_trick_limit", "offset_boxes", "compute_coords", "threshold_below", "batched_by_size"]


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


def compute_coords(boxes: Tensor) -> Tensor:
    """Boxes in the dtype IoUs are computed in: float64 stays, everything else becomes float32."""
    boxes = boxes.detach()
    return boxes if boxes.dtype == torch.float64 else boxes.float()


def threshold_below(iou_threshold: float, double: bool) -> float:
    """The largest float32 (float64 if ``double``) value ``t`` with ``t <= iou_threshold``, computed on the host.

    For every ``x`` of that dtype, ``x > t`` holds exactly when ``float(x) > iou_threshold``, so the
    comparison can stay in the boxes' dtype and still match torchvision's comparison in double.
    """
    dtype = np.float64 if double else np.float32
    t = np.asarray(iou_threshold, dtype=dtype)
    if float(t) > iou_threshold:
        t = np.nextafter(t, np.asarray(-np.inf, dtype=dtype))
    return float(t)


def batched_by_size(
    boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float,
    nms: Callable[[Tensor, Tensor, float], Tensor], grouped: Callable[[Tensor, Tensor, Tensor, float], Tensor],
) -> Tensor:
    """``batched_nms`` from a form's ``nms`` and per-class ``grouped`` NMS: offsets up to the switch point."""
    if boxes.shape[0] == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    if boxes.numel() > offset_trick_limit(boxes.device.type):
        return grouped(boxes, scores, idxs, iou_threshold)
    return nms(offset_boxes(boxes, idxs), scores, iou_threshold)
