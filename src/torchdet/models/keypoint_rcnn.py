"""Keypoint R-CNN (He et al., 2017): Faster R-CNN plus a head that predicts a heatmap per keypoint."""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple, Union

import torch.nn.functional as F
from torch import Tensor, nn

from torchdet.models.anchor_utils import AnchorGenerator
from torchdet.models.faster_rcnn import FasterRCNN
from torchdet.ops.poolers import MultiScaleRoIAlign
from torchdet.weights.backbone import ResNet50_Weights
from torchdet.weights.builder_support import load_weights, resolve_num_keypoints, resolve_weights
from torchdet.weights.detection import KeypointRCNN_ResNet50_FPN_Weights
from torchdet.weights.registry import register_model

__all__ = ["KeypointRCNN", "KeypointRCNNHeads", "KeypointRCNNPredictor", "keypointrcnn_resnet50_fpn"]

# In training, the short side is drawn from these per image; eval uses the last.
_DEFAULT_MIN_SIZES = (640, 672, 704, 736, 768, 800)


class KeypointRCNNHeads(nn.Sequential):
    """3x3 conv + ReLU layers on pooled RoI features: ``[R, in_channels, 14, 14]`` -> ``[R, layers[-1], 14, 14]``.

    Keys are ``{2i}.weight`` / ``{2i}.bias`` (the ReLUs sit at the odd indices).
    """

    def __init__(self, in_channels: int, layers: Sequence[int]) -> None:
        modules: List[nn.Module] = []
        previous = in_channels
        for channels in layers:
            modules.append(nn.Conv2d(previous, channels, 3, stride=1, padding=1))
            modules.append(nn.ReLU(inplace=True))
            previous = channels
        super().__init__(*modules)
        for layer in self.children():
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
                nn.init.constant_(layer.bias, 0)


class KeypointRCNNPredictor(nn.Module):
    """Keypoint heatmap logits: transposed conv (x2) then bilinear upsampling (x2).

    ``[R, in_channels, 14, 14]`` -> ``[R, num_keypoints, 56, 56]``.
    """

    def __init__(self, in_channels: int, num_keypoints: int) -> None:
        super().__init__()
        kernel = 4
        self.kps_score_lowres = nn.ConvTranspose2d(in_channels, num_keypoints, kernel, stride=2,
                                                   padding=kernel // 2 - 1)
        nn.init.kaiming_normal_(self.kps_score_lowres.weight, mode="fan_out", nonlinearity="relu")
        nn.init.constant_(self.kps_score_lowres.bias, 0)
        self.up_scale = 2
        self.out_channels = num_keypoints

    def forward(self, x: Tensor) -> Tensor:
        x = self.kps_score_lowres(x)
        return F.interpolate(x, scale_factor=float(self.up_scale), mode="bilinear", align_corners=False,
                             recompute_scale_factor=False)


class KeypointRCNN(FasterRCNN):
    """Keypoint R-CNN over any backbone with an ``out_channels`` attribute.

    Training targets also hold ``keypoints``: float ``[N, K, 3]`` (x, y, visibility; 0 = not
    labelled), one set per box; the losses gain ``loss_keypoint``. In eval each detection also
    gets ``keypoints`` ``[N, K, 3]`` (x, y, 1) in the original image's pixels and
    ``keypoints_scores`` ``[N, K]`` (heatmap logits at the peaks).

    Args (beyond :class:`FasterRCNN`'s, which all apply):
        min_size: default ``(640, 672, 704, 736, 768, 800)``, one drawn per image in training.
        keypoint_roi_pool: default ``MultiScaleRoIAlign`` on levels "0".."3", 14 x 14, sampling ratio 2.
        keypoint_head: default ``KeypointRCNNHeads`` with eight 512-channel convs.
        keypoint_predictor: default ``KeypointRCNNPredictor(512, num_keypoints)``.
        num_keypoints: keypoints per instance (default 17, COCO persons); give it or a
            ``keypoint_predictor``, not both.
    """

    def __init__(self, backbone: nn.Module, num_classes: Optional[int] = None,
                 # transform
                 min_size: Optional[Union[int, Sequence[int]]] = None, max_size: int = 1333,
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
                 # keypoint head
                 keypoint_roi_pool: Optional[MultiScaleRoIAlign] = None, keypoint_head: Optional[nn.Module] = None,
                 keypoint_predictor: Optional[nn.Module] = None, num_keypoints: Optional[int] = None,
                 **kwargs: Any) -> None:
        if not isinstance(keypoint_roi_pool, (MultiScaleRoIAlign, type(None))):
            raise TypeError(
                "keypoint_roi_pool should be of type MultiScaleRoIAlign or None instead of "
                f"{type(keypoint_roi_pool)}"
            )
        if min_size is None:
            min_size = _DEFAULT_MIN_SIZES
        if num_keypoints is not None:
            if keypoint_predictor is not None:
                raise ValueError("num_keypoints should be None when keypoint_predictor is specified")
        else:
            num_keypoints = 17

        out_channels = backbone.out_channels
        if keypoint_roi_pool is None:
            keypoint_roi_pool = MultiScaleRoIAlign(featmap_names=["0", "1", "2", "3"], output_size=14,
                                                   sampling_ratio=2)
        if keypoint_head is None:
            keypoint_head = KeypointRCNNHeads(out_channels, (512,) * 8)
        if keypoint_predictor is None:
            keypoint_predictor = KeypointRCNNPredictor(512, num_keypoints)

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
        self.roi_heads.keypoint_roi_pool = keypoint_roi_pool
        self.roi_heads.keypoint_head = keypoint_head
        self.roi_heads.keypoint_predictor = keypoint_predictor


@register_model(outputs=("boxes", "keypoints"), pretrained=KeypointRCNN_ResNet50_FPN_Weights.COCO_V1,
                pretrained_backbone=ResNet50_Weights.IMAGENET1K_V1)
def keypointrcnn_resnet50_fpn(*, weights: Optional[Any] = None, progress: bool = True,
                              num_classes: Optional[int] = None, num_keypoints: Optional[int] = None,
                              weights_backbone: Optional[Any] = ResNet50_Weights.IMAGENET1K_V1,
                              trainable_backbone_layers: Optional[int] = None, **kwargs: Any) -> KeypointRCNN:
    """Keypoint R-CNN with a ResNet-50-FPN backbone (He et al., 2017).

    ``num_classes`` includes the background (default 2: background and person); ``num_keypoints``
    defaults to 17 (COCO). ``trainable_backbone_layers`` (0..5) counts ResNet stages from the last;
    default 3 with pretrained weights, 5 without. Other keyword arguments go to :class:`KeypointRCNN`.
    """
    from torchdet.backbones.fpn import _backbone_norm_layer, _resnet_fpn_extractor, _validate_trainable_layers
    from torchdet.backbones.resnet import resnet50

    r = resolve_weights("keypointrcnn_resnet50_fpn", weights, KeypointRCNN_ResNet50_FPN_Weights, weights_backbone,
                        ResNet50_Weights, num_classes, default_num_classes=2)
    num_keypoints = resolve_num_keypoints(r.weights, num_keypoints)  # the weights' keypoint count, else 17
    trainable_backbone_layers = _validate_trainable_layers(r.is_trained, trainable_backbone_layers, 5, 3)
    backbone = resnet50(weights=r.weights_backbone, progress=progress, norm_layer=_backbone_norm_layer(r.is_trained))
    backbone = _resnet_fpn_extractor(backbone, trainable_backbone_layers)
    model = KeypointRCNN(backbone, r.num_classes, num_keypoints=num_keypoints, **kwargs)
    return model if r.weights is None else load_weights(model, r.weights, progress=progress)
