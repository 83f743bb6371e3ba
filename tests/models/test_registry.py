"""The model registry: one record per builder, written where the builder is defined."""
from __future__ import annotations

import importlib
import sys
import textwrap

import pytest
from torch import nn

from torchdet.models import registry
from torchdet.models.tiny import TinyBackbone
from torchdet.weights import registry as core
from torchdet.weights.backbone import ResNet50_Weights, VGG16_Weights
from torchdet.weights.detection import KeypointRCNN_ResNet50_FPN_Weights, SSD300_VGG16_Weights

ZOO = [
    "fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2", "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_mobilenet_v3_large_320_fpn", "maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2",
    "keypointrcnn_resnet50_fpn", "retinanet_resnet50_fpn", "retinanet_resnet50_fpn_v2", "fcos_resnet50_fpn",
    "ssd300_vgg16", "ssdlite320_mobilenet_v3_large",
]


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made by a test are dropped after it."""
    monkeypatch.setattr(core, "_RECORDS", dict(core._RECORDS))


def test_every_builder_is_registered_once_where_it_is_defined():
    detectors = [r.name for r in registry.registered_models("detection")]
    assert detectors == ZOO + ["fcos_tiny", "fasterrcnn_tiny"]  # torchvision's documentation order
    backbones = registry.registered_models("classification")
    assert sorted(r.name for r in backbones) == ["mobilenet_v3_large", "resnet50", "vgg16"]
    for record in registry.registered_models():
        assert getattr(importlib.import_module(record.module), record.name) is record.builder
        assert registry.get_model_builder(record.name) is record.builder
    assert registry.get_model_record("fcos_tiny").module == "torchdet.models.tiny"


@pytest.mark.parametrize("name", ZOO + ["fcos_tiny", "fasterrcnn_tiny"])
def test_capabilities(name):
    record = registry.get_model_record(name)
    assert record.task == "detection"
    assert ("masks" in record.outputs) == name.startswith("maskrcnn")
    assert ("keypoints" in record.outputs) == name.startswith("keypointrcnn")
    assert record.outputs[0] == "boxes"
    assert record.fixed_size == {"ssd300_vgg16": (300, 300), "ssdlite320_mobilenet_v3_large": (320, 320)}.get(name)
    assert record.accepts("weights") and record.accepts("num_classes")
    if name.endswith("_tiny"):
        assert record.weights is None and record.backbone_weights is None
    else:
        assert record.weights is registry.get_model_weights(name) and record.pretrained in record.weights
        assert record.backbone_weights is not None


def test_weights_and_legacy_members():
    assert registry.get_model_record("keypointrcnn_resnet50_fpn").pretrained is KeypointRCNN_ResNet50_FPN_Weights.COCO_V1
    ssd = registry.get_model_record("ssd300_vgg16")
    assert ssd.weights is SSD300_VGG16_Weights and ssd.pretrained_backbone is VGG16_Weights.IMAGENET1K_FEATURES
    resnet = registry.get_model_record("resnet50")
    assert resnet.task == "classification" and resnet.outputs == ("logits",)
    assert resnet.pretrained is ResNet50_Weights.IMAGENET1K_V1 and resnet.backbone_weights is None
    with pytest.raises(ValueError, match="fcos_tiny has no published weights"):
        registry.get_model_weights("fcos_tiny")
    assert "fcos_tiny" not in registry.list_models()  # torchvision's list: builders with weights


def test_unknown_name_lists_the_choices():
    with pytest.raises(ValueError, match="unknown model 'yolo'.*fasterrcnn_resnet50_fpn.*fcos_tiny.*module:function"):
        registry.get_model_record("yolo")
    with pytest.raises(ValueError, match="unknown model"):
        registry.build_model("yolo", {})


def test_module_function_builders(tmp_path, monkeypatch, scratch_registry):
    (tmp_path / "my_builders.py").write_text(textwrap.dedent('''
        from torch import nn
        from torchdet.models.registry import register_model

        class Net(nn.Module):
            def __init__(self, num_classes):
                super().__init__()
                self.num_classes = num_classes

        def plain(*, weights=None, weights_backbone=None, num_classes=91):
            return Net(num_classes)

        @register_model(outputs=("masks", "boxes"), fixed_size=(64, 64))
        def with_masks(*, weights=None, weights_backbone=None, num_classes=91):
            return Net(num_classes)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_builders", raising=False)
    plain = registry.get_model_record("my_builders:plain")
    assert plain.name == "my_builders:plain" and plain.outputs == ("boxes",) and plain.fixed_size is None
    assert plain.weights is None and registry.model_outputs("my_builders:plain") == ["boxes"]
    masks = registry.get_model_record("my_builders:with_masks")
    assert masks.name == "with_masks" and masks.outputs == ("boxes", "masks") and masks.fixed_size == (64, 64)
    model = registry.build_model("my_builders:with_masks", {"num_classes": 3})
    assert model.num_classes == 3 and registry.record_of(model) is masks
    assert registry.builder_accepts("my_builders:plain", "num_classes")
    assert not registry.builder_accepts("my_builders:plain", "num_keypoints")
    with pytest.raises(ValueError, match="cannot build my_builders:plain"):
        registry.build_model("my_builders:plain", {"num_keypoints": 3})
    with pytest.raises(ValueError, match="cannot import the module"):
        registry.get_model_record("no_such_module:fn")
    with pytest.raises(ValueError, match="has no builder function 'nope'"):
        registry.get_model_record("my_builders:nope")


def test_registration_errors(scratch_registry):
    with pytest.raises(ValueError, match="task='segmentation'"):
        registry.register_model(task="segmentation")
    with pytest.raises(ValueError, match="predicts 'boxes'"):
        registry.register_model(outputs=("masks",))
    with pytest.raises(ValueError, match="predicts 'boxes'"):
        registry.register_model(outputs=("boxes", "depth"))

    def fcos_tiny():  # same name as a registered builder, another module
        return nn.Identity()

    fcos_tiny.__module__ = "somewhere.else"
    with pytest.raises(ValueError, match="'fcos_tiny' is already registered .*torchdet.models.tiny"):
        registry.register_model()(fcos_tiny)


def test_outputs_of_a_model():
    model = registry.get_model("fasterrcnn_tiny", num_classes=3)
    assert registry.record_of(model).name == "fasterrcnn_tiny" and registry.outputs_of(model) == ("boxes",)

    class Heads(nn.Module):
        def has_mask(self):
            return True

        def has_keypoint(self):
            return False

    assembled = nn.Module()
    assembled.roi_heads = Heads()  # no builder: its heads say what it predicts
    assert registry.record_of(assembled) is None and registry.outputs_of(assembled) == ("boxes", "masks")
    assert registry.outputs_of(TinyBackbone()) == ("boxes",)
