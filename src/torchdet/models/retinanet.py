"""RetinaNet (Lin et al., 2017, "Focal Loss for Dense Object Detection").

A one-stage detector: an FPN backbone, anchors on every level (3 sizes x 3 aspect ratios per
cell), and a head shared across levels with two towers of four 3x3 convs: one scores every
(anchor, class) with a sigmoid, the other regresses the anchor's box. Training matches anchors
to ground truth by IoU (>= 0.5 foreground, < 0.4 background, in between ignored) and uses the
focal loss, both losses divided by the number of foreground anchors.

Module names, defaults and numerics follow torchvision's ``torchvision.models.detection.retinanet``
so that its checkpoints load unchanged.
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
from torchdet.models.box_coder import BoxCoder
from torchdet.models.dense_prediction import (flatten_head_output, select_detections, split_levels, sum_tensors,
                                              topk_per_level)
from torchdet.models.matcher import Matcher
from torchdet.models.one_stage import OneStageDetector, detection_transform, require_out_channels
from torchdet.ops.boxes import clip_boxes_to_image
from torchdet.ops.losses import generalized_box_iou_loss, sigmoid_focal_loss
from torchdet.ops.misc import Conv2dNormActivation
from torchdet.weights.backbone import ResNet50_Weights
from torchdet.weights.builder_support import load_weights, resolve_weights
from torchdet.weights.detection import RetinaNet_ResNet50_FPN_V2_Weights, RetinaNet_ResNet50_FPN_Weights
from torchdet.weights.registry import register_model

__all__ = [
    "RetinaNet",
    "RetinaNetHead",
    "RetinaNetClassificationHead",
    "RetinaNetRegressionHead",
    "retinanet_resnet50_fpn",
    "retinanet_resnet50_fpn_v2",
]

BOX_LOSS_TYPES = ("l1", "smooth_l1", "giou")


def _head_tower(in_channels: int, norm_layer: Optional[Callable[..., nn.Module]]) -> nn.Sequential:
    """Four 3x3 conv (+ norm) + ReLU blocks, ``conv.{i}.0`` the conv, with PyTorch's default init."""
    return nn.Sequential(*[Conv2dNormActivation(in_channels, in_channels, norm_layer=norm_layer) for _ in range(4)])


def _init_tower(tower: nn.Module) -> None:
    """Tower convs: weights N(0, 0.01), biases 0."""
    for layer in tower.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.normal_(layer.weight, std=0.01)
            if layer.bias is not None:
                nn.init.constant_(layer.bias, 0)


def _rename_v1_tower_keys(state_dict: Dict[str, Tensor], prefix: str) -> None:
    """Old checkpoints (no norm) name the tower's convs ``conv.0, conv.2, ...``; now ``conv.{i}.0``."""
    for i in range(4):
        for kind in ("weight", "bias"):
            old, new = f"{prefix}conv.{2 * i}.{kind}", f"{prefix}conv.{i}.0.{kind}"
            if old in state_dict:
                state_dict[new] = state_dict.pop(old)


def box_regression_loss(loss_type: str, box_coder: BoxCoder, anchors: Tensor, matched_gt_boxes: Tensor,
                        bbox_regression: Tensor) -> Tensor:
    """Summed box loss of ``[K, 4]`` predicted deltas against ``[K, 4]`` matched gt boxes on ``[K, 4]`` anchors.

    ``"l1"`` and ``"smooth_l1"`` (beta 1) compare deltas; ``"giou"`` compares decoded boxes.
    """
    if loss_type == "l1":
        target = box_coder.encode_single(matched_gt_boxes, anchors)
        return F.l1_loss(bbox_regression, target, reduction="sum")
    if loss_type == "smooth_l1":
        target = box_coder.encode_single(matched_gt_boxes, anchors)
        return F.smooth_l1_loss(bbox_regression, target, reduction="sum", beta=1.0)
    if loss_type == "giou":
        boxes = box_coder.decode_single(bbox_regression, anchors)
        return generalized_box_iou_loss(boxes, matched_gt_boxes, reduction="sum", eps=1e-7)
    raise ValueError(f"unsupported box loss '{loss_type}'; use one of ['l1', 'smooth_l1', 'giou'].")


class RetinaNetClassificationHead(nn.Module):
    """Scores every anchor for every class: ``[N, C, H, W]`` per level -> ``[N, sum H*W*A, num_classes]`` logits.

    Args:
        in_channels: channels of the feature maps.
        num_anchors: anchors per cell.
        num_classes: classes scored (background included as class 0 in torchvision's numbering).
        prior_probability: initial foreground probability; sets the logits' bias.
        norm_layer: normalisation after each tower conv (None: plain conv with bias).
    """

    _version = 2

    def __init__(self, in_channels: int, num_anchors: int, num_classes: int, prior_probability: float = 0.01,
                 norm_layer: Optional[Callable[..., nn.Module]] = None) -> None:
        super().__init__()
        self.conv = _head_tower(in_channels, norm_layer)
        _init_tower(self.conv)
        self.cls_logits = nn.Conv2d(in_channels, num_anchors * num_classes, kernel_size=3, stride=1, padding=1)
        nn.init.normal_(self.cls_logits.weight, std=0.01)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior_probability) / prior_probability))
        self.num_classes = num_classes
        self.num_anchors = num_anchors
        self.BETWEEN_THRESHOLDS = Matcher.BETWEEN_THRESHOLDS

    def _load_from_state_dict(self, state_dict: Dict[str, Tensor], prefix: str, local_metadata: Dict[str, Any],
                              *args: Any, **kwargs: Any) -> None:
        version = local_metadata.get("version", None)
        if version is None or version < 2:
            _rename_v1_tower_keys(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args, **kwargs)

    def compute_loss(self, targets: List[Dict[str, Tensor]], head_outputs: Dict[str, Tensor],
                     matched_idxs: List[Tensor]) -> Tensor:
        """Focal loss over non-ignored anchors, per image divided by its foreground count, averaged over images."""
        losses = []
        for target, logits, matched in zip(targets, head_outputs["cls_logits"], matched_idxs):
            foreground = matched >= 0  # [M]
            num_foreground = foreground.sum()
            one_hot = torch.zeros_like(logits)  # [M, K]
            one_hot[foreground, target["labels"][matched[foreground]]] = 1.0
            valid = matched != self.BETWEEN_THRESHOLDS
            loss = sigmoid_focal_loss(logits[valid], one_hot[valid], reduction="sum")
            losses.append(loss / num_foreground.clamp(min=1))
        return sum_tensors(losses) / len(targets)

    def forward(self, x: List[Tensor]) -> Tensor:
        """Per-level features ``[N, C, H_l, W_l]`` -> logits ``[N, sum_l H_l*W_l*A, num_classes]``."""
        return torch.cat([flatten_head_output(self.cls_logits(self.conv(f)), self.num_classes) for f in x], dim=1)


class RetinaNetRegressionHead(nn.Module):
    """Regresses every anchor's box: ``[N, C, H, W]`` per level -> ``[N, sum H*W*A, 4]`` deltas.

    ``_loss_type`` picks the box loss ("l1" by default, "smooth_l1" or "giou").
    """

    _version = 2

    def __init__(self, in_channels: int, num_anchors: int,
                 norm_layer: Optional[Callable[..., nn.Module]] = None) -> None:
        super().__init__()
        # torchvision's order (build tower, build and init bbox_reg, init tower) fixes the RNG draws,
        # so a seeded build gives its initial weights.
        self.conv = _head_tower(in_channels, norm_layer)
        self.bbox_reg = nn.Conv2d(in_channels, num_anchors * 4, kernel_size=3, stride=1, padding=1)
        nn.init.normal_(self.bbox_reg.weight, std=0.01)
        nn.init.zeros_(self.bbox_reg.bias)
        _init_tower(self.conv)
        self.box_coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
        self._loss_type = "l1"

    def _load_from_state_dict(self, state_dict: Dict[str, Tensor], prefix: str, local_metadata: Dict[str, Any],
                              *args: Any, **kwargs: Any) -> None:
        version = local_metadata.get("version", None)
        if version is None or version < 2:
            _rename_v1_tower_keys(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args, **kwargs)

    def compute_loss(self, targets: List[Dict[str, Tensor]], head_outputs: Dict[str, Tensor],
                     anchors: List[Tensor], matched_idxs: List[Tensor]) -> Tensor:
        """Box loss over foreground anchors, per image divided by its foreground count, averaged over images."""
        losses = []
        for target, deltas, anchors_i, matched in zip(targets, head_outputs["bbox_regression"], anchors, matched_idxs):
            foreground = torch.where(matched >= 0)[0]  # [F]
            matched_gt_boxes = target["boxes"][matched[foreground]]  # [F, 4]
            loss = box_regression_loss(self._loss_type, self.box_coder, anchors_i[foreground],
                                       matched_gt_boxes, deltas[foreground])
            losses.append(loss / max(1, foreground.numel()))
        return sum_tensors(losses) / max(1, len(targets))

    def forward(self, x: List[Tensor]) -> Tensor:
        """Per-level features ``[N, C, H_l, W_l]`` -> deltas ``[N, sum_l H_l*W_l*A, 4]``."""
        return torch.cat([flatten_head_output(self.bbox_reg(self.conv(f)), 4) for f in x], dim=1)


class RetinaNetHead(nn.Module):
    """The classification and regression towers, applied to every level.

    Returns ``{"cls_logits": [N, M, num_classes], "bbox_regression": [N, M, 4]}``.
    """

    def __init__(self, in_channels: int, num_anchors: int, num_classes: int,
                 norm_layer: Optional[Callable[..., nn.Module]] = None) -> None:
        super().__init__()
        self.classification_head = RetinaNetClassificationHead(in_channels, num_anchors, num_classes,
                                                               norm_layer=norm_layer)
        self.regression_head = RetinaNetRegressionHead(in_channels, num_anchors, norm_layer=norm_layer)

    def compute_loss(self, targets: List[Dict[str, Tensor]], head_outputs: Dict[str, Tensor],
                     anchors: List[Tensor], matched_idxs: List[Tensor]) -> Dict[str, Tensor]:
        return {
            "classification": self.classification_head.compute_loss(targets, head_outputs, matched_idxs),
            "bbox_regression": self.regression_head.compute_loss(targets, head_outputs, anchors, matched_idxs),
        }

    def forward(self, x: List[Tensor]) -> Dict[str, Tensor]:
        return {"cls_logits": self.classification_head(x), "bbox_regression": self.regression_head(x)}


def _default_anchorgen() -> AnchorGenerator:
    """Sizes 32..512 (one octave per level, three scales 2**(0, 1/3, 2/3) each), ratios 0.5, 1, 2."""
    anchor_sizes = tuple((x, int(x * 2 ** (1.0 / 3)), int(x * 2 ** (2.0 / 3))) for x in [32, 64, 128, 256, 512])
    aspect_ratios = ((0.5, 1.0, 2.0),) * len(anchor_sizes)
    return AnchorGenerator(anchor_sizes, aspect_ratios)


class RetinaNet(OneStageDetector):
    """RetinaNet: backbone -> head on every level -> focal-loss training or per-level top-k + NMS.

    Args:
        backbone: returns a feature map or an ordered dict of them and has ``out_channels``.
        num_classes: classes including background.
        min_size, max_size, image_mean, image_std: the transform's resize and normalisation.
        anchor_generator: anchors per level (default: 3 sizes x 3 ratios, 32..512).
        head: default ``RetinaNetHead(backbone.out_channels, anchors per cell, num_classes)``.
        proposal_matcher: default ``Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=True)``.
        score_thresh: minimum class probability kept at inference.
        nms_thresh: IoU threshold of the class-wise NMS.
        detections_per_img: detections kept per image.
        fg_iou_thresh, bg_iou_thresh: matcher thresholds.
        topk_candidates: (anchor, class) pairs kept per level before NMS.
        **kwargs: passed to :class:`GeneralizedRCNNTransform` (e.g. ``size_divisible``).

    Training returns the ``{"classification", "bbox_regression"}`` losses; see :class:`OneStageDetector`.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, min_size: int = 800, max_size: int = 1333,
                 image_mean: Optional[List[float]] = None, image_std: Optional[List[float]] = None,
                 anchor_generator: Optional[AnchorGenerator] = None, head: Optional[nn.Module] = None,
                 proposal_matcher: Optional[Matcher] = None, score_thresh: float = 0.05, nms_thresh: float = 0.5,
                 detections_per_img: int = 300, fg_iou_thresh: float = 0.5, bg_iou_thresh: float = 0.4,
                 topk_candidates: int = 1000, **kwargs: Any) -> None:
        super().__init__()
        require_out_channels(backbone)
        if anchor_generator is None:
            anchor_generator = _default_anchorgen()
        if head is None:
            head = RetinaNetHead(backbone.out_channels, anchor_generator.num_anchors_per_location()[0], num_classes)
        if proposal_matcher is None:
            proposal_matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=True)
        self.backbone = backbone
        self.anchor_generator = anchor_generator
        self.head = head
        self.proposal_matcher = proposal_matcher
        self.box_coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
        self.transform = detection_transform(min_size, max_size, image_mean, image_std, **kwargs)
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        self.topk_candidates = topk_candidates

    def compute_loss(self, targets: List[Dict[str, Tensor]], head_outputs: Dict[str, Tensor],
                     anchors: List[Tensor]) -> Dict[str, Tensor]:
        """Match anchors to ground truth by IoU, then the head's losses."""
        return self.head.compute_loss(targets, head_outputs, anchors, self.match_by_iou(targets, anchors))

    def head_losses(self, targets: List[Dict[str, Tensor]], head_outputs: Dict[str, Tensor],
                    anchors: List[Tensor], features: List[Tensor]) -> Dict[str, Tensor]:
        return self.compute_loss(targets, head_outputs, anchors)

    def head_detections(self, head_outputs: Dict[str, Tensor], anchors: List[Tensor], features: List[Tensor],
                        image_sizes: List[Tuple[int, int]]) -> List[Dict[str, Tensor]]:
        split_outputs, split_anchors = split_levels(head_outputs, anchors, features)
        return self.postprocess_detections(split_outputs, split_anchors, image_sizes)

    def postprocess_detections(self, head_outputs: Dict[str, List[Tensor]], anchors: List[List[Tensor]],
                               image_shapes: List[Tuple[int, int]]) -> List[Dict[str, Tensor]]:
        """Per image: top-k (anchor, class) pairs per level above ``score_thresh``, decoded, clipped, NMS'd.

        Args:
            head_outputs: ``cls_logits`` and ``bbox_regression``, each a list over levels of
                ``[N, H_l*W_l*A, K]`` tensors.
            anchors: per image, a list over levels of ``[H_l*W_l*A, 4]`` anchors.
            image_shapes: each image's ``(H, W)`` after resizing.
        """
        detections: List[Dict[str, Tensor]] = []
        for index in range(len(anchors)):
            anchors_i, image_shape = anchors[index], image_shapes[index]
            logits = [level[index].flatten() for level in head_outputs["cls_logits"]]  # [M_l * K] each
            deltas = torch.cat([level[index] for level in head_outputs["bbox_regression"]])  # [M, 4]
            num_classes = head_outputs["cls_logits"][0].shape[-1]
            # Ranking logits ranks probabilities (sigmoid is monotonic); the sigmoid and the threshold
            # then only touch the k candidates per level (the top-k above a threshold are the
            # top-k that pass it).
            flat, top_logits = topk_per_level(logits, self.topk_candidates)
            scores = torch.sigmoid(top_logits)
            keep = scores > self.score_thresh
            flat, scores = flat[keep], scores[keep]
            anchor_idxs = torch.div(flat, num_classes, rounding_mode="floor")
            labels = flat % num_classes
            boxes = self.box_coder.decode_single(deltas[anchor_idxs], torch.cat(anchors_i)[anchor_idxs])
            boxes = clip_boxes_to_image(boxes, image_shape)
            detections.append(select_detections(boxes, scores, labels, self.nms_thresh, self.detections_per_img))
        return detections


@register_model(pretrained=RetinaNet_ResNet50_FPN_Weights.COCO_V1,
                pretrained_backbone=ResNet50_Weights.IMAGENET1K_V1)
def retinanet_resnet50_fpn(*, weights: Any = None, progress: bool = True, num_classes: Optional[int] = None,
                           weights_backbone: Any = ResNet50_Weights.IMAGENET1K_V1,
                           trainable_backbone_layers: Optional[int] = None, **kwargs: Any) -> RetinaNet:
    """RetinaNet with a ResNet-50-FPN backbone (P3-P7, P6 from P5), as in the paper."""
    r = resolve_weights("retinanet_resnet50_fpn", weights, RetinaNet_ResNet50_FPN_Weights,
                        weights_backbone, ResNet50_Weights, num_classes)
    backbone = _resnet50_fpn_p3p7(r.weights_backbone, progress, r.is_trained, trainable_backbone_layers)
    model = RetinaNet(backbone, r.num_classes, **kwargs)
    return model if r.weights is None else load_weights(model, r.weights, progress=progress)


@register_model(pretrained=RetinaNet_ResNet50_FPN_V2_Weights.COCO_V1,
                pretrained_backbone=ResNet50_Weights.IMAGENET1K_V1)
def retinanet_resnet50_fpn_v2(*, weights: Any = None, progress: bool = True, num_classes: Optional[int] = None,
                              weights_backbone: Any = None, trainable_backbone_layers: Optional[int] = None,
                              **kwargs: Any) -> RetinaNet:
    """RetinaNet v2 ("Bridging the Gap Between Anchor-based and Anchor-free Detection"):
    P6 from C5, GroupNorm in the head towers, GIoU box loss. As in torchvision, the backbone keeps
    trainable BatchNorm2d even with pretrained weights, and ``weights_backbone`` defaults to None."""
    r = resolve_weights("retinanet_resnet50_fpn_v2", weights, RetinaNet_ResNet50_FPN_V2_Weights,
                        weights_backbone, ResNet50_Weights, num_classes)
    backbone = _resnet50_fpn_p3p7(r.weights_backbone, progress, r.is_trained, trainable_backbone_layers,
                                  p6_from_c5=True, norm_layer=nn.BatchNorm2d)
    anchor_generator = _default_anchorgen()
    head = RetinaNetHead(backbone.out_channels, anchor_generator.num_anchors_per_location()[0], r.num_classes,
                         norm_layer=partial(nn.GroupNorm, 32))
    head.regression_head._loss_type = "giou"
    model = RetinaNet(backbone, r.num_classes, anchor_generator=anchor_generator, head=head, **kwargs)
    return model if r.weights is None else load_weights(model, r.weights, progress=progress)
