"""torchvision's registry API on the model registry: list_models / get_model / get_model_weights / get_weight."""
from __future__ import annotations

import importlib

import pytest

from torchdet.weights import registry
from torchdet.weights.backbone import MobileNet_V3_Large_Weights, ResNet50_Weights, VGG16_Weights
from torchdet.weights.detection import (
    FasterRCNN_ResNet50_FPN_Weights,
    KeypointRCNN_ResNet50_FPN_Weights,
    SSDLite320_MobileNet_V3_Large_Weights,
)

DETECTION = [
    "fasterrcnn_mobilenet_v3_large_320_fpn", "fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2", "fcos_resnet50_fpn", "keypointrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn",
    "maskrcnn_resnet50_fpn_v2", "retinanet_resnet50_fpn", "retinanet_resnet50_fpn_v2", "ssd300_vgg16",
    "ssdlite320_mobilenet_v3_large",
]


def test_list_models() -> None:
    assert registry.list_models(module="torchdet.models") == DETECTION
    assert registry.list_models(module=importlib.import_module("torchdet.models")) == DETECTION
    assert registry.list_models(module="torchdet.backbones") == ["mobilenet_v3_large", "resnet50", "vgg16"]
    assert registry.list_models() == sorted(DETECTION + ["mobilenet_v3_large", "resnet50", "vgg16"])
    assert registry.list_models(include="*rcnn*", exclude=["*mobilenet*", "*v2"]) == [
        "fasterrcnn_resnet50_fpn", "keypointrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn"]


def test_get_model_weights_by_name() -> None:
    assert registry.get_model_weights("fasterrcnn_resnet50_fpn") is FasterRCNN_ResNet50_FPN_Weights
    assert registry.get_model_weights("KeypointRCNN_ResNet50_FPN".lower()) is KeypointRCNN_ResNet50_FPN_Weights
    assert registry.get_model_weights("resnet50") is ResNet50_Weights
    assert registry.get_model_weights("mobilenet_v3_large") is MobileNet_V3_Large_Weights
    assert registry.get_model_weights("vgg16") is VGG16_Weights
    for name in registry.list_models():
        assert registry.get_model_weights(name).DEFAULT is not None


def test_get_model_weights_by_builder() -> None:
    def ssdlite320_mobilenet_v3_large() -> None:  # stands in for the builder: looked up by __name__
        pass

    assert registry.get_model_weights(ssdlite320_mobilenet_v3_large) is SSDLite320_MobileNet_V3_Large_Weights


def test_get_weight() -> None:
    assert registry.get_weight("FasterRCNN_ResNet50_FPN_Weights.COCO_V1") is FasterRCNN_ResNet50_FPN_Weights.COCO_V1
    assert registry.get_weight("FasterRCNN_ResNet50_FPN_Weights.DEFAULT") is FasterRCNN_ResNet50_FPN_Weights.COCO_V1
    assert registry.get_weight("KeypointRCNN_ResNet50_FPN_Weights.COCO_LEGACY").file_name == \
        "keypointrcnn_resnet50_fpn_coco-9f466800.pth"
    assert registry.get_weight("VGG16_Weights.IMAGENET1K_FEATURES") is VGG16_Weights.IMAGENET1K_FEATURES


@pytest.mark.parametrize("name, pattern", [
    ("COCO_V1", "EnumName.MEMBER"),
    ("Nope_Weights.COCO_V1", "unknown weights enum 'Nope_Weights'"),
    ("FasterRCNN_ResNet50_FPN_Weights.COCO_V9", "has no weights 'COCO_V9'.*COCO_V1, DEFAULT"),
])
def test_get_weight_errors(name: str, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        registry.get_weight(name)


def test_unknown_model() -> None:
    with pytest.raises(ValueError, match="unknown model 'yolo'.*fasterrcnn_resnet50_fpn"):
        registry.get_model("yolo")
    with pytest.raises(ValueError, match="unknown model"):
        registry.get_model_weights("yolo")


def test_get_model_builds_by_name() -> None:
    builder = registry.get_model_builder("ssdlite320_mobilenet_v3_large")
    assert builder.__name__ == "ssdlite320_mobilenet_v3_large"
    model = registry.get_model("mobilenet_v3_large", weights=None, num_classes=7)
    assert type(model).__name__ == "MobileNetV3" and model.classifier[-1].out_features == 7
