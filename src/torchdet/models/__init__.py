"""The detection zoo: torchvision's twelve builders, their model classes and parts, with the same names."""
from torchdet.models.anchor_utils import AnchorGenerator
from torchdet.models.box_coder import BoxCoder, BoxLinearCoder
from torchdet.models.default_boxes import DefaultBoxGenerator
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
from torchdet.models.fcos import FCOS, FCOSHead, fcos_resnet50_fpn
from torchdet.models.generalized_rcnn import GeneralizedRCNN
from torchdet.models.image_list import ImageList
from torchdet.models.keypoint_rcnn import (
    KeypointRCNN,
    KeypointRCNNHeads,
    KeypointRCNNPredictor,
    keypointrcnn_resnet50_fpn,
)
from torchdet.models.mask_rcnn import MaskRCNN, MaskRCNNHeads, MaskRCNNPredictor, maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2
from torchdet.models.matcher import Matcher, SSDMatcher
from torchdet.models.retinanet import (
    RetinaNet,
    RetinaNetClassificationHead,
    RetinaNetHead,
    RetinaNetRegressionHead,
    retinanet_resnet50_fpn,
    retinanet_resnet50_fpn_v2,
)
from torchdet.models.roi_heads import RoIHeads
from torchdet.models.rpn import RegionProposalNetwork, RPNHead
from torchdet.models.sampler import BalancedPositiveNegativeSampler
from torchdet.models.ssd import SSD, SSDHead, ssd300_vgg16
from torchdet.models.ssdlite import SSDLiteHead, ssdlite320_mobilenet_v3_large
from torchdet.models.transform import GeneralizedRCNNTransform
