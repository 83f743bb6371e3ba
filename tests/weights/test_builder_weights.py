"""The builders with pretrained weights, as torchvision's: ``builder(weights="DEFAULT")`` loads the file that
torch.hub's cache holds under its official name, bit for bit.

The checkpoints are made with the oracle's fill from torchvision's state_dict manifest, so they have
exactly the official files' keys and shapes. No network: the autouse fixture blocks it, which also
proves that ``weights_backbone`` is ignored when ``weights`` is given.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict

import pytest
import torch
from torch import Tensor, nn

from _oracle import golden_manifest
from oracle.fill import fill_state_dict, fill_value
from torchdet.backbones.mobilenet_v3 import mobilenet_v3_large
from torchdet.backbones.resnet import resnet50
from torchdet.ops.misc import FrozenBatchNorm2d
from torchdet.weights import hub, registry
from torchdet.weights.backbone import MobileNet_V3_Large_Weights, ResNet50_Weights
from torchdet.weights.builder_support import ZERO_EPS_WEIGHTS

DETECTION = registry.list_models(module="torchdet.models")
# Builders whose pretrained backbone has FrozenBatchNorm2d (the v2 models and SSDlite keep BatchNorm2d).
FROZEN_BN = {"fasterrcnn_resnet50_fpn", "fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_mobilenet_v3_large_320_fpn",
             "maskrcnn_resnet50_fpn", "keypointrcnn_resnet50_fpn", "retinanet_resnet50_fpn", "fcos_resnet50_fpn"}
RESNET_FPN = {n for n in DETECTION if "resnet50_fpn" in n}
SEED = 7


@pytest.fixture(autouse=True)
def one_thread() -> None:
    """Building models is CPU-bound; one thread per test process avoids oversubscribing shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _official_like_checkpoint(name: str) -> Dict[str, Tensor]:
    """torchvision's keys and shapes for ``name``, filled by the oracle (counters as BatchNorm2d saves them)."""
    return {key: torch.tensor(0) if key.endswith("num_batches_tracked") else fill_value(key, tuple(shape), SEED)
            for key, shape in golden_manifest(name).items()}


def _assert_loaded(model: nn.Module, checkpoint: Dict[str, Tensor]) -> None:
    got = model.state_dict()
    assert set(got) <= set(checkpoint), sorted(set(got) - set(checkpoint))[:5]
    different = [k for k, v in got.items() if not k.endswith("num_batches_tracked") and not torch.equal(v, checkpoint[k])]
    assert not different, different[:5]


@pytest.mark.parametrize("name", DETECTION)
def test_default_weights_load_bit_for_bit(name: str, torch_home: Path) -> None:
    builder = registry.get_model_builder(name)
    weights = registry.get_model_weights(name).DEFAULT
    checkpoint = _official_like_checkpoint(name)
    torch_home.mkdir(parents=True)
    torch.save(checkpoint, torch_home / weights.file_name)

    model = builder(weights="DEFAULT")  # weights_backbone keeps its default and is ignored

    _assert_loaded(model, checkpoint)
    assert sum(p.numel() for p in model.parameters()) == weights.meta["num_params"]
    frozen = [m for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert bool(frozen) == (name in FROZEN_BN)
    eps = 0.0 if repr(weights) in ZERO_EPS_WEIGHTS else 1e-5
    assert all(m.eps == eps for m in frozen)
    if name in RESNET_FPN:  # trainable_backbone_layers defaults to 3: conv1 and layer1 stay frozen
        params = dict(model.named_parameters())
        assert not params["backbone.body.conv1.weight"].requires_grad
        assert not params["backbone.body.layer1.0.conv1.weight"].requires_grad
        assert params["backbone.body.layer2.0.conv1.weight"].requires_grad


def test_weights_by_member_full_name_and_local_path(torch_home: Path, tmp_path: Path) -> None:
    name = "fasterrcnn_mobilenet_v3_large_320_fpn"  # cheap to build
    builder = registry.get_model_builder(name)
    enum = registry.get_model_weights(name)
    checkpoint = _official_like_checkpoint(name)
    local = tmp_path / "somewhere" / "my_copy.pth"
    local.parent.mkdir()
    torch.save(checkpoint, local)
    _assert_loaded(builder(weights=str(local)), checkpoint)

    torch_home.mkdir(parents=True)
    torch.save(checkpoint, torch_home / enum.COCO_V1.file_name)
    _assert_loaded(builder(weights=f"{enum.__name__}.COCO_V1"), checkpoint)

    training = tmp_path / "last.pt"  # a torchdet training checkpoint of 3 classes
    small = builder(weights=None, weights_backbone=None, num_classes=3)
    fill_state_dict(small, SEED)
    torch.save({"model": small.state_dict(), "builder": name, "builder_kwargs": {"num_classes": 3},
                "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}], "epoch": 1}, training)
    _assert_loaded(builder(weights=str(training)), small.state_dict())


def test_num_classes_must_match_the_weights() -> None:
    builder = registry.get_model_builder("fasterrcnn_mobilenet_v3_large_320_fpn")
    with pytest.raises(ValueError, match="num_classes=3"):
        builder(weights="DEFAULT", num_classes=3)


def test_trainable_backbone_layers_are_validated() -> None:
    builder = registry.get_model_builder("fasterrcnn_mobilenet_v3_large_320_fpn")
    with pytest.raises(ValueError, match="7"):
        builder(weights="DEFAULT", trainable_backbone_layers=7)


def test_wrong_architecture_lists_keys(tmp_path: Path) -> None:
    builder = registry.get_model_builder("fasterrcnn_mobilenet_v3_large_320_fpn")
    path = tmp_path / "other.pth"
    torch.save(_official_like_checkpoint("ssdlite320_mobilenet_v3_large"), path)
    with pytest.raises(hub.CheckpointMismatchError) as info:
        builder(weights=str(path))
    message = str(info.value)
    assert str(path) in message and "missing" in message and "not in the model" in message
    assert "'backbone.body." in message  # the model's keys, missing from the file
    assert "'backbone.extra." in message or "'backbone.features." in message  # SSDlite's keys, unexpected


def test_default_backbone_weights_come_from_the_cache(torch_home: Path) -> None:
    """Without ``weights``, the builder's default ``weights_backbone`` (ImageNet) is loaded, frozen BN and all."""
    name = "fasterrcnn_mobilenet_v3_large_320_fpn"
    builder = registry.get_model_builder(name)
    backbone = mobilenet_v3_large(weights=None)
    imagenet = fill_state_dict(backbone, SEED).state_dict()
    torch_home.mkdir(parents=True)
    torch.save(imagenet, torch_home / MobileNet_V3_Large_Weights.IMAGENET1K_V1.file_name)

    model = builder()  # torchvision's default: weights_backbone=MobileNet_V3_Large_Weights.IMAGENET1K_V1

    body = model.backbone.body.state_dict()
    for key, value in body.items():
        assert torch.equal(value, imagenet[f"features.{key}"]), key
    assert any(isinstance(m, FrozenBatchNorm2d) for m in model.modules())


def test_offline_default_backbone_says_what_to_do(torch_home: Path) -> None:
    builder = registry.get_model_builder("fasterrcnn_mobilenet_v3_large_320_fpn")
    with pytest.raises(hub.CheckpointDownloadError) as info:
        builder()
    message = str(info.value)
    assert "weights_backbone=None" in message
    assert str(torch_home / MobileNet_V3_Large_Weights.IMAGENET1K_V1.file_name) in message


def test_resnet50_imagenet_weights_in_the_constructor_and_the_detector(torch_home: Path) -> None:
    with pytest.raises(ValueError, match="num_classes=10"):  # checked before anything is built or read
        resnet50(weights="IMAGENET1K_V1", num_classes=10)
    imagenet = fill_state_dict(resnet50(weights=None), SEED).state_dict()  # has num_batches_tracked
    torch_home.mkdir(parents=True)
    torch.save(imagenet, torch_home / ResNet50_Weights.IMAGENET1K_V1.file_name)

    model = resnet50(weights="IMAGENET1K_V1")
    _assert_loaded(model, imagenet)
    assert model.fc.out_features == 1000

    builder = registry.get_model_builder("fasterrcnn_resnet50_fpn")
    detector = builder(weights=None, weights_backbone=ResNet50_Weights.IMAGENET1K_V1)
    for key, value in detector.backbone.body.state_dict().items():  # FrozenBatchNorm2d drops the counters
        assert torch.equal(value, imagenet[key]), key
    assert all(m.eps == 1e-5 for m in detector.modules() if isinstance(m, FrozenBatchNorm2d))
