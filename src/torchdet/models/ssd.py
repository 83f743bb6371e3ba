"""SSD (Liu et al., 2016, "SSD: Single Shot MultiBox Detector") and SSD300 with a VGG-16 backbone.

Images are resized to a fixed size; a backbone gives a pyramid of feature maps; on each map a
3x3 conv scores every default box for every class (softmax, class 0 is background) and
another regresses its box. Training matches default boxes to ground truth (IoU >= 0.5, and
every ground truth claims its best box), takes smooth-L1 on the positives' deltas and
cross-entropy on the positives plus the hardest negatives (3 per positive), both divided by
the number of positives. Inference keeps, per class, the best boxes above a score, then NMS.

Module names, defaults and numerics follow torchvision's ``torchvision.models.detection.ssd``.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchdet.backbones.fpn import _channels_last_on_cpu, _validate_trainable_layers
from torchdet.backbones.vgg import VGG, vgg16
from torchdet.models.box_coder import BoxCoder
from torchdet.models.default_boxes import DefaultBoxGenerator
from torchdet.models.dense_prediction import backbone_features, flatten_head_output, select_detections, topk_per_column
from torchdet.models.matcher import SSDMatcher
from torchdet.models.one_stage import OneStageDetector, detection_transform
from torchdet.ops.boxes import clip_boxes_to_image
from torchdet.weights.backbone import VGG16_Weights
from torchdet.weights.builder_support import load_weights, resolve_weights
from torchdet.weights.detection import SSD300_VGG16_Weights
from torchdet.weights.registry import register_model

__all__ = [
    "SSD",
    "SSDHead",
    "SSDScoringHead",
    "SSDClassificationHead",
    "SSDRegressionHead",
    "SSDFeatureExtractorVGG",
    "ssd300_vgg16",
]


def _xavier_init(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for every conv in ``module``."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.constant_(layer.bias, 0.0)


def retrieve_out_channels(model: nn.Module, size: Tuple[int, int]) -> List[int]:
    """The channels of each feature map ``model`` returns, found by running it on a zero image of ``size`` (w, h)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        device = next(model.parameters()).device
        features = backbone_features(model, torch.zeros((1, 3, size[1], size[0]), device=device))
        out_channels = [int(f.shape[1]) for f in features]
    if was_training:
        model.train()
    return out_channels


class SSDScoringHead(nn.Module):
    """One module per feature map, each giving ``[N, A * num_columns, H, W]``.

    ``forward`` returns ``[N, sum_l H_l*W_l*A_l, num_columns]``.
    """

    def __init__(self, module_list: nn.ModuleList, num_columns: int) -> None:
        super().__init__()
        self.module_list = module_list
        self.num_columns = num_columns

    def _get_result_from_module_list(self, x: Tensor, idx: int) -> Tensor:
        """The ``idx``-th module applied to ``x``."""
        out = x
        for i, module in enumerate(self.module_list):  # scripted ModuleLists index by literals only
            if i == idx:
                out = module(x)
        return out

    def forward(self, x: List[Tensor]) -> Tensor:
        outputs: List[Tensor] = []
        for i, module in enumerate(self.module_list):
            outputs.append(flatten_head_output(module(x[i]), self.num_columns))
        return torch.cat(outputs, dim=1)


class SSDClassificationHead(SSDScoringHead):
    """A 3x3 conv per feature map giving ``num_classes`` logits per default box."""

    def __init__(self, in_channels: List[int], num_anchors: List[int], num_classes: int) -> None:
        cls_logits = nn.ModuleList(
            nn.Conv2d(channels, num_classes * anchors, kernel_size=3, padding=1)
            for channels, anchors in zip(in_channels, num_anchors)
        )
        _xavier_init(cls_logits)
        super().__init__(cls_logits, num_classes)


class SSDRegressionHead(SSDScoringHead):
    """A 3x3 conv per feature map giving 4 box deltas per default box."""

    def __init__(self, in_channels: List[int], num_anchors: List[int]) -> None:
        bbox_reg = nn.ModuleList(
            nn.Conv2d(channels, 4 * anchors, kernel_size=3, padding=1)
            for channels, anchors in zip(in_channels, num_anchors)
        )
        _xavier_init(bbox_reg)
        super().__init__(bbox_reg, 4)


class SSDHead(nn.Module):
    """Returns ``{"bbox_regression": [N, M, 4], "cls_logits": [N, M, num_classes]}``."""

    def __init__(self, in_channels: List[int], num_anchors: List[int], num_classes: int) -> None:
        super().__init__()
        self.classification_head = SSDClassificationHead(in_channels, num_anchors, num_classes)
        self.regression_head = SSDRegressionHead(in_channels, num_anchors)

    def forward(self, x: List[Tensor]) -> Dict[str, Tensor]:
        return {"bbox_regression": self.regression_head(x), "cls_logits": self.classification_head(x)}


def hard_negative_mask(cls_loss: Tensor, foreground: Tensor, neg_to_pos_ratio: float) -> Tensor:
    """Per image, the ``neg_to_pos_ratio * num_positives`` background boxes with the highest loss. ``[N, M]`` bool.

    Args:
        cls_loss: ``[N, M]`` per-box classification loss.
        foreground: ``[N, M]`` positive boxes (never chosen).
    """
    num_negative = neg_to_pos_ratio * foreground.sum(1, keepdim=True)  # [N, 1]
    negative_loss = cls_loss.clone()
    negative_loss[foreground] = -float("inf")
    _, order = negative_loss.sort(1, descending=True)  # [N, M]
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return rank < num_negative


class SSD(OneStageDetector):
    """SSD: fixed-size resize -> backbone feature maps -> per-map heads -> losses or per-class top-k + NMS.

    Args:
        backbone: returns an ordered dict of feature maps (or a tensor).
        anchor_generator: the default boxes, one set per feature map.
        size: ``(width, height)`` every image is resized to.
        num_classes: classes including background (class 0).
        image_mean, image_std: normalisation (default ImageNet's).
        head: default ``SSDHead`` on the backbone's ``out_channels`` (measured when absent).
        score_thresh: minimum class probability kept at inference.
        nms_thresh: IoU threshold of the class-wise NMS.
        detections_per_img: detections kept per image.
        iou_thresh: matcher threshold.
        topk_candidates: boxes kept per class before NMS.
        positive_fraction: the share of positives in the classification loss (0.25: 3 negatives each).
        **kwargs: passed to :class:`GeneralizedRCNNTransform`.

    Training returns the ``{"bbox_regression", "classification"}`` losses; see :class:`OneStageDetector`.
    """

    def __init__(self, backbone: nn.Module, anchor_generator: DefaultBoxGenerator, size: Tuple[int, int],
                 num_classes: int, image_mean: Optional[List[float]] = None, image_std: Optional[List[float]] = None,
                 head: Optional[nn.Module] = None, score_thresh: float = 0.01, nms_thresh: float = 0.45,
                 detections_per_img: int = 200, iou_thresh: float = 0.5, topk_candidates: int = 400,
                 positive_fraction: float = 0.25, **kwargs: Any) -> None:
        super().__init__()
        self.backbone = backbone
        self.anchor_generator = anchor_generator
        self.box_coder = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
        if head is None:
            if hasattr(backbone, "out_channels"):
                out_channels = backbone.out_channels
            else:
                out_channels = retrieve_out_channels(backbone, size)
            if len(out_channels) != len(anchor_generator.aspect_ratios):
                raise ValueError(
                    f"The backbone gives {len(out_channels)} feature maps but the anchor generator has "
                    f"{len(anchor_generator.aspect_ratios)} aspect-ratio lists; give one list per feature map."
                )
            head = SSDHead(out_channels, self.anchor_generator.num_anchors_per_location(), num_classes)
        self.head = head
        self.proposal_matcher = SSDMatcher(iou_thresh)
        self.transform = detection_transform(min(size), max(size), image_mean, image_std, size_divisible=1,
                                             fixed_size=size, **kwargs)
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        self.topk_candidates = topk_candidates
        self.neg_to_pos_ratio = (1.0 - positive_fraction) / positive_fraction

    def compute_loss(self, targets: List[Dict[str, Tensor]], head_outputs: Dict[str, Tensor],
                     anchors: List[Tensor], matched_idxs: List[Tensor]) -> Dict[str, Tensor]:
        """Smooth-L1 on the positives' deltas; cross-entropy on positives and hard negatives; both / positives."""
        num_foreground = 0
        bbox_losses, cls_targets = [], []
        for target, deltas, logits, anchors_i, matched in zip(targets, head_outputs["bbox_regression"],
                                                              head_outputs["cls_logits"], anchors, matched_idxs):
            foreground = torch.where(matched >= 0)[0]  # [F]
            foreground_matched = matched[foreground]
            num_foreground += foreground_matched.numel()
            target_deltas = self.box_coder.encode_single(target["boxes"][foreground_matched], anchors_i[foreground])
            bbox_losses.append(F.smooth_l1_loss(deltas[foreground], target_deltas, reduction="sum"))
            classes = torch.zeros((logits.size(0),), dtype=target["labels"].dtype, device=logits.device)
            classes[foreground] = target["labels"][foreground_matched]
            cls_targets.append(classes)
        bbox_loss = torch.stack(bbox_losses)
        cls_targets_b = torch.stack(cls_targets)  # [N, M]

        cls_logits = head_outputs["cls_logits"]
        num_classes = cls_logits.size(-1)
        cls_loss = F.cross_entropy(cls_logits.view(-1, num_classes), cls_targets_b.view(-1),
                                   reduction="none").view(cls_targets_b.size())  # [N, M]
        foreground_mask = cls_targets_b > 0
        background_mask = hard_negative_mask(cls_loss, foreground_mask, self.neg_to_pos_ratio)
        n = max(1, num_foreground)
        return {
            "bbox_regression": bbox_loss.sum() / n,
            "classification": (cls_loss[foreground_mask].sum() + cls_loss[background_mask].sum()) / n,
        }

    def postprocess_detections(self, head_outputs: Dict[str, Tensor], image_anchors: List[Tensor],
                               image_shapes: List[Tuple[int, int]]) -> List[Dict[str, Tensor]]:
        """Per image: decode and clip every box, keep per class (all classes at once) the
        ``topk_candidates`` best above ``score_thresh``, class-wise NMS, the best ``detections_per_img``."""
        pred_scores = F.softmax(head_outputs["cls_logits"], dim=-1)  # [N, M, K]
        detections: List[Dict[str, Tensor]] = []
        for index in range(len(image_anchors)):
            deltas, scores = head_outputs["bbox_regression"][index], pred_scores[index]
            anchors, image_shape = image_anchors[index], image_shapes[index]
            boxes = clip_boxes_to_image(self.box_coder.decode_single(deltas, anchors), image_shape)  # [M, 4]
            rows, columns, top_scores = topk_per_column(scores[:, 1:], self.topk_candidates, self.score_thresh)
            labels = columns + 1  # column 0 of scores[:, 1:] is class 1
            detections.append(select_detections(boxes[rows], top_scores, labels, self.nms_thresh,
                                                self.detections_per_img))
        return detections

    def head_losses(self, targets: List[Dict[str, Tensor]], head_outputs: Dict[str, Tensor],
                    anchors: List[Tensor], features: List[Tensor]) -> Dict[str, Tensor]:
        return self.compute_loss(targets, head_outputs, anchors, self.match_by_iou(targets, anchors))

    def head_detections(self, head_outputs: Dict[str, Tensor], anchors: List[Tensor], features: List[Tensor],
                        image_sizes: List[Tuple[int, int]]) -> List[Dict[str, Tensor]]:
        return self.postprocess_detections(head_outputs, anchors, image_sizes)


class SSDFeatureExtractorVGG(nn.Module):
    """VGG-16 features for SSD: conv4_3 (L2-normalised, scaled by a learned ``scale_weight``), fc7, and extras.

    ``features`` is VGG up to conv4_3 (with maxpool3 in ceil mode so 300 gives 38x38);
    ``extra[0]`` runs pool4, conv5_x and the dilated fc6 / 1x1 fc7 (1024 channels); ``extra[1:]``
    are the 1x1-then-3x3 blocks conv8_2..conv11_2 (plus conv12_2 when ``highres``, for SSD512).
    Returns an ordered dict "0".."5" (or "6") of feature maps.
    """

    def __init__(self, backbone: nn.Sequential, highres: bool) -> None:
        super().__init__()
        pools = [i for i, layer in enumerate(backbone) if isinstance(layer, nn.MaxPool2d)]
        if len(pools) != 5:
            raise ValueError(f"expected VGG features with 5 max-pools; got {len(pools)} at {pools}.")
        maxpool3, maxpool4 = pools[2], pools[3]
        backbone[maxpool3].ceil_mode = True  # 75 -> 38, as in the paper
        self.scale_weight = nn.Parameter(torch.ones(512) * 20)
        self.features = nn.Sequential(*backbone[:maxpool4])  # up to conv4_3 + ReLU

        def block(in_channels: int, mid: int, out_channels: int, **conv: Any) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(in_channels, mid, kernel_size=1), nn.ReLU(inplace=True),
                                 nn.Conv2d(mid, out_channels, **conv), nn.ReLU(inplace=True))

        extra = nn.ModuleList([
            block(1024, 256, 512, kernel_size=3, padding=1, stride=2),  # conv8_2
            block(512, 128, 256, kernel_size=3, padding=1, stride=2),  # conv9_2
            block(256, 128, 256, kernel_size=3),  # conv10_2
            block(256, 128, 256, kernel_size=3),  # conv11_2
        ])
        if highres:
            extra.append(block(256, 128, 256, kernel_size=4))  # conv12_2 (SSD512)
        _xavier_init(extra)

        fc = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=False),  # pool5, stride 1
            nn.Conv2d(in_channels=512, out_channels=1024, kernel_size=3, padding=6, dilation=6),  # fc6, atrous
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels=1024, out_channels=1024, kernel_size=1),  # fc7
            nn.ReLU(inplace=True),
        )
        _xavier_init(fc)
        extra.insert(0, nn.Sequential(*backbone[maxpool4:-1], fc))  # pool4, conv5_x (the last pool is dropped)
        self.extra = extra

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        if not self.training:
            x = _channels_last_on_cpu(x)  # eval on the CPU: oneDNN's convs are faster in NHWC
        x = self.features(x)
        output = [self.scale_weight.view(1, -1, 1, 1) * F.normalize(x)]
        for block in self.extra:
            x = block(x)
            output.append(x)
        return OrderedDict([(str(i), v) for i, v in enumerate(output)])


def _vgg_extractor(backbone: VGG, highres: bool, trainable_layers: int) -> SSDFeatureExtractorVGG:
    """Freeze all but the last ``trainable_layers`` of VGG's 5 stages, then wrap it for SSD."""
    features = backbone.features
    stage_starts = [0] + [i for i, b in enumerate(features) if isinstance(b, nn.MaxPool2d)][:-1]
    num_stages = len(stage_starts)
    if not 0 <= trainable_layers <= num_stages:
        raise ValueError(f"trainable_layers should be in the range [0, {num_stages}]. Instead got {trainable_layers}")
    freeze_before = len(features) if trainable_layers == 0 else stage_starts[num_stages - trainable_layers]
    for layer in features[:freeze_before]:
        for parameter in layer.parameters():
            parameter.requires_grad_(False)
    return SSDFeatureExtractorVGG(features, highres)


@register_model(fixed_size=(300, 300), pretrained=SSD300_VGG16_Weights.COCO_V1,
                pretrained_backbone=VGG16_Weights.IMAGENET1K_FEATURES)
def ssd300_vgg16(*, weights: Any = None, progress: bool = True, num_classes: Optional[int] = None,
                 weights_backbone: Any = VGG16_Weights.IMAGENET1K_FEATURES,
                 trainable_backbone_layers: Optional[int] = None, **kwargs: Any) -> SSD:
    """SSD300 with a VGG-16 backbone (the paper's model), 300x300 input."""
    r = resolve_weights("ssd300_vgg16", weights, SSD300_VGG16_Weights, weights_backbone, VGG16_Weights, num_classes)
    trainable_backbone_layers = _validate_trainable_layers(r.is_trained, trainable_backbone_layers, 5, 4)
    backbone = _vgg_extractor(vgg16(weights=r.weights_backbone, progress=progress), False, trainable_backbone_layers)
    anchor_generator = DefaultBoxGenerator(
        [[2], [2, 3], [2, 3], [2, 3], [2], [2]],
        scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05],
        steps=[8, 16, 32, 64, 100, 300],
    )
    defaults = {
        # The VGG weights expect 0..255 inputs with the mean subtracted: undo ToTensor's scaling.
        "image_mean": [0.48235, 0.45882, 0.40784],
        "image_std": [1.0 / 255.0, 1.0 / 255.0, 1.0 / 255.0],
    }
    model = SSD(backbone, anchor_generator, (300, 300), r.num_classes, **{**defaults, **kwargs})
    return model if r.weights is None else load_weights(model, r.weights, progress=progress)
