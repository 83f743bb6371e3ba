"""Box coders: boxes <-> regression targets relative to reference boxes (anchors or proposals).

Both coders are plain classes that TorchScript compiles when a scripted module holds one.
"""
import math
from typing import List, Tuple

import torch
from torch import Tensor

from torchdet.amp import autocast_active


def encode_boxes(reference_boxes: Tensor, proposals: Tensor, weights: Tensor) -> Tensor:
    """Deltas ``(dx, dy, dw, dh)`` taking each proposal to its reference box. ``[N, 4]``.

    Args:
        reference_boxes: the boxes to encode (e.g. matched ground truth), ``[N, 4]`` xyxy.
        proposals: the boxes they are relative to (anchors or proposals), ``[N, 4]`` xyxy.
        weights: ``[4]`` multipliers ``(wx, wy, ww, wh)``.
    """
    wx, wy, ww, wh = weights[0], weights[1], weights[2], weights[3]
    ex_x1, ex_y1, ex_x2, ex_y2 = proposals[:, 0:1], proposals[:, 1:2], proposals[:, 2:3], proposals[:, 3:4]
    gt_x1, gt_y1 = reference_boxes[:, 0:1], reference_boxes[:, 1:2]
    gt_x2, gt_y2 = reference_boxes[:, 2:3], reference_boxes[:, 3:4]

    ex_widths = ex_x2 - ex_x1
    ex_heights = ex_y2 - ex_y1
    ex_ctr_x = ex_x1 + 0.5 * ex_widths
    ex_ctr_y = ex_y1 + 0.5 * ex_heights

    gt_widths = gt_x2 - gt_x1
    gt_heights = gt_y2 - gt_y1
    gt_ctr_x = gt_x1 + 0.5 * gt_widths
    gt_ctr_y = gt_y1 + 0.5 * gt_heights

    dx = wx * (gt_ctr_x - ex_ctr_x) / ex_widths
    dy = wy * (gt_ctr_y - ex_ctr_y) / ex_heights
    dw = ww * torch.log(gt_widths / ex_widths)
    dh = wh * torch.log(gt_heights / ex_heights)
    return torch.cat((dx, dy, dw, dh), dim=1)


@torch.jit.unused
def _check_box_list(boxes: List[Tensor]) -> None:
    if not isinstance(boxes, (list, tuple)):
        raise TypeError(f"BoxCoder.decode expects a list of per-image boxes; got {type(boxes).__name__}.")


class BoxCoder:
    """The R-CNN box parametrisation: centre offsets scaled by size, log size ratios.

    Args:
        weights: ``(wx, wy, ww, wh)`` multipliers on the deltas.
        bbox_xform_clip: upper clamp on ``dw``/``dh`` before ``exp`` when decoding.
    """

    def __init__(self, weights: Tuple[float, float, float, float],
                 bbox_xform_clip: float = math.log(1000.0 / 16)) -> None:
        self.weights = weights
        self.bbox_xform_clip = bbox_xform_clip

    def encode(self, reference_boxes: List[Tensor], proposals: List[Tensor]) -> List[Tensor]:
        """Per image: deltas ``[N_i, 4]`` taking ``proposals[i]`` to ``reference_boxes[i]``."""
        boxes_per_image = [b.shape[0] for b in reference_boxes]
        targets = self.encode_single(torch.cat(reference_boxes, dim=0), torch.cat(proposals, dim=0))
        return list(targets.split(boxes_per_image, 0))

    def encode_single(self, reference_boxes: Tensor, proposals: Tensor) -> Tensor:
        """Deltas ``[N, 4]`` taking ``proposals`` ``[N, 4]`` to ``reference_boxes`` ``[N, 4]``."""
        # On the host: its 0-dim elements reach a CUDA kernel as scalars, with no copy to the device.
        weights = torch.tensor([self.weights[0], self.weights[1], self.weights[2], self.weights[3]],
                               dtype=reference_boxes.dtype)
        return encode_boxes(reference_boxes, proposals, weights)

    def decode(self, rel_codes: Tensor, boxes: List[Tensor]) -> Tensor:
        """Apply deltas to the concatenated per-image ``boxes``.

        Args:
            rel_codes: ``[sum N_i, K*4]`` deltas (K boxes per reference box, e.g. one per class).
            boxes: per image ``[N_i, 4]`` reference boxes.

        Returns:
            ``[sum N_i, K, 4]`` decoded boxes.
        """
        if not torch.jit.is_scripting():
            _check_box_list(boxes)
        concat_boxes = torch.cat(boxes, dim=0)
        # Sizes spelled out (no -1): the box count may be zero, or unknown while exporting.
        box_sum = concat_boxes.shape[0]
        rel_codes = rel_codes.reshape(box_sum, rel_codes.shape[-1])
        pred_boxes = self.decode_single(rel_codes, concat_boxes)
        return pred_boxes.reshape(box_sum, pred_boxes.shape[1] // 4, 4)

    def decode_single(self, rel_codes: Tensor, boxes: Tensor) -> Tensor:
        """Apply ``[N, K*4]`` deltas to ``[N, 4]`` reference boxes -> ``[N, K*4]`` xyxy boxes."""
        if not torch.jit.is_scripting():
            rel_codes = _float32_under_autocast(rel_codes)
        boxes = boxes.to(rel_codes.dtype)
        widths = boxes[:, 2] - boxes[:, 0]
        heights = boxes[:, 3] - boxes[:, 1]
        ctr_x = boxes[:, 0] + 0.5 * widths
        ctr_y = boxes[:, 1] + 0.5 * heights

        wx, wy, ww, wh = self.weights
        dx = rel_codes[:, 0::4] / wx
        dy = rel_codes[:, 1::4] / wy
        dw = torch.clamp(rel_codes[:, 2::4] / ww, max=self.bbox_xform_clip)
        dh = torch.clamp(rel_codes[:, 3::4] / wh, max=self.bbox_xform_clip)

        pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
        pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
        pred_w = torch.exp(dw) * widths[:, None]
        pred_h = torch.exp(dh) * heights[:, None]

        half = torch.tensor(0.5, dtype=pred_ctr_y.dtype)  # a host scalar: no copy to the device
        half_h = half * pred_h
        half_w = half * pred_w
        pred = torch.stack((pred_ctr_x - half_w, pred_ctr_y - half_h, pred_ctr_x + half_w, pred_ctr_y + half_h), dim=2)
        return pred.flatten(1)


@torch.jit.unused
def _float32_under_autocast(rel_codes: Tensor) -> Tensor:
    """Deltas as float32 inside autocast: decoded in bfloat16, a 1000-pixel box would move by 4 pixels."""
    if rel_codes.dtype in (torch.float16, torch.bfloat16) and autocast_active(rel_codes.device.type):
        return rel_codes.float()
    return rel_codes


class BoxLinearCoder:
    """The FCOS parametrisation: distances from the reference box's centre to the four sides.

    Args:
        normalize_by_size: divide the distances by the reference box's width/height.
    """

    def __init__(self, normalize_by_size: bool = True) -> None:
        self.normalize_by_size = normalize_by_size

    def encode(self, reference_boxes: Tensor, proposals: Tensor) -> Tensor:
        """Distances ``(l, t, r, b)`` from each reference box's centre to ``proposals``' sides. ``[..., 4]``.

        ``reference_boxes`` are the anchors, ``proposals`` the boxes to encode, both ``[..., 4]``.
        """
        ctr_x = 0.5 * (reference_boxes[..., 0] + reference_boxes[..., 2])
        ctr_y = 0.5 * (reference_boxes[..., 1] + reference_boxes[..., 3])
        left = ctr_x - proposals[..., 0]
        top = ctr_y - proposals[..., 1]
        right = proposals[..., 2] - ctr_x
        bottom = proposals[..., 3] - ctr_y
        targets = torch.stack((left, top, right, bottom), dim=-1)
        if self.normalize_by_size:
            width = reference_boxes[..., 2] - reference_boxes[..., 0]
            height = reference_boxes[..., 3] - reference_boxes[..., 1]
            targets = targets / torch.stack((width, height, width, height), dim=-1)
        return targets

    def decode(self, rel_codes: Tensor, boxes: Tensor) -> Tensor:
        """Boxes ``[..., 4]`` xyxy from distances ``rel_codes`` ``[..., 4]`` around ``boxes``' centres."""
        boxes = boxes.to(dtype=rel_codes.dtype)
        ctr_x = 0.5 * (boxes[..., 0] + boxes[..., 2])
        ctr_y = 0.5 * (boxes[..., 1] + boxes[..., 3])
        if self.normalize_by_size:
            width = boxes[..., 2] - boxes[..., 0]
            height = boxes[..., 3] - boxes[..., 1]
            rel_codes = rel_codes * torch.stack((width, height, width, height), dim=-1)
        return torch.stack((ctr_x - rel_codes[..., 0], ctr_y - rel_codes[..., 1],
                            ctr_x + rel_codes[..., 2], ctr_y + rel_codes[..., 3]), dim=-1)
