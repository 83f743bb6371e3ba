"""Faster R-CNN: the model class, its box heads, and the four torchvision builders."""
from __future__ import annotations

from typing import Any, List, Optional, Tuple, Type

import torch.nn.functional as F
from torch import Tensor, nn

from torchdet.models.anchor_utils import AnchorGenerator
from torchdet.models.generalized_rcnn import GeneralizedRCNN
from torchdet.models.one_stage import require_out_channels
from torchdet.models.roi_heads import RoIHeads
from torchdet.models.rpn import RegionProposalNetwork, RPNHead
from torchdet.models.transform import GeneralizedRCNNTransform
from torchdet.ops.misc import Conv2dNormActivation
from torchdet.ops.poolers import MultiScaleRoIAlign
from torchdet.weights._api import WeightsEnum
from torchdet.weights.backbone import MobileNet_V3_Large_Weights, ResNet50_Weights
from torchdet.weights.builder_support import load_weights, resolve_weights
from torchdet.weights.detection import (
    FasterRCNN_MobileNet_V3_Large_320_FPN_Weights,
    FasterRCNN_MobileNet_V3_Large_FPN_Weights,
    FasterRCNN_ResNet50_FPN_V2_Weights,
    FasterRCNN_ResNet50_FPN_Weights,
)
from torchdet.weights.presets import IMAGENET_MEAN, IMAGENET_STD
from torchdet.weights.registry import register_model

__all__ = [
    "FasterRCNN",
    "TwoMLPHead",
    "FastRCNNConvFCHead",
    "FastRCNNPredictor",
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
]

def _default_anchorgen() -> AnchorGenerator:
    """One anchor size per FPN level (32 ... 512) with three aspect ratios."""
    anchor_sizes = ((32,), (64,), (128,), (256,), (512,))
    aspect_ratios = ((0.5, 1.0, 2.0),) * len(anchor_sizes)
    return AnchorGenerator(anchor_sizes, aspect_ratios)


class TwoMLPHead(nn.Module):
    """Two fully connected layers with ReLU on flattened RoI features: ``[R, C, S, S]`` -> ``[R, D]``."""

    def __init__(self, in_channels: int, representation_size: int) -> None:
        super().__init__()
        self.fc6 = nn.Linear(in_channels, representation_size)
        self.fc7 = nn.Linear(representation_size, representation_size)

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(start_dim=1)
        x = F.relu(self.fc6(x))
        return F.relu(self.fc7(x))


class FastRCNNConvFCHead(nn.Sequential):
    """3x3 conv (+norm) + ReLU layers, flatten, then linear + ReLU layers (the v2 box head).

    Args:
        input_size: ``(C, H, W)`` of the pooled RoI features.
        conv_layers: output channels of each conv layer.
        fc_layers: output features of each linear layer.
        norm_layer: normalisation after each conv (``None``: none, the conv gets a bias).
    """

    def __init__(self, input_size: Tuple[int, int, int], conv_layers: List[int], fc_layers: List[int],
                 norm_layer: Optional[Any] = None) -> None:
        in_channels, in_height, in_width = input_size
        blocks: List[nn.Module] = []
        previous = in_channels
        for channels in conv_layers:
            blocks.append(Conv2dNormActivation(previous, channels, norm_layer=norm_layer))
            previous = channels
        blocks.append(nn.Flatten())
        previous = previous * in_height * in_width
        for features in fc_layers:
            blocks.append(nn.Linear(previous, features))
            blocks.append(nn.ReLU(inplace=True))
            previous = features
        super().__init__(*blocks)
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)


class FastRCNNPredictor(nn.Module):
    """Class logits ``[R, K]`` and per-class box deltas ``[R, K*4]`` from ``[R, D]`` (or ``[R, D, 1, 1]``)."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.cls_score = nn.Linear(in_channels, num_classes)
        self.bbox_pred = nn.Linear(in_channels, num_classes * 4)

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        if x.dim() == 4:
            if list(x.shape[2:]) != [1, 1]:
                raise ValueError(f"FastRCNNPredictor expects [R, D] or [R, D, 1, 1] features; got {list(x.shape)}.")
        x = x.flatten(start_dim=1)
        return self.cls_score(x), self.bbox_pred(x)


def _output_size(pool: nn.Module) -> int:
    size = pool.output_size
    return int(size[0]) if isinstance(size, (list, tuple)) else int(size)


class FasterRCNN(GeneralizedRCNN):
    """Faster R-CNN (Ren et al., 2015) over any backbone that has an ``out_channels`` attribute.

    Inputs are a list of float ``[3, H, W]`` images in 0..1 (or one ``[B, 3, H, W]`` tensor); in
    training, also one target dict per image with ``boxes`` ``[N, 4]`` (xyxy, float) and ``labels``
    ``[N]`` (int64). Training returns the loss dict (``loss_classifier``, ``loss_box_reg``,
    ``loss_objectness``, ``loss_rpn_box_reg``); eval returns one dict per image with ``boxes``,
    ``labels`` and ``scores``, in the original image's pixels.

    The parameters are torchvision's: the transform (``min_size``, ``max_size``, ``image_mean``,
    ``image_std``), the RPN (``rpn_*``), the second stage (``box_*``, ``bbox_reg_weights``).
    ``num_classes`` includes the background; give it or a ``box_predictor``, not both.
    """

    def __init__(self, backbone: nn.Module, num_classes: Optional[int] = None,
                 # transform
                 min_size: int = 800, max_size: int = 1333,
                 image_mean: Optional[List[float]] = None, image_std: Optional[List[float]] = None,
                 # RPN
                 rpn_anchor_generator: Optional[AnchorGenerator] = None, rpn_head: Optional[nn.Module] = None,
                 rpn_pre_nms_top_n_train: int = 2000, rpn_pre_nms_top_n_test: int = 1000,
                 rpn_post_nms_top_n_train: int = 2000, rpn_post_nms_top_n_test: int = 1000,
                 rpn_nms_thresh: float = 0.7, rpn_fg_iou_thresh: float = 0.7, rpn_bg_iou_thresh: float = 0.3,
                 rpn_batch_size_per_image: int = 256, rpn_positive_fraction: float = 0.5,
                 rpn_score_thresh: float = 0.0,
                 # box head
                 box_roi_pool: Optional[MultiScaleRoIAlign] = None, box_head: Optional[nn.Module] = None,
                 box_predictor: Optional[nn.Module] = None, box_score_thresh: float = 0.05,
                 box_nms_thresh: float = 0.5, box_detections_per_img: int = 100,
                 box_fg_iou_thresh: float = 0.5, box_bg_iou_thresh: float = 0.5,
                 box_batch_size_per_image: int = 512, box_positive_fraction: float = 0.25,
                 bbox_reg_weights: Optional[Tuple[float, float, float, float]] = None,
                 **kwargs: Any) -> None:
        require_out_channels(backbone)
        if not isinstance(rpn_anchor_generator, (AnchorGenerator, type(None))):
            raise TypeError(
                "rpn_anchor_generator should be of type AnchorGenerator or None "
                f"instead of {type(rpn_anchor_generator)}"
            )
        if not isinstance(box_roi_pool, (MultiScaleRoIAlign, type(None))):
            raise TypeError(
                f"box_roi_pool should be of type MultiScaleRoIAlign or None instead of {type(box_roi_pool)}"
            )
        if num_classes is not None:
            if box_predictor is not None:
                raise ValueError("num_classes should be None when box_predictor is specified")
        elif box_predictor is None:
            raise ValueError("num_classes should not be None when box_predictor is not specified")

        out_channels = backbone.out_channels
        if rpn_anchor_generator is None:
            rpn_anchor_generator = _default_anchorgen()
        if rpn_head is None:
            rpn_head = RPNHead(out_channels, rpn_anchor_generator.num_anchors_per_location()[0])
        rpn = RegionProposalNetwork(
            rpn_anchor_generator, rpn_head, rpn_fg_iou_thresh, rpn_bg_iou_thresh,
            rpn_batch_size_per_image, rpn_positive_fraction,
            dict(training=rpn_pre_nms_top_n_train, testing=rpn_pre_nms_top_n_test),
            dict(training=rpn_post_nms_top_n_train, testing=rpn_post_nms_top_n_test),
            rpn_nms_thresh, score_thresh=rpn_score_thresh,
        )

        if box_roi_pool is None:
            box_roi_pool = MultiScaleRoIAlign(featmap_names=["0", "1", "2", "3"], output_size=7, sampling_ratio=2)
        if box_head is None:
            resolution = _output_size(box_roi_pool)
            box_head = TwoMLPHead(out_channels * resolution**2, 1024)
        if box_predictor is None:
            box_predictor = FastRCNNPredictor(1024, num_classes)
        roi_heads = RoIHeads(
            box_roi_pool, box_head, box_predictor, box_fg_iou_thresh, box_bg_iou_thresh,
            box_batch_size_per_image, box_positive_fraction, bbox_reg_weights,
            box_score_thresh, box_nms_thresh, box_detections_per_img,
        )

        transform = GeneralizedRCNNTransform(
            min_size, max_size,
            list(IMAGENET_MEAN) if image_mean is None else image_mean,
            list(IMAGENET_STD) if image_std is None else image_std,
            **kwargs,
        )
        super().__init__(backbone, rpn, roi_heads, transform)


# ---- builders -----------------------------------------------------------------------------------


@register_model(pretrained=FasterRCNN_ResNet50_FPN_Weights.COCO_V1,
                pretrained_backbone=ResNet50_Weights.IMAGENET1K_V1)
def fasterrcnn_resnet50_fpn(*, weights: Optional[Any] = None, progress: bool = True,
                            num_classes: Optional[int] = None,
                            weights_backbone: Optional[Any] = ResNet50_Weights.IMAGENET1K_V1,
                            trainable_backbone_layers: Optional[int] = None, **kwargs: Any) -> FasterRCNN:
    """Faster R-CNN with a ResNet-50-FPN backbone (Ren et al., 2015; Lin et al., 2017).

    ``trainable_backbone_layers`` (0..5) counts ResNet stages from the last; default 3 with
    pretrained weights, 5 without. Other keyword arguments go to :class:`FasterRCNN`.
    """
    from torchdet.backbones.fpn import _backbone_norm_layer, _resnet_fpn_extractor, _validate_trainable_layers
    from torchdet.backbones.resnet import resnet50

    r = resolve_weights("fasterrcnn_resnet50_fpn", weights, FasterRCNN_ResNet50_FPN_Weights,
                        weights_backbone, ResNet50_Weights, num_classes)
    trainable_backbone_layers = _validate_trainable_layers(r.is_trained, trainable_backbone_layers, 5, 3)
    backbone = resnet50(weights=r.weights_backbone, progress=progress, norm_layer=_backbone_norm_layer(r.is_trained))
    backbone = _resnet_fpn_extractor(backbone, trainable_backbone_layers)
    model = FasterRCNN(backbone, num_classes=r.num_classes, **kwargs)
    return model if r.weights is None else load_weights(model, r.weights, progress=progress)


@register_model(pretrained=FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1,
                pretrained_backbone=ResNet50_Weights.IMAGENET1K_V1)
def fasterrcnn_resnet50_fpn_v2(*, weights: Optional[Any] = None, progress: bool = True,
                               num_classes: Optional[int] = None, weights_backbone: Optional[Any] = None,
                               trainable_backbone_layers: Optional[int] = None, **kwargs: Any) -> FasterRCNN:
    """Faster R-CNN v2 (Li et al., 2021, "Benchmarking detection transfer learning with ViTs"):
    BatchNorm in the backbone and FPN, a two-conv RPN head and a 4-conv + 1-fc box head.

    As in torchvision, the backbone uses trainable ``nn.BatchNorm2d`` even with pretrained weights,
    and ``weights_backbone`` defaults to None.
    """
    from torchdet.backbones.fpn import _resnet_fpn_extractor, _validate_trainable_layers
    from torchdet.backbones.resnet import resnet50

    r = resolve_weights("fasterrcnn_resnet50_fpn_v2", weights, FasterRCNN_ResNet50_FPN_V2_Weights,
                        weights_backbone, ResNet50_Weights, num_classes)
    trainable_backbone_layers = _validate_trainable_layers(r.is_trained, trainable_backbone_layers, 5, 3)
    backbone = resnet50(weights=r.weights_backbone, progress=progress)
    backbone = _resnet_fpn_extractor(backbone, trainable_backbone_layers, norm_layer=nn.BatchNorm2d)
    rpn_anchor_generator = _default_anchorgen()
    rpn_head = RPNHead(backbone.out_channels, rpn_anchor_generator.num_anchors_per_location()[0], conv_depth=2)
    box_head = FastRCNNConvFCHead((backbone.out_channels, 7, 7), [256, 256, 256, 256], [1024],
                                  norm_layer=nn.BatchNorm2d)
    model = FasterRCNN(backbone, num_classes=r.num_classes, rpn_anchor_generator=rpn_anchor_generator,
                       rpn_head=rpn_head, box_head=box_head, **kwargs)
    return model if r.weights is None else load_weights(model, r.weights, progress=progress)


def _fasterrcnn_mobilenet_v3_large_fpn(name: str, weights_enum: Type[WeightsEnum], *, weights: Optional[Any],
                                       progress: bool, num_classes: Optional[int], weights_backbone: Optional[Any],
                                       trainable_backbone_layers: Optional[int], **kwargs: Any) -> FasterRCNN:
    from torchdet.backbones.fpn import _backbone_norm_layer, _mobilenet_extractor, _validate_trainable_layers
    from torchdet.backbones.mobilenet_v3 import mobilenet_v3_large

    r = resolve_weights(name, weights, weights_enum, weights_backbone, MobileNet_V3_Large_Weights, num_classes)
    trainable_backbone_layers = _validate_trainable_layers(r.is_trained, trainable_backbone_layers, 6, 3)
    backbone = mobilenet_v3_large(weights=r.weights_backbone, progress=progress,
                                  norm_layer=_backbone_norm_layer(r.is_trained))
    backbone = _mobilenet_extractor(backbone, True, trainable_backbone_layers)
    anchor_sizes = ((32, 64, 128, 256, 512),) * 3
    aspect_ratios = ((0.5, 1.0, 2.0),) * len(anchor_sizes)
    model = FasterRCNN(backbone, r.num_classes, rpn_anchor_generator=AnchorGenerator(anchor_sizes, aspect_ratios),
                       **kwargs)
    return model if r.weights is None else load_weights(model, r.weights, progress=progress)


@register_model(pretrained=FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1,
                pretrained_backbone=MobileNet_V3_Large_Weights.IMAGENET1K_V1)
def fasterrcnn_mobilenet_v3_large_fpn(*, weights: Optional[Any] = None, progress: bool = True,
                                      num_classes: Optional[int] = None,
                                      weights_backbone: Optional[Any] = MobileNet_V3_Large_Weights.IMAGENET1K_V1,
                                      trainable_backbone_layers: Optional[int] = None,
                                      **kwargs: Any) -> FasterRCNN:
    """Faster R-CNN with a MobileNetV3-Large FPN backbone, for high-resolution inputs.

    ``trainable_backbone_layers`` is 0..6 (default 3 with pretrained weights, 6 without);
    ``rpn_score_thresh`` defaults to 0.05.
    """
    kwargs = {"rpn_score_thresh": 0.05, **kwargs}
    return _fasterrcnn_mobilenet_v3_large_fpn(
        "fasterrcnn_mobilenet_v3_large_fpn", FasterRCNN_MobileNet_V3_Large_FPN_Weights, weights=weights,
        progress=progress, num_classes=num_classes, weights_backbone=weights_backbone,
        trainable_backbone_layers=trainable_backbone_layers, **kwargs)


@register_model(pretrained=FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.COCO_V1,
                pretrained_backbone=MobileNet_V3_Large_Weights.IMAGENET1K_V1)
def fasterrcnn_mobilenet_v3_large_320_fpn(*, weights: Optional[Any] = None, progress: bool = True,
                                          num_classes: Optional[int] = None,
                                          weights_backbone: Optional[Any] = MobileNet_V3_Large_Weights.IMAGENET1K_V1,
                                          trainable_backbone_layers: Optional[int] = None,
                                          **kwargs: Any) -> FasterRCNN:
    """Faster R-CNN with a MobileNetV3-Large FPN backbone tuned for mobile: 320 px inputs, 150 proposals."""
    kwargs = {"min_size": 320, "max_size": 640, "rpn_pre_nms_top_n_test": 150, "rpn_post_nms_top_n_test": 150,
              "rpn_score_thresh": 0.05, **kwargs}
    return _fasterrcnn_mobilenet_v3_large_fpn(
        "fasterrcnn_mobilenet_v3_large_320_fpn", FasterRCNN_MobileNet_V3_Large_320_FPN_Weights, weights=weights,
        progress=progress, num_classes=num_classes, weights_backbone=weights_backbone,
        trainable_backbone_layers=trainable_backbone_layers, **kwargs)
