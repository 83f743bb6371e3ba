"""WeightsEnum.verify / get_state_dict, LocalWeights, and the builder helpers."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from torchdet.ops.misc import FrozenBatchNorm2d
from torchdet.weights import builder_support as bs
from torchdet.weights import hub
from torchdet.weights._api import LocalWeights, UnknownWeightsError, Weights
from torchdet.weights.backbone import ResNet50_Weights
from torchdet.weights.detection import (
    FasterRCNN_ResNet50_FPN_V2_Weights,
    FasterRCNN_ResNet50_FPN_Weights,
    KeypointRCNN_ResNet50_FPN_Weights,
    RetinaNet_ResNet50_FPN_Weights,
)

FRCNN = FasterRCNN_ResNet50_FPN_Weights


# --- verify ------------------------------------------------------------------------------------

@pytest.mark.parametrize("given", [FRCNN.COCO_V1, FRCNN.DEFAULT, "DEFAULT", "COCO_V1",
                                   "FasterRCNN_ResNet50_FPN_Weights.COCO_V1",
                                   "FasterRCNN_ResNet50_FPN_Weights.DEFAULT"])
def test_verify_accepts_members_and_names(given: object) -> None:
    assert FRCNN.verify(given) is FRCNN.COCO_V1


def test_verify_none() -> None:
    assert FRCNN.verify(None) is None


def test_unknown_name_lists_the_members() -> None:
    with pytest.raises(UnknownWeightsError) as info:
        FRCNN.verify("COCO_V2")
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)  # torchvision raises KeyError
    assert "'COCO_V2'" in str(info.value) and "COCO_V1, DEFAULT" in str(info.value)
    with pytest.raises(UnknownWeightsError, match="RetinaNet_ResNet50_FPN_Weights.COCO_V1"):
        FRCNN.verify("RetinaNet_ResNet50_FPN_Weights.COCO_V1")


def test_member_of_another_enum_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"FasterRCNN_ResNet50_FPN_Weights.*got ResNet50_Weights.IMAGENET1K_V2"):
        FRCNN.verify(ResNet50_Weights.DEFAULT)
    with pytest.raises(TypeError, match="int"):
        FRCNN.verify(3)


def test_path_becomes_local_weights(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    torch.save({"w": torch.ones(1)}, path)
    local = FRCNN.verify(str(path))
    assert isinstance(local, LocalWeights) and local.path == path and local.official is None
    assert FRCNN.verify(path) == local  # a Path works too
    assert repr(local) == f"LocalWeights({str(path)!r})"
    with pytest.raises(FileNotFoundError, match="runs/x/last.pt"):
        FRCNN.verify("runs/x/last.pt")


def test_enum_properties_and_repr() -> None:
    w = FRCNN.COCO_V1
    assert isinstance(w.value, Weights)
    assert repr(w) == str(w) == "FasterRCNN_ResNet50_FPN_Weights.COCO_V1"
    assert w.url == w.value.url and w.meta is w.value.meta and w.transforms is w.value.transforms
    assert list(FRCNN.__members__) == ["COCO_V1", "DEFAULT"]
    assert list(KeypointRCNN_ResNet50_FPN_Weights.__members__) == ["COCO_LEGACY", "COCO_V1", "DEFAULT"]
    assert FRCNN.from_file_name("fasterrcnn_resnet50_fpn_coco-258fb6c6.pth") is w
    assert FRCNN.from_file_name("other.pth") is None


# --- get_state_dict from the cache -------------------------------------------------------------

def test_get_state_dict_reads_the_official_file_from_torch_home(torch_home: Path) -> None:
    torch_home.mkdir(parents=True)
    state_dict = {"a": torch.randn(3)}
    torch.save(state_dict, torch_home / "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth")
    assert torch.equal(FRCNN.DEFAULT.get_state_dict(progress=False)["a"], state_dict["a"])


def test_get_state_dict_downloads_with_hash_check(torch_home: Path, http_server, tiny_checkpoint: bytes,
                                                  official_name, monkeypatch: pytest.MonkeyPatch) -> None:
    name = official_name(tiny_checkpoint)
    http_server.files[name] = tiny_checkpoint
    # A throwaway member pointing at the local server, to exercise the enum's own download path.
    weights = Weights(url=http_server.url(name), transforms=FRCNN.COCO_V1.transforms, meta={})
    monkeypatch.setattr(FRCNN.COCO_V1, "_value_", weights)
    state_dict = FRCNN.COCO_V1.get_state_dict(progress=False)
    assert sorted(state_dict) == ["bias", "weight"]
    assert (torch_home / name).is_file()


# --- LocalWeights meta -------------------------------------------------------------------------

def test_local_copy_of_an_official_file_takes_its_meta(tmp_path: Path) -> None:
    path = tmp_path / "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth"
    torch.save({"w": torch.ones(1)}, path)
    local = FRCNN.verify(str(path))
    assert local.official is FRCNN.COCO_V1
    assert local.meta == FRCNN.COCO_V1.meta and local.transforms is FRCNN.COCO_V1.transforms


def test_training_checkpoint_provides_categories_and_builder(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    torch.save({"model": {"w": torch.ones(1)}, "builder": "fasterrcnn_resnet50_fpn",
                "builder_kwargs": {"num_classes": 3},
                "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}], "epoch": 4}, path)
    local = FRCNN.verify(str(path))
    assert local.meta["categories"] == ["__background__", "cat", "dog"]
    assert local.meta["builder"] == "fasterrcnn_resnet50_fpn"
    assert bs.expected_num_classes(local) == 3
    assert sorted(local.get_state_dict()) == ["w"]


def test_plain_state_dict_file_has_no_meta(tmp_path: Path) -> None:
    path = tmp_path / "weights.pth"
    torch.save({"w": torch.ones(1)}, path)
    local = FRCNN.verify(str(path))
    assert local.meta == {} and bs.expected_num_classes(local) is None


# --- builder helpers ---------------------------------------------------------------------------

def test_ovewrite_value_param() -> None:
    assert bs._ovewrite_value_param("num_classes", None, 91) == 91
    assert bs._ovewrite_value_param("num_classes", 91, 91) == 91
    with pytest.raises(ValueError, match=r"num_classes=3 .* num_classes=91"):
        bs._ovewrite_value_param("num_classes", 3, 91)
    kwargs = {}
    bs._ovewrite_named_param(kwargs, "num_classes", 1000)
    assert kwargs == {"num_classes": 1000}
    with pytest.raises(ValueError, match="num_classes=10"):
        bs._ovewrite_named_param({"num_classes": 10}, "num_classes", 1000)


def test_resolve_weights_with_weights() -> None:
    r = bs.resolve_weights("fasterrcnn_resnet50_fpn", "DEFAULT", FRCNN, ResNet50_Weights.IMAGENET1K_V1,
                           ResNet50_Weights, None)
    assert r.weights is FRCNN.COCO_V1 and r.weights_backbone is None and r.num_classes == 91 and r.is_trained
    with pytest.raises(ValueError, match="num_classes=5"):
        bs.resolve_weights("fasterrcnn_resnet50_fpn", "DEFAULT", FRCNN, None, ResNet50_Weights, 5)


def test_resolve_weights_without_weights() -> None:
    r = bs.resolve_weights("x", None, FRCNN, "IMAGENET1K_V1", ResNet50_Weights, None)
    assert r.weights is None and r.weights_backbone is ResNet50_Weights.IMAGENET1K_V1 and r.num_classes == 91
    r = bs.resolve_weights("x", None, FRCNN, None, ResNet50_Weights, 7)
    assert r.num_classes == 7 and not r.is_trained
    r = bs.resolve_weights("keypointrcnn_resnet50_fpn", "DEFAULT", KeypointRCNN_ResNet50_FPN_Weights, None,
                           ResNet50_Weights, None, default_num_classes=2)
    assert r.num_classes == 2
    assert bs.resolve_num_keypoints(r.weights, None) == 17 and bs.resolve_num_keypoints(None, 5) == 5
    with pytest.raises(ValueError, match="num_keypoints=5"):
        bs.resolve_num_keypoints(r.weights, 5)


def test_resolve_weights_refuses_a_checkpoint_of_another_builder(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    torch.save({"model": {"w": torch.ones(1)}, "builder": "retinanet_resnet50_fpn", "categories": ["a"]}, path)
    with pytest.raises(ValueError, match="retinanet_resnet50_fpn"):
        bs.resolve_weights("fasterrcnn_resnet50_fpn", str(path), FRCNN, None, ResNet50_Weights, None)


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.bn = FrozenBatchNorm2d(4)


def test_load_weights_sets_eps_zero_for_legacy_checkpoints(torch_home: Path) -> None:
    torch_home.mkdir(parents=True)
    source = _Tiny().state_dict()
    for weights in (FRCNN.COCO_V1, RetinaNet_ResNet50_FPN_Weights.COCO_V1, FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1,
                    KeypointRCNN_ResNet50_FPN_Weights.COCO_LEGACY, KeypointRCNN_ResNet50_FPN_Weights.COCO_V1):
        torch.save(source, torch_home / weights.file_name)
        model = bs.load_weights(_Tiny(), weights, progress=False)
        assert torch.equal(model.conv.weight, source["conv.weight"])
        legacy = repr(weights) in ("FasterRCNN_ResNet50_FPN_Weights.COCO_V1", "RetinaNet_ResNet50_FPN_Weights.COCO_V1",
                                   "KeypointRCNN_ResNet50_FPN_Weights.COCO_V1")
        assert model.bn.eps == (0.0 if legacy else 1e-5), weights


def test_load_weights_from_a_local_copy_of_a_legacy_file(tmp_path: Path) -> None:
    path = tmp_path / "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth"
    torch.save(_Tiny().state_dict(), path)
    model = bs.load_weights(_Tiny(), FRCNN.verify(str(path)))
    assert model.bn.eps == 0.0


def test_load_weights_wrong_architecture_names_the_cached_file(torch_home: Path) -> None:
    torch_home.mkdir(parents=True)
    torch.save(nn.Linear(2, 2).state_dict(), torch_home / FRCNN.COCO_V1.file_name)
    with pytest.raises(hub.CheckpointMismatchError) as info:
        bs.load_weights(_Tiny(), FRCNN.COCO_V1, progress=False)
    message = str(info.value)
    assert "FasterRCNN_ResNet50_FPN_Weights.COCO_V1" in message and str(torch_home) in message
    assert "'conv.weight'" in message and "'weight'" in message
