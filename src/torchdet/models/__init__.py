"""The detection zoo: torchvision's twelve builders, their model classes and parts, their weights enums and
the registry (``get_model("fasterrcnn_resnet50_fpn", weights="DEFAULT")``), with torchvision's names."""
# The families register their builders as they load, in torchvision's documentation order.
from torchdet.models.faster_rcnn import (
    FastRCNNConvFCHead,
    FastRCNNPredictor,
    FasterRCNN,
    TwoMLPHead,
    fasterrcnn_mobilenet_v3_large_320_fpn,
    fasterrcnn_mobilenet_v3_large_fpn,
    fasterrcnn_resnet50_fpn,
    fasterrcnn_resnet50_fpn_v2,
)
from torchdet.models.mask_rcnn import (
    MaskRCNN,
    MaskRCNNHeads,
    MaskRCNNPredictor,
    maskrcnn_resnet50_fpn,
    maskrcnn_resnet50_fpn_v2,
)
from torchdet.models.keypoint_rcnn import (
    KeypointRCNN,
    KeypointRCNNHeads,
    KeypointRCNNPredictor,
    keypointrcnn_resnet50_fpn,
)
from torchdet.models.retinanet import (
    RetinaNet,
    RetinaNetClassificationHead,
    RetinaNetHead,
    RetinaNetRegressionHead,
    retinanet_resnet50_fpn,
    retinanet_resnet50_fpn_v2,
)
from torchdet.models.fcos import FCOS, FCOSHead, fcos_resnet50_fpn
from torchdet.models.ssd import SSD, SSDHead, ssd300_vgg16
from torchdet.models.ssdlite import SSDLiteHead, ssdlite320_mobilenet_v3_large
from torchdet.models.anchor_utils import AnchorGenerator
from torchdet.models.box_coder import BoxCoder, BoxLinearCoder
from torchdet.models.default_boxes import DefaultBoxGenerator
from torchdet.models.generalized_rcnn import GeneralizedRCNN
from torchdet.models.image_list import ImageList
from torchdet.models.matcher import Matcher, SSDMatcher
from torchdet.models.roi_heads import RoIHeads
from torchdet.models.rpn import RegionProposalNetwork, RPNHead
from torchdet.models.sampler import BalancedPositiveNegativeSampler
from torchdet.models.transform import GeneralizedRCNNTransform
from torchdet.weights.backbone import MobileNet_V3_Large_Weights, ResNet50_Weights, VGG16_Weights
from torchdet.weights.detection import (
    FCOS_ResNet50_FPN_Weights,
    FasterRCNN_MobileNet_V3_Large_320_FPN_Weights,
    FasterRCNN_MobileNet_V3_Large_FPN_Weights,
    FasterRCNN_ResNet50_FPN_V2_Weights,
    FasterRCNN_ResNet50_FPN_Weights,
    KeypointRCNN_ResNet50_FPN_Weights,
    MaskRCNN_ResNet50_FPN_V2_Weights,
    MaskRCNN_ResNet50_FPN_Weights,
    RetinaNet_ResNet50_FPN_V2_Weights,
    RetinaNet_ResNet50_FPN_Weights,
    SSD300_VGG16_Weights,
    SSDLite320_MobileNet_V3_Large_Weights,
)
from torchdet.models.registry import get_model, get_model_builder, get_model_weights, get_weight, list_models

__all__ = [
    # builders
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "maskrcnn_resnet50_fpn",
    "maskrcnn_resnet50_fpn_v2",
    "keypointrcnn_resnet50_fpn",
    "retinanet_resnet50_fpn",
    "retinanet_resnet50_fpn_v2",
    "fcos_resnet50_fpn",
    "ssd300_vgg16",
    "ssdlite320_mobilenet_v3_large",
    # detection weights
    "FasterRCNN_ResNet50_FPN_Weights",
    "FasterRCNN_ResNet50_FPN_V2_Weights",
    "FasterRCNN_MobileNet_V3_Large_FPN_Weights",
    "FasterRCNN_MobileNet_V3_Large_320_FPN_Weights",
    "MaskRCNN_ResNet50_FPN_Weights",
    "MaskRCNN_ResNet50_FPN_V2_Weights",
    "KeypointRCNN_ResNet50_FPN_Weights",
    "RetinaNet_ResNet50_FPN_Weights",
    "RetinaNet_ResNet50_FPN_V2_Weights",
    "FCOS_ResNet50_FPN_Weights",
    "SSD300_VGG16_Weights",
    "SSDLite320_MobileNet_V3_Large_Weights",
    # backbone weights
    "ResNet50_Weights",
    "MobileNet_V3_Large_Weights",
    "VGG16_Weights",
    # registry
    "list_models",
    "get_model",
    "get_model_builder",
    "get_model_weights",
    "get_weight",
    # model classes
    "GeneralizedRCNN",
    "FasterRCNN",
    "MaskRCNN",
    "KeypointRCNN",
    "RetinaNet",
    "FCOS",
    "SSD",
    # heads and parts
    "AnchorGenerator",
    "BalancedPositiveNegativeSampler",
    "BoxCoder",
    "BoxLinearCoder",
    "DefaultBoxGenerator",
    "FCOSHead",
    "FastRCNNConvFCHead",
    "FastRCNNPredictor",
    "GeneralizedRCNNTransform",
    "ImageList",
    "KeypointRCNNHeads",
    "KeypointRCNNPredictor",
    "MaskRCNNHeads",
    "MaskRCNNPredictor",
    "Matcher",
    "RPNHead",
    "RegionProposalNetwork",
    "RetinaNetClassificationHead",
    "RetinaNetHead",
    "RetinaNetRegressionHead",
    "RoIHeads",
    "SSDHead",
    "SSDLiteHead",
    "SSDMatcher",
    "TwoMLPHead",
]
