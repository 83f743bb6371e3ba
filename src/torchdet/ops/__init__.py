"""Detection ops in pure PyTorch: box maths, NMS, RoI pooling, deformable convolution, FPN,
regularisers and the small layers the models share (torchvision.ops' names and signatures)."""
from torchdet.ops.boxes import (
    box_area,
    box_convert,
    box_iou,
    clip_boxes_to_image,
    complete_box_iou,
    distance_box_iou,
    generalized_box_iou,
    masks_to_boxes,
    remove_small_boxes,
)
from torchdet.ops.deform_conv import DeformConv2d, deform_conv2d
from torchdet.ops.drop_block import DropBlock2d, DropBlock3d, drop_block2d, drop_block3d
from torchdet.ops.feature_pyramid_network import (
    ExtraFPNBlock,
    FeaturePyramidNetwork,
    LastLevelMaxPool,
    LastLevelP6P7,
)
from torchdet.ops.iou_losses import complete_box_iou_loss, distance_box_iou_loss
from torchdet.ops.losses import generalized_box_iou_loss, sigmoid_focal_loss
from torchdet.ops.misc import (
    MLP,
    Conv2dNormActivation,
    Conv3dNormActivation,
    FrozenBatchNorm2d,
    Permute,
    SqueezeExcitation,
)
from torchdet.ops.nms import batched_nms, batched_nms_top, nms
from torchdet.ops.poolers import MultiScaleRoIAlign
from torchdet.ops.ps_roi_align import PSRoIAlign, ps_roi_align
from torchdet.ops.ps_roi_pool import PSRoIPool, ps_roi_pool
from torchdet.ops.roi_align import RoIAlign, roi_align
from torchdet.ops.roi_pool import RoIPool, roi_pool
from torchdet.ops.stochastic_depth import StochasticDepth, stochastic_depth

__all__ = [
    "box_area", "box_convert", "box_iou", "clip_boxes_to_image", "generalized_box_iou",
    "distance_box_iou", "complete_box_iou", "masks_to_boxes", "remove_small_boxes",
    "nms", "batched_nms", "batched_nms_top",
    "roi_align", "RoIAlign", "MultiScaleRoIAlign", "roi_pool", "RoIPool",
    "ps_roi_align", "PSRoIAlign", "ps_roi_pool", "PSRoIPool", "deform_conv2d", "DeformConv2d",
    "sigmoid_focal_loss", "generalized_box_iou_loss", "distance_box_iou_loss", "complete_box_iou_loss",
    "drop_block2d", "drop_block3d", "DropBlock2d", "DropBlock3d", "stochastic_depth", "StochasticDepth",
    "FrozenBatchNorm2d", "Conv2dNormActivation", "Conv3dNormActivation", "SqueezeExcitation", "MLP", "Permute",
    "FeaturePyramidNetwork", "ExtraFPNBlock", "LastLevelMaxPool", "LastLevelP6P7",
]
