"""Box geometry on plain tensors.

Boxes are ``[N, 4]`` tensors (the pairwise ops also take batches, ``[..., N, 4]``). Unless a
function says otherwise they are in ``xyxy`` format: ``(x1, y1, x2, y2)`` with ``0 <= x1 < x2``
and ``0 <= y1 < y2``. Areas and overlaps use the continuous convention,
``area = (x2 - x1) * (y2 - y1)`` (no ``+ 1``), as torchvision does.

Rotated boxes (``box_convert`` only) carry an angle ``r`` in degrees; a positive angle turns the
box counter-clockwise about its centre as seen in the image (y pointing down), so its top edge
runs from ``(x1, y1)`` along ``(cos r, -sin r)``.

Integer boxes are computed in int32/int64 and half-precision boxes in float32, so that products
of coordinates do not overflow.

Every function is scriptable (``torch.jit.script``); ``clip_boxes_to_image`` also keeps a traced
image size dynamic while tracing for export. The area and pairwise IoU functions become single
nodes under ``torch.fx`` symbolic tracing (their dtype checks cannot run on proxies).
"""
from typing import Tuple

import math

import torch
from torch import Tensor

from torchdet.ops._fx import fx_node

__all__ = [
    "box_area",
    "box_iou",
    "generalized_box_iou",
    "distance_box_iou",
    "complete_box_iou",
    "box_convert",
    "clip_boxes_to_image",
    "remove_small_boxes",
    "masks_to_boxes",
]

_BOX_FORMATS = ["xyxy", "xywh", "cxcywh"]
_ROTATED_FORMATS = ["xywhr", "cxcywhr", "xyxyxyxy"]


def _upcast(t: Tensor) -> Tensor:
    """Widen a tensor so that multiplying two of its values cannot overflow.

    float16/bfloat16 become float32, small integer types become int32; float32/float64 and
    int32/int64 are returned unchanged.
    """
    if t.is_floating_point():
        return t if t.dtype in (torch.float32, torch.float64) else t.float()
    return t if t.dtype in (torch.int32, torch.int64) else t.int()


def _check_axis_aligned_fmt(fmt: str, op: str) -> None:
    formats = ["xyxy", "xywh", "cxcywh"]  # _BOX_FORMATS
    if fmt not in formats:
        raise ValueError(f"{op}: fmt='{fmt}' is not a supported box format; use one of {formats}")


def box_area(boxes: Tensor, fmt: str = "xyxy") -> Tensor:
    """Area of each box.

    Args:
        boxes: ``[..., 4]`` boxes in ``fmt``.
        fmt: ``"xyxy"`` (default), ``"xywh"`` or ``"cxcywh"``.

    Returns:
        ``[...]`` areas: ``(x2 - x1) * (y2 - y1)``, or ``w * h`` for the other formats.
    """
    if not torch.jit.is_scripting():
        node = fx_node(box_area, boxes, fmt)
        if node is not None:
            return node
    _check_axis_aligned_fmt(fmt, "box_area")
    boxes = _upcast(boxes)
    if fmt == "xyxy":
        return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    return boxes[..., 2] * boxes[..., 3]


def _box_inter_union(boxes1: Tensor, boxes2: Tensor) -> Tuple[Tensor, Tensor]:
    """Pairwise intersection and union areas.

    Args:
        boxes1: ``[..., N, 4]`` boxes in ``xyxy`` format.
        boxes2: ``[..., M, 4]`` boxes in ``xyxy`` format.

    Returns:
        ``(inter, union)``, both ``[..., N, M]``.
    """
    area1 = box_area(boxes1)  # [..., N]
    area2 = box_area(boxes2)  # [..., M]
    top_left = torch.max(boxes1[..., :, None, :2], boxes2[..., None, :, :2])  # [..., N, M, 2]
    bottom_right = torch.min(boxes1[..., :, None, 2:], boxes2[..., None, :, 2:])  # [..., N, M, 2]
    wh = _upcast(bottom_right - top_left).clamp(min=0)  # [..., N, M, 2]
    inter = wh[..., 0] * wh[..., 1]  # [..., N, M]
    union = area1[..., :, None] + area2[..., None, :] - inter  # [..., N, M]
    return inter, union


def box_iou(boxes1: Tensor, boxes2: Tensor, fmt: str = "xyxy") -> Tensor:
    """Pairwise intersection over union (Jaccard index).

    Args:
        boxes1: ``[..., N, 4]`` boxes in ``fmt``.
        boxes2: ``[..., M, 4]`` boxes in ``fmt`` (same leading dimensions).
        fmt: ``"xyxy"`` (default), ``"xywh"`` or ``"cxcywh"``.

    Returns:
        ``[..., N, M]`` IoU of every pair, in ``[0, 1]`` for valid boxes.
    """
    if not torch.jit.is_scripting():
        node = fx_node(box_iou, boxes1, boxes2, fmt)
        if node is not None:
            return node
    _check_axis_aligned_fmt(fmt, "box_iou")
    if fmt != "xyxy":
        boxes1 = box_convert(boxes1, fmt, "xyxy")
        boxes2 = box_convert(boxes2, fmt, "xyxy")
    inter, union = _box_inter_union(boxes1, boxes2)
    return inter / union


def _enclosing_wh(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """``[..., N, M, 2]`` width and height of the smallest box enclosing each pair (``xyxy`` input)."""
    top_left = torch.min(boxes1[..., :, None, :2], boxes2[..., None, :, :2])  # [..., N, M, 2]
    bottom_right = torch.max(boxes1[..., :, None, 2:], boxes2[..., None, :, 2:])  # [..., N, M, 2]
    return _upcast(bottom_right - top_left).clamp(min=0)


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise generalized IoU (Rezatofighi et al., 2019).

    ``GIoU = IoU - (area(C) - union) / area(C)`` where ``C`` is the smallest box enclosing both.

    Args:
        boxes1: ``[..., N, 4]`` boxes in ``xyxy`` format.
        boxes2: ``[..., M, 4]`` boxes in ``xyxy`` format.

    Returns:
        ``[..., N, M]`` GIoU of every pair, in ``[-1, 1]`` for valid boxes.
    """
    if not torch.jit.is_scripting():
        node = fx_node(generalized_box_iou, boxes1, boxes2)
        if node is not None:
            return node
    inter, union = _box_inter_union(boxes1, boxes2)
    iou = inter / union
    enclose_wh = _enclosing_wh(boxes1, boxes2)  # [..., N, M, 2]
    enclose_area = enclose_wh[..., 0] * enclose_wh[..., 1]  # [..., N, M]
    return iou - (enclose_area - union) / enclose_area


def _box_diou_iou(boxes1: Tensor, boxes2: Tensor, eps: float) -> Tuple[Tensor, Tensor]:
    """``(DIoU, IoU)`` of every pair, both ``[..., N, M]`` (``xyxy`` input, already upcast)."""
    iou = box_iou(boxes1, boxes2)
    enclose_wh = _enclosing_wh(boxes1, boxes2)
    diagonal_squared = enclose_wh[..., 0] ** 2 + enclose_wh[..., 1] ** 2 + eps  # [..., N, M]
    center1 = (boxes1[..., :2] + boxes1[..., 2:]) / 2  # [..., N, 2]
    center2 = (boxes2[..., :2] + boxes2[..., 2:]) / 2  # [..., M, 2]
    delta = _upcast(center1[..., :, None, :] - center2[..., None, :, :])  # [..., N, M, 2]
    centers_squared = delta[..., 0] ** 2 + delta[..., 1] ** 2
    return iou - centers_squared / diagonal_squared, iou


def distance_box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """Pairwise distance IoU (Zheng et al., 2020).

    ``DIoU = IoU - d^2 / c^2`` with ``d`` the distance between the box centres and ``c`` the
    diagonal of the smallest box enclosing both (``eps`` is added to ``c^2``).

    Args:
        boxes1: ``[..., N, 4]`` boxes in ``xyxy`` format.
        boxes2: ``[..., M, 4]`` boxes in ``xyxy`` format.
        eps: guards the division for coincident degenerate boxes.

    Returns:
        ``[..., N, M]`` DIoU of every pair, in ``[-1, 1]``.
    """
    if not torch.jit.is_scripting():
        node = fx_node(distance_box_iou, boxes1, boxes2, eps)
        if node is not None:
            return node
    diou, _ = _box_diou_iou(_upcast(boxes1), _upcast(boxes2), eps)
    return diou


def complete_box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """Pairwise complete IoU (Zheng et al., 2020).

    ``CIoU = DIoU - alpha * v`` with ``v = 4 / pi^2 * (atan(w2 / h2) - atan(w1 / h1))^2`` (aspect
    ratio mismatch) and ``alpha = v / (1 - IoU + v + eps)``, which carries no gradient.

    Args:
        boxes1: ``[..., N, 4]`` boxes in ``xyxy`` format.
        boxes2: ``[..., M, 4]`` boxes in ``xyxy`` format.
        eps: guards the divisions.

    Returns:
        ``[..., N, M]`` CIoU of every pair.
    """
    if not torch.jit.is_scripting():
        node = fx_node(complete_box_iou, boxes1, boxes2, eps)
        if node is not None:
            return node
    boxes1 = _upcast(boxes1)
    boxes2 = _upcast(boxes2)
    diou, iou = _box_diou_iou(boxes1, boxes2, eps)
    wh1 = boxes1[..., 2:] - boxes1[..., :2]  # [..., N, 2]
    wh2 = boxes2[..., 2:] - boxes2[..., :2]  # [..., M, 2]
    angle1 = torch.atan(wh1[..., 0] / wh1[..., 1])  # [..., N]
    angle2 = torch.atan(wh2[..., 0] / wh2[..., 1])  # [..., M]
    v = (4 / (math.pi**2)) * (angle1[..., :, None] - angle2[..., None, :]) ** 2  # [..., N, M]
    with torch.no_grad():
        alpha = v / (1 - iou + v + eps)
    return diou - alpha * v


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


def _cxcywhr_to_xywhr(boxes: Tensor) -> Tensor:
    cx, cy, w, h, r = boxes.unbind(-1)
    radians = r * (math.pi / 180.0)
    cos, sin = torch.cos(radians), torch.sin(radians)
    # The top-left corner is the centre minus half the (rotated) width and height vectors.
    x1 = cx - w / 2 * cos - h / 2 * sin
    y1 = cy - h / 2 * cos + w / 2 * sin
    return torch.stack((x1, y1, w, h, r), dim=-1)


def _xywhr_to_cxcywhr(boxes: Tensor) -> Tensor:
    x1, y1, w, h, r = boxes.unbind(-1)
    radians = r * (math.pi / 180.0)
    cos, sin = torch.cos(radians), torch.sin(radians)
    cx = x1 + w / 2 * cos + h / 2 * sin
    cy = y1 - w / 2 * sin + h / 2 * cos
    return torch.stack((cx, cy, w, h, r), dim=-1)


def _xywhr_to_xyxyxyxy(boxes: Tensor) -> Tensor:
    x1, y1, w, h, r = boxes.unbind(-1)
    radians = r * (math.pi / 180.0)
    cos, sin = torch.cos(radians), torch.sin(radians)
    # Width runs along (cos, -sin) and height along (sin, cos) in image coordinates.
    top_right_x, top_right_y = x1 + w * cos, y1 - w * sin
    bottom_left_x, bottom_left_y = x1 + h * sin, y1 + h * cos
    bottom_right_x, bottom_right_y = top_right_x + h * sin, top_right_y + h * cos
    return torch.stack(
        (x1, y1, top_right_x, top_right_y, bottom_right_x, bottom_right_y, bottom_left_x, bottom_left_y), dim=-1
    )


def _xyxyxyxy_to_xywhr(boxes: Tensor) -> Tensor:
    x1, y1, x2, y2, x3, y3, x4, y4 = boxes.unbind(-1)
    r = torch.atan2(y1 - y2, x2 - x1) * (180.0 / math.pi)
    w = ((x2 - x1) ** 2 + (y2 - y1) ** 2).sqrt()
    h = ((x3 - x2) ** 2 + (y3 - y2) ** 2).sqrt()
    return torch.stack((x1, y1, w, h, r), dim=-1)


def _convert_rotated(boxes: Tensor, in_fmt: str, out_fmt: str) -> Tensor:
    """Between the rotated formats, through ``xywhr``."""
    if in_fmt == "cxcywhr":
        boxes = _cxcywhr_to_xywhr(boxes).to(boxes.dtype)
    elif in_fmt == "xyxyxyxy":
        boxes = _xyxyxyxy_to_xywhr(boxes).to(boxes.dtype)
    if out_fmt == "cxcywhr":
        return _xywhr_to_cxcywhr(boxes)
    if out_fmt == "xyxyxyxy":
        return _xywhr_to_xyxyxyxy(boxes)
    return boxes


def box_convert(boxes: Tensor, in_fmt: str, out_fmt: str) -> Tensor:
    """Convert boxes between formats.

    Axis-aligned formats (``K = 4``):
        ``"xyxy"``: ``(x1, y1, x2, y2)``, top-left and bottom-right corners;
        ``"xywh"``: ``(x1, y1, w, h)``, top-left corner, width and height;
        ``"cxcywh"``: ``(cx, cy, w, h)``, centre, width and height.

    Rotated formats (angle ``r`` in degrees, counter-clockwise about the centre):
        ``"xywhr"`` (``K = 5``): ``(x1, y1, w, h, r)``, the rotated top-left corner;
        ``"cxcywhr"`` (``K = 5``): ``(cx, cy, w, h, r)``;
        ``"xyxyxyxy"`` (``K = 8``): the corners top-left, top-right, bottom-right, bottom-left.

    Axis-aligned and rotated formats do not convert into each other.

    Args:
        boxes: ``[..., K]`` boxes in ``in_fmt``.
        in_fmt: format of ``boxes``.
        out_fmt: format wanted.

    Returns:
        ``[..., K']`` boxes in ``out_fmt`` (a copy, also when the formats are equal).
    """
    axis_aligned = ["xyxy", "xywh", "cxcywh"]  # _BOX_FORMATS (scripted code cannot read a global list)
    rotated = ["xywhr", "cxcywhr", "xyxyxyxy"]  # _ROTATED_FORMATS
    for name, fmt in [("in_fmt", in_fmt), ("out_fmt", out_fmt)]:
        if fmt not in axis_aligned and fmt not in rotated:
            raise ValueError(
                f"box_convert: {name}='{fmt}' is not a supported box format; use one of {axis_aligned + rotated}"
            )
    if in_fmt == out_fmt:
        return boxes.clone()
    if (in_fmt in rotated) != (out_fmt in rotated):
        raise NotImplementedError(
            f"box_convert: cannot convert between the axis-aligned format and the rotated format "
            f"(in_fmt='{in_fmt}', out_fmt='{out_fmt}'); rotated formats are {rotated}"
        )
    if in_fmt in rotated:
        return _convert_rotated(boxes, in_fmt, out_fmt)
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
