"""Classification backbones with torchvision's module names, and their FPN wrappers for detection."""
from torchdet.backbones.fpn import BackboneWithFPN, mobilenet_backbone, resnet_fpn_backbone
from torchdet.backbones.intermediate_layers import IntermediateLayerGetter
from torchdet.backbones.mobilenet_v2 import MobileNetV2, mobilenet_v2
from torchdet.backbones.mobilenet_v3 import MobileNetV3, mobilenet_v3_large, mobilenet_v3_small
from torchdet.backbones.resnet import (
    BasicBlock,
    Bottleneck,
    ResNet,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    resnet152,
    resnext50_32x4d,
    resnext101_32x8d,
    wide_resnet50_2,
    wide_resnet101_2,
)
from torchdet.backbones.vgg import VGG, vgg16, vgg16_bn

__all__ = [
    "BackboneWithFPN", "resnet_fpn_backbone", "mobilenet_backbone", "IntermediateLayerGetter",
    "MobileNetV2", "mobilenet_v2", "MobileNetV3", "mobilenet_v3_large", "mobilenet_v3_small",
    "ResNet", "BasicBlock", "Bottleneck", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "resnext50_32x4d", "resnext101_32x8d", "wide_resnet50_2", "wide_resnet101_2",
    "VGG", "vgg16", "vgg16_bn",
]
