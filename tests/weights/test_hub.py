"""torch.hub cache, downloads against a local HTTP server, reading and loading checkpoints."""
from __future__ import annotations

import io
import socket
import urllib.error
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

from torchdet.weights import hub
from torchdet.weights.backbone import ResNet50_Weights, VGG16_Weights
from torchdet.weights.detection import FasterRCNN_ResNet50_FPN_Weights


def _files(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --- names and the cache folder ---------------------------------------------------------------

def test_hash_prefix_from_official_names() -> None:
    assert hub.hash_prefix("fasterrcnn_resnet50_fpn_coco-258fb6c6.pth") == "258fb6c6"
    assert hub.hash_prefix("vgg16_features-amdegroot-88682ab5.pth") == "88682ab5"
    assert hub.hash_prefix("mobilenet_v3_large-8738ca79.pth") == "8738ca79"
    assert hub.hash_prefix("last.pt") is None
    assert hub.file_name_from_url("https://x.org/models/a-1234abcd.pth?x=1") == "a-1234abcd.pth"


def test_checkpoint_dir_follows_torch_home(torch_home: Path) -> None:
    assert hub.checkpoint_dir() == torch_home
    assert FasterRCNN_ResNet50_FPN_Weights.COCO_V1.cache_path() == torch_home / "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth"


# --- downloads ---------------------------------------------------------------------------------

def test_good_download_lands_in_cache(torch_home: Path, http_server, tiny_checkpoint: bytes, official_name,
                                      capsys: pytest.CaptureFixture) -> None:
    name = official_name(tiny_checkpoint)
    http_server.files[name] = tiny_checkpoint
    state_dict = hub.load_state_dict_from_url(http_server.url(name), progress=True)
    assert torch.equal(state_dict["weight"], torch.arange(6.0).reshape(2, 3))
    assert _files(torch_home) == [name]  # no temporary file left beside it
    assert (torch_home / name).read_bytes() == tiny_checkpoint
    assert name in capsys.readouterr().err  # the progress bar names the file

    # A second load reads the cache and does not ask the server again.
    hub.load_state_dict_from_url(http_server.url(name), progress=False)
    assert http_server.requests == [f"/{name}"]


def test_wrong_hash_is_rejected_and_not_kept(torch_home: Path, http_server, tiny_checkpoint: bytes) -> None:
    name = "tiny-deadbeef.pth"
    http_server.files[name] = tiny_checkpoint
    with pytest.raises(hub.CheckpointHashError) as info:
        hub.load_state_dict_from_url(http_server.url(name), progress=False)
    message = str(info.value)
    assert "deadbeef" in message and "not kept" in message and str(torch_home / name) in message
    assert _files(torch_home) == []


def test_check_hash_false_keeps_any_file(torch_home: Path, http_server, tiny_checkpoint: bytes) -> None:
    name = "tiny-deadbeef.pth"
    http_server.files[name] = tiny_checkpoint
    hub.load_state_dict_from_url(http_server.url(name), progress=False, check_hash=False)
    assert _files(torch_home) == [name]


def test_interrupted_download_leaves_no_partial_file(torch_home: Path, http_server, tiny_checkpoint: bytes,
                                                     official_name) -> None:
    name = official_name(tiny_checkpoint)
    http_server.files[name] = tiny_checkpoint
    with pytest.raises(hub.CheckpointDownloadError) as info:
        hub.load_state_dict_from_url(http_server.url(name, cut=True), progress=False)
    assert "broke off" in str(info.value) and str(len(tiny_checkpoint)) in str(info.value)
    assert _files(torch_home) == []


def test_http_error_names_url_and_destination(torch_home: Path, http_server) -> None:
    with pytest.raises(hub.CheckpointDownloadError) as info:
        hub.load_state_dict_from_url(http_server.url("absent-12345678.pth"), progress=False)
    assert "404" in str(info.value) or "no such file" in str(info.value)
    assert str(torch_home / "absent-12345678.pth") in str(info.value)
    assert _files(torch_home) == []


def test_offline_error_says_which_file_to_put_where(torch_home: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/models/tiny-12345678.pth"
    with pytest.raises(hub.CheckpointDownloadError) as info:
        hub.load_state_dict_from_url(url, progress=False)
    message = str(info.value)
    assert url in message and str(torch_home / "tiny-12345678.pth") in message and "TORCH_HOME" in message


def test_offline_member_error_mentions_weights_backbone_none(torch_home: Path) -> None:
    with pytest.raises(hub.CheckpointDownloadError) as info:  # the autouse fixture blocks the internet
        ResNet50_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
    message = str(info.value)
    assert "resnet50-0676ba61.pth" in message and str(torch_home) in message
    assert "https://download.pytorch.org/models/resnet50-0676ba61.pth" in message
    assert "weights_backbone=None" in message


def test_cached_official_file_is_used_without_network(torch_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(url: str, timeout: float):  # noqa: ANN202
        raise AssertionError(f"tried to download {url}")

    monkeypatch.setattr(hub, "_urlopen", refuse)
    torch_home.mkdir(parents=True)
    state_dict = {"features.0.weight": torch.randn(4, 3, 3, 3)}
    torch.save(state_dict, torch_home / VGG16_Weights.IMAGENET1K_FEATURES.file_name)
    loaded = VGG16_Weights.IMAGENET1K_FEATURES.get_state_dict(progress=False)
    assert torch.equal(loaded["features.0.weight"], state_dict["features.0.weight"])


# --- reading files -----------------------------------------------------------------------------

def test_truncated_file_error_names_the_file(tmp_path: Path, tiny_checkpoint: bytes) -> None:
    path = tmp_path / "half.pth"
    path.write_bytes(tiny_checkpoint[: len(tiny_checkpoint) // 2])
    with pytest.raises(hub.CheckpointReadError) as info:
        hub.read_checkpoint(path)
    assert str(path) in str(info.value) and "truncated" in str(info.value)


def test_non_checkpoint_file_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.pth"
    path.write_text("these are not weights\n")
    with pytest.raises(hub.CheckpointReadError) as info:
        hub.read_checkpoint(path)
    assert str(path) in str(info.value)


def test_corrupt_cached_file_says_to_delete_it(torch_home: Path, tiny_checkpoint: bytes) -> None:
    torch_home.mkdir(parents=True)
    name = FasterRCNN_ResNet50_FPN_Weights.COCO_V1.file_name
    (torch_home / name).write_bytes(tiny_checkpoint[:100])
    with pytest.raises(hub.CheckpointReadError) as info:
        FasterRCNN_ResNet50_FPN_Weights.COCO_V1.get_state_dict(progress=False)
    assert str(torch_home / name) in str(info.value) and "delete" in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        hub.read_checkpoint(tmp_path / "nope.pth")


def test_pickled_objects_need_a_trusted_path(tmp_path: Path) -> None:
    path = tmp_path / "train.pt"
    torch.save({"model": {"w": torch.ones(1)}, "config": io.StringIO}, path)  # a class: not weights-only
    with pytest.raises(hub.CheckpointReadError, match="train.pt"):
        hub.read_checkpoint(path)
    assert hub.read_checkpoint(path, trusted=True)["config"] is io.StringIO


@pytest.mark.parametrize("checkpoint", [
    {"weight": torch.ones(2, 3), "bias": torch.zeros(2)},
    {"model": {"weight": torch.ones(2, 3), "bias": torch.zeros(2)}, "epoch": 3},
    {"state_dict": {"module.weight": torch.ones(2, 3), "module.bias": torch.zeros(2)}},
])
def test_state_dict_from_each_checkpoint_layout(checkpoint: dict) -> None:
    state_dict = hub.state_dict_from_checkpoint(checkpoint, "x.pt")
    assert sorted(state_dict) == ["bias", "weight"]


def test_dict_without_tensors_is_not_a_state_dict() -> None:
    with pytest.raises(hub.CheckpointReadError, match=r"x\.pt.*\['epoch', 'lr'\]"):
        hub.state_dict_from_checkpoint({"epoch": 3, "lr": 0.1}, "x.pt")
    with pytest.raises(hub.CheckpointReadError, match="list"):
        hub.state_dict_from_checkpoint([1, 2], "x.pt")


# --- loading into a model ----------------------------------------------------------------------

def test_wrong_architecture_lists_missing_and_unexpected_keys() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))
    other = nn.Sequential(OrderedDict(stem=nn.Conv2d(3, 4, 3), head=nn.Linear(4, 2))).state_dict()
    with pytest.raises(hub.CheckpointMismatchError) as info:
        hub.load_state_dict_into(model, other, source="'other.pth'")
    message = str(info.value)
    assert "'other.pth'" in message and "Sequential" in message
    assert "8 keys of the model are missing" in message and "'0.weight'" in message and "'1.running_mean'" in message
    assert "4 of its keys are not in the model" in message and "'stem.weight'" in message and "'head.bias'" in message
    assert "... (3 more)" in message  # only a few keys are listed
    assert torch.count_nonzero(model[0].weight) > 0  # nothing was loaded


def test_shape_mismatch_is_listed() -> None:
    model = nn.Linear(4, 3)
    with pytest.raises(hub.CheckpointMismatchError, match=r"'weight': checkpoint \[91, 4\] vs model \[3, 4\]"):
        hub.load_state_dict_into(model, {"weight": torch.zeros(91, 4), "bias": torch.zeros(91)}, source="x")


def test_batchnorm_step_counter_may_be_absent_or_extra() -> None:
    from torchdet.ops.misc import FrozenBatchNorm2d

    trained = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    trained[1].running_mean.fill_(0.5)
    frozen = nn.Sequential(nn.Conv2d(3, 4, 1), FrozenBatchNorm2d(4))
    hub.load_state_dict_into(frozen, trained.state_dict(), source="x")  # extra num_batches_tracked
    assert torch.equal(frozen[1].running_mean, torch.full((4,), 0.5))
    again = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    hub.load_state_dict_into(again, frozen.state_dict(), source="x")  # no num_batches_tracked
    assert torch.equal(again[1].running_mean, torch.full((4,), 0.5))


def test_urlerror_reason_is_reported(torch_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(url: str, timeout: float):  # noqa: ANN202
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(hub, "_urlopen", fail)
    with pytest.raises(hub.CheckpointDownloadError, match="name resolution"):
        hub.cached_checkpoint("https://example.invalid/a-12345678.pth", progress=False)
