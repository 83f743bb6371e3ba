"""Box geometry on plain tensors.

Boxes are ``[N, 4]`` tensors. Unless a function says otherwise they are in ``xyxy`` format:
``(x1, y1, x2, y2)`` with ``0 <= x1 < x2`` and ``0 <= y1 < y2``. Areas and overlaps use the
continuous convention, ``area = (x2 - x1) * (y2 - y1)`` (no ``+ 1``), as torchvision does.

Integer boxes are computed in int32/int64 and half-precision boxes in float32, so that products
of coordinates do not overflow.

Every function is scriptable (``torch.jit.script``); ``clip_boxes_to_image`` also keeps a traced
image size dynamic while tracing for export.
"""
from typing import Tuple

import torch
from torch import Tensor

__all__ = [
    "box_area",
    "box_iou",
    "generalized_box_iou",
    "box_convert",
    "clip_boxes_to_image",
    "remove_small_boxes",
    "masks_to_boxes",
]

_BOX_FORMATS = ["xyxy", "xywh", "cxcywh"]


def _upcast(t: Tensor) -> Tensor:
    """Widen a tensor so that multiplying two of its values cannot overflow.

    float16/bfloat16 become float32, small integer types become int32; float32/float64 and
    int32/int64 are returned unchanged.
    """
    if t.is_floating_point():
        return t if t.dtype in (torch.float32, torch.float64) else t.float()
    return t if t.dtype in (torch.int32, torch.int64) else t.int()


def box_area(boxes: Tensor) -> Tensor:
    """Area of each box.

    Args:
        boxes: ``[N, 4]`` boxes in ``xyxy`` format.

    Returns:
        ``[N]`` areas, ``(x2 - x1) * (y2 - y1)``.
    """
    boxes = _upcast(boxes)
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _box_inter_union(boxes1: Tensor, boxes2: Tensor) -> Tuple[Tensor, Tensor]:
    """Pairwise intersection and union areas.

    Args:
        boxes1: ``[N, 4]`` boxes in ``xyxy`` format.
        boxes2: ``[M, 4]`` boxes in ``xyxy`` format.

    Returns:
        ``(inter, union)``, both ``[N, M]``.
    """
    area1 = box_area(boxes1)  # [N]
    area2 = box_area(boxes2)  # [M]
    top_left = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])  # [N, M, 2]
    bottom_right = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])  # [N, M, 2]
    wh = _upcast(bottom_right - top_left).clamp(min=0)  # [N, M, 2]
    inter = wh[..., 0] * wh[..., 1]  # [N, M]
    union = area1[:, None] + area2[None, :] - inter  # [N, M]
    return inter, union


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise intersection over union (Jaccard index).

    Args:
        boxes1: ``[N, 4]`` boxes in ``xyxy`` format.
        boxes2: ``[M, 4]`` boxes in ``xyxy`` format.

    Returns:
        ``[N, M]`` IoU of every pair, in ``[0, 1]`` for valid boxes.
    """
    inter, union = _box_inter_union(boxes1, boxes2)
    return inter / union


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise generalized IoU (Rezatofighi et al., 2019).

    ``GIoU = IoU - (area(C) - union) / area(C)`` where ``C`` is the smallest box enclosing both.

    Args:
        boxes1: ``[N, 4]`` boxes in ``xyxy`` format.
        boxes2: ``[M, 4]`` boxes in ``xyxy`` format.

    Returns:
        ``[N, M]`` GIoU of every pair, in ``[-1, 1]`` for valid boxes.
    """
    inter, union = _box_inter_union(boxes1, boxes2)
    iou = inter / union
    enclose_top_left = torch.min(boxes1[:, None, :2], boxes2[None, :, :2])  # [N, M, 2]
    enclose_bottom_right = torch.max(boxes1[:, None, 2:], boxes2[None, :, 2:])  # [N, M, 2]
    enclose_wh = _upcast(enclose_bottom_right - enclose_top_left).clamp(min=0)  # [N, M, 2]
    enclose_area = enclose_wh[..., 0] * enclose_wh[..., 1]  # [N, M]
    return iou - (enclose_area - union) / enclose_area


def _xywh_to_xyxy(boxes: Tensor) -> Tensor:
    x, y, w, h = boxes.unbind(-1)
    return torch.stack((x, y, x + w, y + h), dim=-1)


def _xyxy_to_xywh(boxes: Tensor) -> Tensor:
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack((x1, y1, x2 - x1, y2 - y1), dim=-1)


def _cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=-1)


def _xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), dim=-1)


def box_convert(boxes: Tensor, in_fmt: str, out_fmt: str) -> Tensor:
    """Convert boxes between formats.

    Formats:
        ``"xyxy"``: ``(x1, y1, x2, y2)``, top-left and bottom-right corners;
        ``"xywh"``: ``(x1, y1, w, h)``, top-left corner, width and height;
        ``"cxcywh"``: ``(cx, cy, w, h)``, centre, width and height.

    Args:
        boxes: ``[..., 4]`` boxes in ``in_fmt``.
        in_fmt: format of ``boxes``.
        out_fmt: format wanted.

    Returns:
        ``[..., 4]`` boxes in ``out_fmt`` (a copy, also when the formats are equal).
    """
    formats = ["xyxy", "xywh", "cxcywh"]  # _BOX_FORMATS (scripted code cannot read a global list)
    for name, fmt in [("in_fmt", in_fmt), ("out_fmt", out_fmt)]:
        if fmt not in formats:
            raise ValueError(f"box_convert: {name}='{fmt}' is not a supported box format; use one of {formats}")
    if in_fmt == out_fmt:
        return boxes.clone()
    if in_fmt == "xywh":
        boxes = _xywh_to_xyxy(boxes)
    elif in_fmt == "cxcywh":
        boxes = _cxcywh_to_xyxy(boxes)
    if out_fmt == "xywh":
        return _xyxy_to_xywh(boxes)
    if out_fmt == "cxcywh":
        return _xyxy_to_cxcywh(boxes)
    return boxes


def clip_boxes_to_image(boxes: Tensor, size: Tuple[int, int]) -> Tensor:
    """Clip boxes so that they lie inside an image.

    Args:
        boxes: ``[..., 4]`` boxes in ``xyxy`` format.
        size: ``(height, width)`` of the image.

    Returns:
        ``[..., 4]`` boxes with x in ``[0, width]`` and y in ``[0, height]``.
    """
    height, width = size[0], size[1]
    if torch.jit.is_tracing():
        return _traced_clip_boxes_to_image(boxes, size)
    x = boxes[..., 0::2].clamp(min=0, max=width)  # [..., 2]
    y = boxes[..., 1::2].clamp(min=0, max=height)  # [..., 2]
    return torch.stack((x, y), dim=-1).reshape(boxes.shape)


@torch.jit.unused
def _traced_clip_boxes_to_image(boxes: Tensor, size: Tuple[int, int]) -> Tensor:
    """``clip_boxes_to_image`` for a trace, where ``size`` may hold traced 0-dim tensors: the bounds
    enter the graph as tensors (a Python-number bound would be baked in as a constant)."""
    zero = torch.zeros((), dtype=boxes.dtype, device=boxes.device)
    height, width = (torch.as_tensor(s, device=boxes.device).to(boxes.dtype) for s in size)
    x = torch.min(torch.max(boxes[..., 0::2], zero), width)  # [..., 2]
    y = torch.min(torch.max(boxes[..., 1::2], zero), height)  # [..., 2]
    return torch.stack((x, y), dim=-1).reshape(boxes.shape)


def remove_small_boxes(boxes: Tensor, min_size: float) -> Tensor:
    """Indices of the boxes whose width and height are both at least ``min_size``.

    Args:
        boxes: ``[N, 4]`` boxes in ``xyxy`` format.
        min_size: smallest width and height kept.

    Returns:
        ``[K]`` int64 indices of the kept boxes, ascending.
    """
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    keep = (widths >= min_size) & (heights >= min_size)
    return torch.where(keep)[0]


def masks_to_boxes(masks: Tensor) -> Tensor:
    """Tight bounding box of each mask's non-zero pixels.

    The box spans pixel indices: ``x2`` and ``y2`` are the largest non-zero column and row
    (inclusive), so a single pixel at ``(row 3, col 5)`` gives ``[5, 3, 5, 3]``. A mask with
    no non-zero pixel gives ``[0, 0, 0, 0]``.

    Args:
        masks: ``[N, H, W]`` masks, any dtype; non-zero is foreground.

    Returns:
        ``[N, 4]`` float32 boxes in ``xyxy`` format; ``[0, 4]`` for empty input.
    """
    if masks.numel() == 0:
        return torch.zeros([0, 4], device=masks.device, dtype=torch.float)
    if masks.dim() != 3:
        raise ValueError(f"masks_to_boxes expects masks of shape [N, H, W], got {list(masks.shape)}")
    height, width = masks.shape[1], masks.shape[2]
    foreground = masks != 0
    rows = foreground.any(dim=2)  # [N, H]
    cols = foreground.any(dim=1)  # [N, W]
    row_idx = torch.arange(height, device=masks.device)
    col_idx = torch.arange(width, device=masks.device)
    big = max(height, width)
    x1 = torch.where(cols, col_idx, big).amin(dim=1)
    y1 = torch.where(rows, row_idx, big).amin(dim=1)
    x2 = torch.where(cols, col_idx, -1).amax(dim=1)
    y2 = torch.where(rows, row_idx, -1).amax(dim=1)
    boxes = torch.stack((x1, y1, x2, y2), dim=1).float()  # [N, 4]
    empty = ~rows.any(dim=1)
    return boxes.masked_fill(empty[:, None], 0.0)
