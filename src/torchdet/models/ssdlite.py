"""SSDlite (Sandler et al., 2018, MobileNetV2 paper, section 6.2) with a MobileNetV3-Large backbone.

SSD with every 3x3 conv of the heads and extra layers replaced by a depthwise 3x3 conv
(+ BN + ReLU6) and a 1x1 conv. Following the MobileNetV3 paper (section 6.3), the first
feature map is taken at the expansion layer of the C4 block (before its stride) and the
second at the end of the backbone; four extra blocks halve the resolution down to 1x1.

Module names, defaults and numerics follow torchvision's ``torchvision.models.detection.ssdlite``.
"""
from __future__ import annotations

from collections import OrderedDict
from functools import partial
from typing import Any, Callable, Dict, List, Optional

from torch import Tensor, nn

from torchdet.backbones.fpn import _channels_last_on_cpu, _validate_trainable_layers
from torchdet.backbones.mobilenet_v3 import MobileNetV3, mobilenet_v3_large
from torchdet.models.default_boxes import DefaultBoxGenerator
from torchdet.models.ssd import SSD, SSDScoringHead, retrieve_out_channels
from torchdet.ops.misc import Conv2dNormActivation
from torchdet.weights.backbone import MobileNet_V3_Large_Weights
from torchdet.weights.builder_support import load_weights, resolve_weights
from torchdet.weights.detection import SSDLite320_MobileNet_V3_Large_Weights
from torchdet.weights.registry import register_model

__all__ = [
    "SSDLiteHead",
    "SSDLiteClassificationHead",
    "SSDLiteRegressionHead",
    "SSDLiteFeatureExtractorMobileNet",
    "ssdlite320_mobilenet_v3_large",
]

NormLayer = Callable[..., nn.Module]


def _prediction_block(in_channels: int, out_channels: int, kernel_size: int, norm_layer: NormLayer) -> nn.Sequential:
    """Depthwise ``kernel_size`` conv + norm + ReLU6, then a 1x1 conv (with bias) to ``out_channels``."""
    return nn.Sequential(
        Conv2dNormActivation(in_channels, in_channels, kernel_size=kernel_size, groups=in_channels,
                             norm_layer=norm_layer, activation_layer=nn.ReLU6),
        nn.Conv2d(in_channels, out_channels, 1),
    )


def _extra_block(in_channels: int, out_channels: int, norm_layer: NormLayer) -> nn.Sequential:
    """1x1 to half of ``out_channels``, depthwise 3x3 stride 2, 1x1 to ``out_channels``; each + norm + ReLU6."""
    mid = out_channels // 2
    return nn.Sequential(
        Conv2dNormActivation(in_channels, mid, kernel_size=1, norm_layer=norm_layer, activation_layer=nn.ReLU6),
        Conv2dNormActivation(mid, mid, kernel_size=3, stride=2, groups=mid, norm_layer=norm_layer,
                             activation_layer=nn.ReLU6),
        Conv2dNormActivation(mid, out_channels, kernel_size=1, norm_layer=norm_layer, activation_layer=nn.ReLU6),
    )


def _normal_init(module: nn.Module) -> None:
    """N(0, 0.03) weights and zero biases for every conv in ``module``."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.normal_(layer.weight, mean=0.0, std=0.03)
            if layer.bias is not None:
                nn.init.constant_(layer.bias, 0.0)


class SSDLiteClassificationHead(SSDScoringHead):
    """A depthwise-separable prediction block per feature map giving ``num_classes`` logits per default box."""

    def __init__(self, in_channels: List[int], num_anchors: List[int], num_classes: int,
                 norm_layer: NormLayer) -> None:
        cls_logits = nn.ModuleList(
            _prediction_block(channels, num_classes * anchors, 3, norm_layer)
            for channels, anchors in zip(in_channels, num_anchors)
        )
        _normal_init(cls_logits)
        super().__init__(cls_logits, num_classes)


class SSDLiteRegressionHead(SSDScoringHead):
    """A depthwise-separable prediction block per feature map giving 4 box deltas per default box."""

    def __init__(self, in_channels: List[int], num_anchors: List[int], norm_layer: NormLayer) -> None:
        bbox_reg = nn.ModuleList(
            _prediction_block(channels, 4 * anchors, 3, norm_layer)
            for channels, anchors in zip(in_channels, num_anchors)
        )
        _normal_init(bbox_reg)
        super().__init__(bbox_reg, 4)


class SSDLiteHead(nn.Module):
    """Returns ``{"bbox_regression": [N, M, 4], "cls_logits": [N, M, num_classes]}``."""

    def __init__(self, in_channels: List[int], num_anchors: List[int], num_classes: int,
                 norm_layer: NormLayer) -> None:
        super().__init__()
        self.classification_head = SSDLiteClassificationHead(in_channels, num_anchors, num_classes, norm_layer)
        self.regression_head = SSDLiteRegressionHead(in_channels, num_anchors, norm_layer)

    def forward(self, x: List[Tensor]) -> Dict[str, Tensor]:
        return {"bbox_regression": self.regression_head(x), "cls_logits": self.classification_head(x)}


class SSDLiteFeatureExtractorMobileNet(nn.Module):
    """MobileNet features for SSDlite: C4's expansion output, the backbone's output, and 4 extra blocks.

    Args:
        backbone: the MobileNet ``features`` Sequential.
        c4_pos: index of the strided block starting C4 (its expansion layer ends ``features[0]``).
        norm_layer: normalisation of the extra blocks.
        width_mult, min_depth: scale the extra blocks' widths (512, 256, 256, 128), at least ``min_depth``.
    """

    def __init__(self, backbone: nn.Module, c4_pos: int, norm_layer: NormLayer, width_mult: float = 1.0,
                 min_depth: int = 16) -> None:
        super().__init__()
        if backbone[c4_pos].use_res_connect:
            raise ValueError("backbone[c4_pos].use_res_connect should be False")
        c4 = backbone[c4_pos]
        self.features = nn.Sequential(
            nn.Sequential(*backbone[:c4_pos], c4.block[0]),  # from the start to C4's expansion layer
            nn.Sequential(c4.block[1:], *backbone[c4_pos + 1:]),  # from C4's depthwise conv to the end
        )

        def depth(d: int) -> int:
            return max(min_depth, int(d * width_mult))

        self.extra = nn.ModuleList([
            _extra_block(backbone[-1].out_channels, depth(512), norm_layer),
            _extra_block(depth(512), depth(256), norm_layer),
            _extra_block(depth(256), depth(256), norm_layer),
            _extra_block(depth(256), depth(128), norm_layer),
        ])
        _normal_init(self.extra)

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        if not self.training:
            x = _channels_last_on_cpu(x)  # eval on the CPU: oneDNN's convs are faster in NHWC
        output = []
        for block in self.features:
            x = block(x)
            output.append(x)
        for block in self.extra:
            x = block(x)
            output.append(x)
        return OrderedDict([(str(i), v) for i, v in enumerate(output)])


def _mobilenet_extractor(backbone: MobileNetV3, trainable_layers: int,
                         norm_layer: NormLayer) -> SSDLiteFeatureExtractorMobileNet:
    """Freeze all but the last ``trainable_layers`` of the backbone's stages, then wrap it for SSDlite."""
    features = backbone.features
    # Stage starts: the first conv, every strided block (C1..C4) and the last conv (C5).
    stage_indices = [0] + [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)] + [len(features) - 1]
    num_stages = len(stage_indices)
    if not 0 <= trainable_layers <= num_stages:
        raise ValueError(f"trainable_layers should be in the range [0, {num_stages}], instead got {trainable_layers}")
    freeze_before = len(features) if trainable_layers == 0 else stage_indices[num_stages - trainable_layers]
    for layer in features[:freeze_before]:
        for parameter in layer.parameters():
            parameter.requires_grad_(False)
    return SSDLiteFeatureExtractorMobileNet(features, stage_indices[-2], norm_layer)


@register_model(fixed_size=(320, 320), pretrained=SSDLite320_MobileNet_V3_Large_Weights.COCO_V1,
                pretrained_backbone=MobileNet_V3_Large_Weights.IMAGENET1K_V1)
def ssdlite320_mobilenet_v3_large(*, weights: Any = None, progress: bool = True, num_classes: Optional[int] = None,
                                  weights_backbone: Any = MobileNet_V3_Large_Weights.IMAGENET1K_V1,
                                  trainable_backbone_layers: Optional[int] = None,
                                  norm_layer: Optional[NormLayer] = None, **kwargs: Any) -> SSD:
    """SSDlite320 with a MobileNetV3-Large backbone, 320x320 input.

    The backbone's last stage is halved (reduced tail) unless ImageNet backbone weights are loaded:
    with ``weights`` (which ignore ``weights_backbone``) or ``weights_backbone=None`` it is reduced.
    """
    r = resolve_weights("ssdlite320_mobilenet_v3_large", weights, SSDLite320_MobileNet_V3_Large_Weights,
                        weights_backbone, MobileNet_V3_Large_Weights, num_classes)
    weights_backbone = r.weights_backbone
    trainable_backbone_layers = _validate_trainable_layers(r.is_trained, trainable_backbone_layers, 6, 6)
    # Table 6 of the MobileNetV3 paper: halve the last stage when no ImageNet weights are used.
    reduce_tail = weights_backbone is None
    if norm_layer is None:
        norm_layer = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
    # As torchvision does, kwargs also reach the backbone (which reads width_mult, dilated, ... and ignores the rest).
    backbone = mobilenet_v3_large(weights=weights_backbone, progress=progress, norm_layer=norm_layer,
                                  reduced_tail=reduce_tail, **kwargs)
    if weights_backbone is None:
        _normal_init(backbone)  # SSDlite's initialisation when not starting from ImageNet
    backbone = _mobilenet_extractor(backbone, trainable_backbone_layers, norm_layer)

    size = (320, 320)
    anchor_generator = DefaultBoxGenerator([[2, 3] for _ in range(6)], min_ratio=0.2, max_ratio=0.95)
    out_channels = retrieve_out_channels(backbone, size)
    num_anchors = anchor_generator.num_anchors_per_location()
    if len(out_channels) != len(anchor_generator.aspect_ratios):
        raise ValueError(
            f"The backbone gives {len(out_channels)} feature maps but the anchor generator has "
            f"{len(anchor_generator.aspect_ratios)} aspect-ratio lists."
        )
    defaults = {
        "score_thresh": 0.001,
        "nms_thresh": 0.55,
        "detections_per_img": 300,
        "topk_candidates": 300,
        # MobileNet expects inputs in [-1, 1].
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
    }
    head = SSDLiteHead(out_channels, num_anchors, r.num_classes, norm_layer)
    model = SSD(backbone, anchor_generator, size, r.num_classes, head=head, **{**defaults, **kwargs})
    return model if r.weights is None else load_weights(model, r.weights, progress=progress)
