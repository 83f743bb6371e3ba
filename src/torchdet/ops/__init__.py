"""Detection ops in pure PyTorch: box maths, NMS, RoIAlign, FPN and the small layers the models share."""
from torchdet.ops.boxes import (
    box_area,
    box_convert,
    box_iou,
    clip_boxes_to_image,
    generalized_box_iou,
    masks_to_boxes,
    remove_small_boxes,
)
from torchdet.ops.feature_pyramid_network import (
    ExtraFPNBlock,
    FeaturePyramidNetwork,
    LastLevelMaxPool,
    LastLevelP6P7,
)
from torchdet.ops.losses import generalized_box_iou_loss, sigmoid_focal_loss
from torchdet.ops.misc import Conv2dNormActivation, FrozenBatchNorm2d, SqueezeExcitation
from torchdet.ops.nms import batched_nms, batched_nms_top, nms
from torchdet.ops.poolers import MultiScaleRoIAlign
from torchdet.ops.roi_align import RoIAlign, roi_align

__all__ = [
    "box_area", "box_convert", "box_iou", "clip_boxes_to_image", "generalized_box_iou",
    "masks_to_boxes", "remove_small_boxes",
    "nms", "batched_nms", "batched_nms_top",
    "roi_align", "RoIAlign", "MultiScaleRoIAlign",
    "sigmoid_focal_loss", "generalized_box_iou_loss",
    "FrozenBatchNorm2d", "Conv2dNormActivation", "SqueezeExcitation",
    "FeaturePyramidNetwork", "ExtraFPNBlock", "LastLevelMaxPool", "LastLevelP6P7",
]
