"""torchvision's legacy keywords: pretrained / pretrained_backbone (and bools or positions) become weights.

This folder's fixtures keep the network off: a builder that tried to download would fail here.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from torchdet.backbones import resnet50
from torchdet.models import fasterrcnn_resnet50_fpn, ssdlite320_mobilenet_v3_large
from torchdet.models.tiny import fcos_tiny
from torchdet.weights import registry
from torchdet.weights.backbone import MobileNet_V3_Large_Weights, ResNet50_Weights
from torchdet.weights.detection import FasterRCNN_ResNet50_FPN_Weights
from torchdet.weights.hub import CheckpointDownloadError


@pytest.fixture
def probe(monkeypatch):
    """A registered builder that returns what it was called with (no model is built)."""
    monkeypatch.setattr(registry, "_RECORDS", dict(registry._RECORDS))

    class Called(nn.Module):
        def __init__(self, **kwargs):
            super().__init__()
            self.kwargs = kwargs

    @registry.register_model(pretrained=FasterRCNN_ResNet50_FPN_Weights.COCO_V1,
                             pretrained_backbone=ResNet50_Weights.IMAGENET1K_V1)
    def probe_builder(*, weights=None, progress=True, num_classes=None, weights_backbone=None, **kwargs):
        return Called(weights=weights, weights_backbone=weights_backbone, num_classes=num_classes, **kwargs)

    return probe_builder


def _kwargs(builder, *args, **kwargs):
    with pytest.warns(UserWarning) as record:
        model = builder(*args, **kwargs)
    return model.kwargs, [str(w.message) for w in record]


def test_pretrained_true_means_the_published_weights(probe):
    got, messages = _kwargs(probe, pretrained=True)
    assert got["weights"] is FasterRCNN_ResNet50_FPN_Weights.COCO_V1 and got["weights_backbone"] is None
    assert messages == ["probe_builder: the parameter 'pretrained' is deprecated, use 'weights' instead: "
                        "pretrained=True means weights=FasterRCNN_ResNet50_FPN_Weights.COCO_V1 (or "
                        "weights=FasterRCNN_ResNet50_FPN_Weights.DEFAULT for the most recent weights)"]


def test_pretrained_false_and_backbone_flags(probe):
    got, messages = _kwargs(probe, pretrained=False, pretrained_backbone=True)
    assert got["weights"] is None and got["weights_backbone"] is ResNet50_Weights.IMAGENET1K_V1
    assert "pretrained=False means weights=None" in messages[0]
    assert "'pretrained_backbone' is deprecated, use 'weights_backbone' instead: pretrained_backbone=True means " \
           "weights_backbone=ResNet50_Weights.IMAGENET1K_V1" in messages[1]
    got, messages = _kwargs(probe, pretrained_backbone=False, num_classes=5)
    assert got["weights_backbone"] is None and got["num_classes"] == 5 and len(messages) == 1


def test_bools_and_positions_are_legacy_too(probe):
    got, messages = _kwargs(probe, weights=True)
    assert got["weights"] is FasterRCNN_ResNet50_FPN_Weights.COCO_V1
    assert messages == ["probe_builder: a bool as 'weights' is deprecated, pass a weights enum member or None: "
                        "weights=True means weights=FasterRCNN_ResNet50_FPN_Weights.COCO_V1 (or "
                        "weights=FasterRCNN_ResNet50_FPN_Weights.DEFAULT for the most recent weights)"]
    got, messages = _kwargs(probe, False, True, 7)  # weights, progress, num_classes: torchvision's order
    assert got["weights"] is None and got["num_classes"] == 7
    assert "passing weights, progress, num_classes by position is deprecated" in messages[0]


def test_new_style_arguments_do_not_warn(probe):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = probe(weights="DEFAULT", weights_backbone=None).kwargs
    assert got["weights"] == "DEFAULT"


def test_conflicting_arguments_name_both(probe):
    with pytest.raises(TypeError, match="got both pretrained=True and weights=None"):
        probe(pretrained=True, weights=None)
    with pytest.raises(TypeError, match="pretrained_backbone=False and weights_backbone=.*pass weights_backbone alone"):
        probe(pretrained_backbone=False, weights_backbone=ResNet50_Weights.IMAGENET1K_V2)
    with pytest.raises(TypeError, match="multiple values for argument 'weights'"):
        probe(True, weights=None)
    with pytest.raises(TypeError, match="by keyword"):
        probe(*range(10))


def test_pretrained_backbone_false_builds_without_any_download(torch_home: Path):
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="pretrained_backbone=False means weights_backbone=None"):
        legacy = ssdlite320_mobilenet_v3_large(pretrained_backbone=False)
    torch.manual_seed(0)
    new = ssdlite320_mobilenet_v3_large(weights_backbone=None)
    assert not torch_home.exists() or not any(torch_home.iterdir())
    old_state, new_state = legacy.state_dict(), new.state_dict()
    assert old_state.keys() == new_state.keys()  # the reduced tail: no ImageNet backbone
    assert all(torch.equal(old_state[k], new_state[k]) for k in new_state)


def test_pretrained_true_asks_for_the_published_files(torch_home: Path):
    with pytest.warns(UserWarning, match="pretrained=True means weights=ResNet50_Weights.IMAGENET1K_V1"):
        with pytest.raises(CheckpointDownloadError, match=ResNet50_Weights.IMAGENET1K_V1.file_name):
            resnet50(pretrained=True)
    with pytest.warns(UserWarning, match="weights_backbone=MobileNet_V3_Large_Weights.IMAGENET1K_V1"):
        with pytest.raises(CheckpointDownloadError, match=MobileNet_V3_Large_Weights.IMAGENET1K_V1.file_name):
            ssdlite320_mobilenet_v3_large(pretrained_backbone=True)


def test_backbone_pretrained_false_and_builders_without_weights():
    with pytest.warns(UserWarning, match="resnet50: the parameter 'pretrained' is deprecated"):
        model = resnet50(pretrained=False, num_classes=3)
    assert model.fc.out_features == 3
    with pytest.warns(UserWarning):
        assert fcos_tiny(pretrained=False, pretrained_backbone=False, num_classes=3) is not None
    with pytest.raises(ValueError, match="fcos_tiny has no published weights; pass weights=None"):
        fcos_tiny(pretrained=True)
    with pytest.raises(ValueError, match="fcos_tiny has no published backbone weights"):
        fcos_tiny(pretrained_backbone=True)
    with pytest.raises(TypeError, match="got both pretrained=False and weights=None"):
        fasterrcnn_resnet50_fpn(pretrained=False, weights=None)
