"""FCOS (Tian et al., 2019, "FCOS: Fully Convolutional One-Stage Object Detection").

Anchor-free: every feature-map location (one square "anchor" per cell, sizes 8..128 over
P3-P7) predicts class scores, the distances to the four sides of its box, and a centerness.
A location is positive for a ground-truth box when it lies inside the box, within
``center_sampling_radius`` anchor sizes of its centre, and the box's largest side distance
falls in the level's range; among several, the smallest box wins. Losses: focal (classes),
GIoU (boxes) and BCE (centerness), each divided by the number of positive locations.
Inference ranks by ``sqrt(sigmoid(class) * sigmoid(centerness))``.

Module names, defaults and numerics follow torchvision's ``torchvision.models.detection.fcos``.
"""
from __future__ import annotations

import math
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchdet.backbones.fpn import _resnet50_fpn_p3p7
from torchdet.models.anchor_utils import AnchorGenerator
from torchdet.models.box_coder import BoxLinearCoder
from torchdet.models.dense_prediction import (flatten_head_output, level_sizes, select_detections, split_levels,
                                              topk_per_level)
from torchdet.models.one_stage import OneStageDetector, detection_transform, require_out_channels, unmatched
from torchdet.ops.boxes import clip_boxes_to_image
from torchdet.ops.losses import generalized_box_iou_loss, sigmoid_focal_loss
from torchdet.weights.backbone import ResNet50_Weights
from torchdet.weights.builder_support import load_weights, resolve_weights
from torchdet.weights.detection import FCOS_ResNet50_FPN_Weights
from torchdet.weights.registry import register_model

__all__ = ["FCOS", "FCOSHead", "FCOSClassificationHead", "FCOSRegressionHead", "fcos_resnet50_fpn"]


def _fcos_tower(in_channels: int, num_convs: int, norm_layer: Optional[Callable[..., nn.Module]]) -> nn.Sequential:
    """``num_convs`` x (3x3 conv, norm, ReLU) flat in one Sequential, with PyTorch's default init."""
    if norm_layer is None:
        norm_layer = partial(nn.GroupNorm, 32)
    layers: List[nn.Module] = []
    for _ in range(num_convs):
        layers += [nn.Conv2d(in_channels, in_channels, kernel_size=3, stride=1, padding=1),
                   norm_layer(in_channels), nn.ReLU()]
    return nn.Sequential(*layers)


def _init_tower(tower: nn.Module) -> None:
    """Tower convs: weights N(0, 0.01), biases 0."""
    for layer in tower.children():
        if isinstance(layer, nn.Conv2d):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.constant_(layer.bias, 0)


def centerness(ltrb: Tensor) -> Tensor:
    """``sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))`` of ``[..., 4]`` side distances. ``[...]``."""
    left_right = ltrb[..., 0::2]
    top_bottom = ltrb[..., 1::2]
    return torch.sqrt((left_right.amin(dim=-1) / left_right.amax(dim=-1))
                      * (top_bottom.amin(dim=-1) / top_bottom.amax(dim=-1)))


class FCOSClassificationHead(nn.Module):
    """Per-location class logits: ``[N, C, H, W]`` per level -> ``[N, sum H*W*A, num_classes]``."""

    def __init__(self, in_channels: int, num_anchors: int, num_classes: int, num_convs: int = 4,
                 prior_probability: float = 0.01, norm_layer: Optional[Callable[..., nn.Module]] = None) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_anchors = num_anchors
        self.conv = _fcos_tower(in_channels, num_convs, norm_layer)
        _init_tower(self.conv)
        self.cls_logits = nn.Conv2d(in_channels, num_anchors * num_classes, kernel_size=3, stride=1, padding=1)
        nn.init.normal_(self.cls_logits.weight, std=0.01)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior_probability) / prior_probability))

    def forward(self, x: List[Tensor]) -> Tensor:
        return torch.cat([flatten_head_output(self.cls_logits(self.conv(f)), self.num_classes) for f in x], dim=1)


class FCOSRegressionHead(nn.Module):
    """Per-location side distances (ReLU'd, relative to the anchor size) and centerness logits.

    Returns ``([N, sum H*W*A, 4], [N, sum H*W*A, 1])``.
    """

    def __init__(self, in_channels: int, num_anchors: int, num_convs: int = 4,
                 norm_layer: Optional[Callable[..., nn.Module]] = None) -> None:
        super().__init__()
        # torchvision's order (build tower, build and init the predictors, init tower) fixes the RNG
        # draws, so a seeded build gives its initial weights.
        self.conv = _fcos_tower(in_channels, num_convs, norm_layer)
        self.bbox_reg = nn.Conv2d(in_channels, num_anchors * 4, kernel_size=3, stride=1, padding=1)
        self.bbox_ctrness = nn.Conv2d(in_channels, num_anchors * 1, kernel_size=3, stride=1, padding=1)
        for layer in (self.bbox_reg, self.bbox_ctrness):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)
        _init_tower(self.conv)

    def forward(self, x: List[Tensor]) -> Tuple[Tensor, Tensor]:
        regressions, ctrness = [], []
        for f in x:
            feature = self.conv(f)
            regressions.append(flatten_head_output(F.relu(self.bbox_reg(feature)), 4))
            ctrness.append(flatten_head_output(self.bbox_ctrness(feature), 1))
        return torch.cat(regressions, dim=1), torch.cat(ctrness, dim=1)


class FCOSHead(nn.Module):
    """Classification and regression towers.

    ``forward`` returns ``{"cls_logits", "bbox_regression", "bbox_ctrness"}``, ``[N, M, *]`` each.
    """

    def __init__(self, in_channels: int, num_anchors: int, num_classes: int, num_convs: Optional[int] = 4) -> None:
        super().__init__()
        num_convs = 4 if num_convs is None else num_convs
        self.box_coder = BoxLinearCoder(normalize_by_size=True)
        self.classification_head = FCOSClassificationHead(in_channels, num_anchors, num_classes, num_convs)
        self.regression_head = FCOSRegressionHead(in_channels, num_anchors, num_convs)

    def compute_loss(self, targets: List[Dict[str, Tensor]], head_outputs: Dict[str, Tensor],
                     anchors: List[Tensor], matched_idxs: List[Tensor]) -> Dict[str, Tensor]:
        """Focal, GIoU and centerness-BCE losses over the batch, each divided by the positive count."""
        gt_labels, gt_boxes = [], []
        for target, matched in zip(targets, matched_idxs):
            if len(target["labels"]) == 0:
                labels = target["labels"].new_zeros((len(matched),))
                boxes = target["boxes"].new_zeros((len(matched), 4))
            else:
                labels = target["labels"][matched.clip(min=0)]
                boxes = target["boxes"][matched.clip(min=0)]
            labels[matched < 0] = -1  # background
            gt_labels.append(labels)
            gt_boxes.append(boxes)
        labels_b = torch.stack(gt_labels)  # [N, M]
        boxes_b, anchors_b = torch.stack(gt_boxes), torch.stack(anchors)  # [N, M, 4]
        foreground = labels_b >= 0  # [N, M]
        num_foreground = max(1, int(foreground.sum()))

        cls_logits = head_outputs["cls_logits"]  # [N, M, K]
        one_hot = torch.zeros_like(cls_logits)
        one_hot[foreground, labels_b[foreground]] = 1.0
        loss_cls = sigmoid_focal_loss(cls_logits, one_hot, reduction="sum")

        pred_boxes = self.box_coder.decode(head_outputs["bbox_regression"], anchors_b)  # [N, M, 4]
        loss_box = generalized_box_iou_loss(pred_boxes[foreground], boxes_b[foreground], reduction="sum")

        ltrb_targets = self.box_coder.encode(anchors_b, boxes_b)  # [N, M, 4]
        if len(ltrb_targets) == 0:
            ctrness_targets = ltrb_targets.new_zeros(ltrb_targets.shape[:-1])
        else:
            ctrness_targets = centerness(ltrb_targets)  # [N, M]
        ctrness_logits = head_outputs["bbox_ctrness"].squeeze(dim=2)  # [N, M]
        loss_ctrness = F.binary_cross_entropy_with_logits(ctrness_logits[foreground], ctrness_targets[foreground],
                                                          reduction="sum")
        return {
            "classification": loss_cls / num_foreground,
            "bbox_regression": loss_box / num_foreground,
            "bbox_ctrness": loss_ctrness / num_foreground,
        }

    def forward(self, x: List[Tensor]) -> Dict[str, Tensor]:
        cls_logits = self.classification_head(x)
        bbox_regression, bbox_ctrness = self.regression_head(x)
        return {"cls_logits": cls_logits, "bbox_regression": bbox_regression, "bbox_ctrness": bbox_ctrness}


def match_locations(anchors: Tensor, gt_boxes: Tensor, num_anchors_per_level: List[int],
                    center_sampling_radius: float) -> Tensor:
    """FCOS's assignment of ``[M, 4]`` anchors (one per location) to ``[G, 4]`` boxes. ``[M]`` gt index or -1.

    A location matches a box when (1) its centre is within ``radius * anchor size`` (L-inf) of
    the box centre, (2) it lies strictly inside the box, and (3) its largest distance to the
    box's sides is in the level's range ``(4 * size, 8 * size)`` (open below on the first level
    and above on the last). Of several matching boxes, the smallest by area wins.
    """
    gt_centers = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2  # [G, 2]
    centers = (anchors[:, :2] + anchors[:, 2:]) / 2  # [M, 2]
    sizes = anchors[:, 2] - anchors[:, 0]  # [M]
    offsets = (centers[:, None, :] - gt_centers[None, :, :]).abs_().max(dim=2).values  # [M, G], L-inf
    match = offsets < center_sampling_radius * sizes[:, None]

    x, y = centers[:, 0:1], centers[:, 1:2]  # [M, 1] each
    x0, y0, x1, y1 = gt_boxes[None, :, 0], gt_boxes[None, :, 1], gt_boxes[None, :, 2], gt_boxes[None, :, 3]  # [1, G]
    distances = torch.stack([x - x0, y - y0, x1 - x, y1 - y], dim=2)  # [M, G, 4]
    match &= distances.min(dim=2).values > 0

    lower = sizes * 4
    lower[: num_anchors_per_level[0]] = 0
    upper = sizes * 8
    upper[-num_anchors_per_level[-1]:] = float("inf")
    largest = distances.max(dim=2).values  # [M, G]
    match &= (largest > lower[:, None]) & (largest < upper[:, None])

    areas = (gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1])  # [G]
    preference = match.to(torch.float32) * (1e8 - areas[None, :])  # [M, G], larger for smaller boxes
    best, matched = preference.max(dim=1)
    matched[best < 1e-5] = -1
    return matched


class FCOS(OneStageDetector):
    """FCOS: backbone -> head on every level -> losses, or per-level top-k + NMS.

    Args:
        backbone: returns a feature map or an ordered dict of them and has ``out_channels``.
        num_classes: classes including background.
        min_size, max_size, image_mean, image_std: the transform's resize and normalisation.
        anchor_generator: one anchor per location (default sizes 8, 16, 32, 64, 128).
        head: default ``FCOSHead(backbone.out_channels, 1, num_classes)``.
        center_sampling_radius: positives lie within this many anchor sizes of a box centre.
        score_thresh, nms_thresh, detections_per_img, topk_candidates: inference settings
            (``topk_candidates`` per level).
        **kwargs: passed to :class:`GeneralizedRCNNTransform`.

    Training returns the ``{"classification", "bbox_regression", "bbox_ctrness"}`` losses; see
    :class:`OneStageDetector`.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, min_size: int = 800, max_size: int = 1333,
                 image_mean: Optional[List[float]] = None, image_std: Optional[List[float]] = None,
                 anchor_generator: Optional[AnchorGenerator] = None, head: Optional[nn.Module] = None,
                 center_sampling_radius: float = 1.5, score_thresh: float = 0.2, nms_thresh: float = 0.6,
                 detections_per_img: int = 100, topk_candidates: int = 1000, **kwargs: Any) -> None:
        super().__init__()
        require_out_channels(backbone)
        if anchor_generator is None:
            anchor_sizes = ((8,), (16,), (32,), (64,), (128,))
            anchor_generator = AnchorGenerator(anchor_sizes, ((1.0,),) * len(anchor_sizes))
        if anchor_generator.num_anchors_per_location()[0] != 1:
            raise ValueError(
                f"FCOS needs exactly one anchor per location; the anchor generator gives "
                f"{anchor_generator.num_anchors_per_location()[0]}. Use one size and aspect ratio 1.0 per level."
            )
        if head is None:
            head = FCOSHead(backbone.out_channels, anchor_generator.num_anchors_per_location()[0], num_classes)
        self.backbone = backbone
        self.anchor_generator = anchor_generator
        self.head = head
        self.box_coder = BoxLinearCoder(normalize_by_size=True)
        self.transform = detection_transform(min_size, max_size, image_mean, image_std, **kwargs)
        self.center_sampling_radius = center_sampling_radius
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        self.topk_candidates = topk_candidates

    def compute_loss(self, targets: List[Dict[str, Tensor]], head_outputs: Dict[str, Tensor],
                     anchors: List[Tensor], num_anchors_per_level: List[int]) -> Dict[str, Tensor]:
        """Assign locations to ground truth (see :func:`match_locations`), then the head's losses."""
        matched_idxs = []
        for anchors_i, target in zip(anchors, targets):
            if target["boxes"].numel() == 0:
                matched_idxs.append(unmatched(anchors_i))
            else:
                matched_idxs.append(match_locations(anchors_i, target["boxes"], num_anchors_per_level,
                                                    self.center_sampling_radius))
        return self.head.compute_loss(targets, head_outputs, anchors, matched_idxs)

    def head_losses(self, targets: List[Dict[str, Tensor]], head_outputs: Dict[str, Tensor],
                    anchors: List[Tensor], features: List[Tensor]) -> Dict[str, Tensor]:
        return self.compute_loss(targets, head_outputs, anchors, level_sizes(features, anchors[0].shape[0]))

    def head_detections(self, head_outputs: Dict[str, Tensor], anchors: List[Tensor], features: List[Tensor],
                        image_sizes: List[Tuple[int, int]]) -> List[Dict[str, Tensor]]:
        split_outputs, split_anchors = split_levels(head_outputs, anchors, features)
        return self.postprocess_detections(split_outputs, split_anchors, image_sizes)

    def postprocess_detections(self, head_outputs: Dict[str, List[Tensor]], anchors: List[List[Tensor]],
                               image_shapes: List[Tuple[int, int]]) -> List[Dict[str, Tensor]]:
        """Per image: top-k (location, class) pairs per level by ``sqrt(p_class * p_ctrness)``, decoded, NMS'd.

        ``head_outputs`` values and ``anchors`` are lists over levels, as in :meth:`RetinaNet.postprocess_detections`.
        """
        detections: List[Dict[str, Tensor]] = []
        for index in range(len(anchors)):
            anchors_i, image_shape = anchors[index], image_shapes[index]
            logits = torch.cat([level[index] for level in head_outputs["cls_logits"]])  # [M, K]
            distances = torch.cat([level[index] for level in head_outputs["bbox_regression"]])  # [M, 4]
            ctrness = torch.cat([level[index] for level in head_outputs["bbox_ctrness"]])  # [M, 1]
            num_classes = logits.shape[-1]
            squared_scores = (torch.sigmoid(logits) * torch.sigmoid(ctrness)).flatten()  # [M * K]
            sizes = [level.shape[0] * num_classes for level in anchors_i]
            flat, top_squared = topk_per_level(squared_scores.split(sizes), self.topk_candidates)
            top_scores = torch.sqrt(top_squared)  # sqrt is monotonic: rank first, then take it on k values
            keep = top_scores > self.score_thresh
            flat, top_scores = flat[keep], top_scores[keep]
            anchor_idxs = torch.div(flat, num_classes, rounding_mode="floor")
            labels = flat % num_classes
            boxes = self.box_coder.decode(distances[anchor_idxs], torch.cat(anchors_i)[anchor_idxs])
            boxes = clip_boxes_to_image(boxes, image_shape)
            detections.append(select_detections(boxes, top_scores, labels, self.nms_thresh, self.detections_per_img))
        return detections


@register_model(pretrained=FCOS_ResNet50_FPN_Weights.COCO_V1, pretrained_backbone=ResNet50_Weights.IMAGENET1K_V1)
def fcos_resnet50_fpn(*, weights: Any = None, progress: bool = True, num_classes: Optional[int] = None,
                      weights_backbone: Any = ResNet50_Weights.IMAGENET1K_V1,
                      trainable_backbone_layers: Optional[int] = None, **kwargs: Any) -> FCOS:
    """FCOS with a ResNet-50-FPN backbone (P3-P7, P6 from P5)."""
    r = resolve_weights("fcos_resnet50_fpn", weights, FCOS_ResNet50_FPN_Weights,
                        weights_backbone, ResNet50_Weights, num_classes)
    backbone = _resnet50_fpn_p3p7(r.weights_backbone, progress, r.is_trained, trainable_backbone_layers)
    model = FCOS(backbone, r.num_classes, **kwargs)
    return model if r.weights is None else load_weights(model, r.weights, progress=progress)
