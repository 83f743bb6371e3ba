"""Mask R-CNN (He et al., 2017): Faster R-CNN plus a small FCN that predicts a mask per detection."""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from torch import Tensor, nn

from torchdet.models.anchor_utils import AnchorGenerator
from torchdet.models.faster_rcnn import (
    FasterRCNN,
    FastRCNNConvFCHead,
    _default_anchorgen,
)
from torchdet.models.rpn import RPNHead
from torchdet.ops.misc import Conv2dNormActivation
from torchdet.ops.poolers import MultiScaleRoIAlign
from torchdet.weights.backbone import ResNet50_Weights
from torchdet.weights.builder_support import load_weights, resolve_weights
from torchdet.weights.detection import MaskRCNN_ResNet50_FPN_V2_Weights, MaskRCNN_ResNet50_FPN_Weights
from torchdet.weights.registry import register_model

__all__ = ["MaskRCNN", "MaskRCNNHeads", "MaskRCNNPredictor", "maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2"]


class MaskRCNNHeads(nn.Sequential):
    """The mask head's FCN: 3x3 conv (+ norm) + ReLU blocks on pooled RoI features.

    ``[R, in_channels, 14, 14]`` -> ``[R, layers[-1], 14, 14]``. Keys are ``{i}.0.weight`` (conv)
    and ``{i}.1.*`` (norm, when given); checkpoints from before that layout
    (``mask_fcn{i+1}.weight``) load too.

    Args:
        in_channels: channels of the pooled features.
        layers: output channels of each block.
        dilation: dilation (and padding) of the convs.
        norm_layer: normalisation after each conv; ``None`` for none (then the convs have a bias).
    """

    _version = 2

    def __init__(self, in_channels: int, layers: Sequence[int], dilation: int,
                 norm_layer: Optional[Callable[..., nn.Module]] = None) -> None:
        blocks = []
        previous = in_channels
        for channels in layers:
            blocks.append(Conv2dNormActivation(previous, channels, kernel_size=3, stride=1, padding=dilation,
                                               dilation=dilation, norm_layer=norm_layer))
            previous = channels
        super().__init__(*blocks)
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)

    def _load_from_state_dict(self, state_dict: Dict[str, Tensor], prefix: str, local_metadata: Dict[str, Any],
                              strict: bool, missing_keys: List[str], unexpected_keys: List[str],
                              error_msgs: List[str]) -> None:
        version = local_metadata.get("version", None)
        if version is None or version < 2:
            # Version 1 named the convs mask_fcn1 .. mask_fcnN.
            for i in range(len(self)):
                for kind in ("weight", "bias"):
                    old_key = f"{prefix}mask_fcn{i + 1}.{kind}"
                    if old_key in state_dict:
                        state_dict[f"{prefix}{i}.0.{kind}"] = state_dict.pop(old_key)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)


class MaskRCNNPredictor(nn.Sequential):
    """Upsample x2 with a transposed conv, ReLU, then per-class mask logits.

    ``[R, in_channels, 14, 14]`` -> ``[R, num_classes, 28, 28]``.
    """

    def __init__(self, in_channels: int, dim_reduced: int, num_classes: int) -> None:
        super().__init__(OrderedDict([
            ("conv5_mask", nn.ConvTranspose2d(in_channels, dim_reduced, 2, 2, 0)),
            ("relu", nn.ReLU(inplace=True)),
            ("mask_fcn_logits", nn.Conv2d(dim_reduced, num_classes, 1, 1, 0)),
        ]))
        for name, param in self.named_parameters():
            if "weight" in name:
                nn.init.kaiming_normal_(param, mode="fan_out", nonlinearity="relu")


class MaskRCNN(FasterRCNN):
    """Mask R-CNN over any backbone with an ``out_channels`` attribute.

    Training targets also hold ``masks``: uint8 ``[N, H, W]``, one binary mask per box, at the
    image's resolution; the losses gain ``loss_mask``. In eval each detection also gets ``masks``:
    float ``[N, 1, H, W]`` probabilities in 0..1 at the original image size (threshold at 0.5 for
    binary masks).

    Args (beyond :class:`FasterRCNN`'s, which all apply):
        mask_roi_pool: pools RoI features for the mask head; default ``MultiScaleRoIAlign`` on
            levels "0".."3", 14 x 14, sampling ratio 2.
        mask_head: pooled features -> mask features; default ``MaskRCNNHeads`` with four 256-channel convs.
        mask_predictor: mask features -> per-class logits; default ``MaskRCNNPredictor(256, 256, num_classes)``.
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
                 # mask head
                 mask_roi_pool: Optional[MultiScaleRoIAlign] = None, mask_head: Optional[nn.Module] = None,
                 mask_predictor: Optional[nn.Module] = None,
                 **kwargs: Any) -> None:
        if not isinstance(mask_roi_pool, (MultiScaleRoIAlign, type(None))):
            raise TypeError(
                f"mask_roi_pool should be of type MultiScaleRoIAlign or None instead of {type(mask_roi_pool)}"
            )
        if num_classes is not None and mask_predictor is not None:
            raise ValueError("num_classes should be None when mask_predictor is specified")
        if num_classes is None and mask_predictor is None:
            raise ValueError("num_classes should not be None when mask_predictor is not specified")

        out_channels = backbone.out_channels
        if mask_roi_pool is None:
            mask_roi_pool = MultiScaleRoIAlign(featmap_names=["0", "1", "2", "3"], output_size=14, sampling_ratio=2)
        if mask_head is None:
            mask_head = MaskRCNNHeads(out_channels, (256, 256, 256, 256), 1)
        if mask_predictor is None:
            mask_predictor = MaskRCNNPredictor(256, 256, num_classes)

        super().__init__(
            backbone, num_classes,
            min_size=min_size, max_size=max_size, image_mean=image_mean, image_std=image_std,
            rpn_anchor_generator=rpn_anchor_generator, rpn_head=rpn_head,
            rpn_pre_nms_top_n_train=rpn_pre_nms_top_n_train, rpn_pre_nms_top_n_test=rpn_pre_nms_top_n_test,
            rpn_post_nms_top_n_train=rpn_post_nms_top_n_train, rpn_post_nms_top_n_test=rpn_post_nms_top_n_test,
            rpn_nms_thresh=rpn_nms_thresh, rpn_fg_iou_thresh=rpn_fg_iou_thresh,
            rpn_bg_iou_thresh=rpn_bg_iou_thresh, rpn_batch_size_per_image=rpn_batch_size_per_image,
            rpn_positive_fraction=rpn_positive_fraction, rpn_score_thresh=rpn_score_thresh,
            box_roi_pool=box_roi_pool, box_head=box_head, box_predictor=box_predictor,
            box_score_thresh=box_score_thresh, box_nms_thresh=box_nms_thresh,
            box_detections_per_img=box_detections_per_img, box_fg_iou_thresh=box_fg_iou_thresh,
            box_bg_iou_thresh=box_bg_iou_thresh, box_batch_size_per_image=box_batch_size_per_image,
            box_positive_fraction=box_positive_fraction, bbox_reg_weights=bbox_reg_weights,
            **kwargs,
        )
        self.roi_heads.mask_roi_pool = mask_roi_pool
        self.roi_heads.mask_head = mask_head
        self.roi_heads.mask_predictor = mask_predictor


# ---- builders -----------------------------------------------------------------------------------


@register_model(outputs=("boxes", "masks"), pretrained=MaskRCNN_ResNet50_FPN_Weights.COCO_V1,
                pretrained_backbone=ResNet50_Weights.IMAGENET1K_V1)
def maskrcnn_resnet50_fpn(*, weights: Optional[Any] = None, progress: bool = True,
                          num_classes: Optional[int] = None,
                          weights_backbone: Optional[Any] = ResNet50_Weights.IMAGENET1K_V1,
                          trainable_backbone_layers: Optional[int] = None, **kwargs: Any) -> MaskRCNN:
    """Mask R-CNN with a ResNet-50-FPN backbone (He et al., 2017).

    ``num_classes`` includes the background (default 91, COCO). ``trainable_backbone_layers``
    (0..5) counts ResNet stages from the last; default 3 with pretrained weights, 5 without.
    Other keyword arguments go to :class:`MaskRCNN`.
    """
    from torchdet.backbones.fpn import _backbone_norm_layer, _resnet_fpn_extractor, _validate_trainable_layers
    from torchdet.backbones.resnet import resnet50

    r = resolve_weights("maskrcnn_resnet50_fpn", weights, MaskRCNN_ResNet50_FPN_Weights,
                        weights_backbone, ResNet50_Weights, num_classes)
    trainable_backbone_layers = _validate_trainable_layers(r.is_trained, trainable_backbone_layers, 5, 3)
    backbone = resnet50(weights=r.weights_backbone, progress=progress, norm_layer=_backbone_norm_layer(r.is_trained))
    backbone = _resnet_fpn_extractor(backbone, trainable_backbone_layers)
    model = MaskRCNN(backbone, num_classes=r.num_classes, **kwargs)
    return model if r.weights is None else load_weights(model, r.weights, progress=progress)


@register_model(outputs=("boxes", "masks"), pretrained=MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1,
                pretrained_backbone=ResNet50_Weights.IMAGENET1K_V1)
def maskrcnn_resnet50_fpn_v2(*, weights: Optional[Any] = None, progress: bool = True,
                             num_classes: Optional[int] = None, weights_backbone: Optional[Any] = None,
                             trainable_backbone_layers: Optional[int] = None, **kwargs: Any) -> MaskRCNN:
    """Mask R-CNN v2 (Li et al., 2021): BatchNorm in the backbone, FPN, box and mask heads, a two-conv RPN head.

    As in torchvision, the backbone uses trainable ``nn.BatchNorm2d`` even with pretrained weights,
    and ``weights_backbone`` defaults to None.
    """
    from torchdet.backbones.fpn import _resnet_fpn_extractor, _validate_trainable_layers
    from torchdet.backbones.resnet import resnet50

    r = resolve_weights("maskrcnn_resnet50_fpn_v2", weights, MaskRCNN_ResNet50_FPN_V2_Weights,
                        weights_backbone, ResNet50_Weights, num_classes)
    trainable_backbone_layers = _validate_trainable_layers(r.is_trained, trainable_backbone_layers, 5, 3)
    backbone = resnet50(weights=r.weights_backbone, progress=progress)
    backbone = _resnet_fpn_extractor(backbone, trainable_backbone_layers, norm_layer=nn.BatchNorm2d)
    rpn_anchor_generator = _default_anchorgen()
    rpn_head = RPNHead(backbone.out_channels, rpn_anchor_generator.num_anchors_per_location()[0], conv_depth=2)
    box_head = FastRCNNConvFCHead((backbone.out_channels, 7, 7), [256, 256, 256, 256], [1024],
                                  norm_layer=nn.BatchNorm2d)
    mask_head = MaskRCNNHeads(backbone.out_channels, [256, 256, 256, 256], 1, norm_layer=nn.BatchNorm2d)
    model = MaskRCNN(backbone, num_classes=r.num_classes, rpn_anchor_generator=rpn_anchor_generator,
                     rpn_head=rpn_head, box_head=box_head, mask_head=mask_head, **kwargs)
    return model if r.weights is None else load_weights(model, r.weights, progress=progress)
