"""The run checkpoint: round trip, migration of schema-0 files, refusals that name the file,
atomic and durable writes (a full disk keeps the previous checkpoint)."""
from __future__ import annotations

import errno
import os

import pytest
import torch

from torchdet import checkpoint as ckpt_mod
from torchdet.checkpoint import (SCHEMA_VERSION, CheckpointError, CheckpointWriteError, RunCheckpoint,
                                 TrainingState)

NAMES = ["__background__", "circle", "square"]


def _weights(value: float = 1.0):
    return {"w": torch.full((2,), value), "b": torch.zeros(1)}


def _run(epoch: int = 1, value: float = 1.0) -> RunCheckpoint:
    training = TrainingState(optimizer={"state": {}, "param_groups": []}, scheduler={"last_epoch": 4},
                             config={"epochs": 3}, rng_per_rank=[{"python": 1}], best_metric=0.25)
    return RunCheckpoint(model=_weights(value), builder="fcos_tiny", builder_kwargs={"num_classes": 3},
                         categories=list(NAMES), category_ids=[0, 7, 11], epoch=epoch, training=training,
                         extra={"data": {"fmt": "coco"}, "skeleton": [[0, 1]]})


def _today_style(categories, **more):
    """A checkpoint as `torchdet train` wrote it before the schema was versioned."""
    return {"model": _weights(), "builder": "fcos_tiny", "builder_kwargs": {"num_classes": 3},
            "categories": categories, "epoch": 2, "optimizer": {"state": {}}, "scheduler": {"last_epoch": 2},
            "config": {"epochs": 3}, "rng": {"python": 7}, "best_metric": 0.5, "extra": {"data": {"fmt": "coco"}},
            "torchdet_version": "0.1.0", **more}


def test_round_trip_keeps_every_field(tmp_path):
    path = _run().save(tmp_path / "last.pt")
    back = RunCheckpoint.load(path)
    assert back.schema_version == SCHEMA_VERSION
    assert back.categories == NAMES and back.category_ids == [0, 7, 11]
    assert back.builder == "fcos_tiny" and back.epoch == 1 and back.skeleton == [[0, 1]]
    assert torch.equal(back.model["w"], torch.ones(2))
    assert back.training.scheduler == {"last_epoch": 4} and back.training.best_metric == 0.25
    assert back.training.rng_per_rank == [{"python": 1}]
    spec = back.spec(path)
    assert (spec.builder, spec.num_classes, spec.kwargs) == ("fcos_tiny", 3, {"num_classes": 3})
    raw = torch.load(path, weights_only=False)
    assert raw["schema_version"] == SCHEMA_VERSION and torch.equal(raw["model"]["w"], torch.ones(2))


@pytest.mark.parametrize("categories", [["__background__", "circle", "square"], ["circle", "square"],
                                        [{"id": 7, "name": "circle"}, {"id": 11, "name": "square"}]],
                         ids=["trainer-with-background", "names-without-background", "documented-id-name-dicts"])
def test_schema_0_files_migrate_to_one_category_convention(tmp_path, categories):
    path = tmp_path / "old.pt"
    torch.save(_today_style(categories), path)
    ckpt = RunCheckpoint.load(path)
    assert ckpt.categories == NAMES
    expected_ids = [0, 7, 11] if isinstance(categories[0], dict) else [0, 1, 2]
    assert ckpt.category_ids == expected_ids
    assert ckpt.training.rng_per_rank == [{"python": 7}]  # schema 0 kept one process's random state
    assert ckpt.epoch == 2 and ckpt.resumable(path).best_metric == 0.5
    ckpt.save(path)
    assert torch.load(path, weights_only=False)["schema_version"] == SCHEMA_VERSION


def test_a_future_schema_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "new.pt"
    torch.save({**_run().to_dict(), "schema_version": SCHEMA_VERSION + 1, "torchdet_version": "9.0"}, path)
    with pytest.raises(CheckpointError, match=r"new.pt.*schema 2.*torchdet 9.0.*Upgrade torchdet"):
        RunCheckpoint.load(path)


def test_corrupt_foreign_and_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        RunCheckpoint.load(tmp_path / "nope.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*corrupt.pt.*truncated or not a PyTorch"):
        RunCheckpoint.load(corrupt)
    truncated = tmp_path / "truncated.pt"
    _run().save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="truncated.pt"):
        RunCheckpoint.load(truncated)
    foreign = tmp_path / "plain.pt"
    torch.save([1, 2], foreign)
    with pytest.raises(CheckpointError, match="plain.pt.* is not a torchdet checkpoint.*got a list"):
        RunCheckpoint.load(foreign)
    inconsistent = tmp_path / "odd.pt"
    torch.save(_today_style(["a", "b", "c", "d"]), inconsistent)
    with pytest.raises(CheckpointError, match="odd.pt.*4 categories .*num_classes=3"):
        RunCheckpoint.load(inconsistent)


def test_weights_only_files_cannot_rebuild_or_resume(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"model": _weights()}, path)
    ckpt = RunCheckpoint.load(path)
    assert ckpt.builder is None and ckpt.training is None
    with pytest.raises(CheckpointError, match="weights.pt.*holds weights only"):
        ckpt.spec(path)
    inference_only = RunCheckpoint(model=_weights(), builder="fcos_tiny", builder_kwargs={"num_classes": 3},
                                   categories=list(NAMES))
    with pytest.raises(CheckpointError, match="cannot be resumed"):
        inference_only.resumable("best.pt")


def test_interrupted_save_keeps_the_previous_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    _run(epoch=1).save(path)

    def interrupted_replace(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted_replace)
    with pytest.raises(KeyboardInterrupt):
        _run(epoch=2).save(path)
    monkeypatch.undo()
    assert RunCheckpoint.load(path).epoch == 1
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]


@pytest.mark.parametrize("error", [RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter "
                                                "failed writing file data/3: file write failed"),
                                   RuntimeError("unexpected pos 1024 vs 980"),
                                   OSError(errno.ENOSPC, "No space left on device")],
                         ids=["zip-writer", "unexpected-pos", "enospc"])
def test_a_full_disk_names_the_path_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch, error):
    path = tmp_path / "last.pt"
    _run(epoch=1).save(path)

    def full_disk(obj, f, *args, **kwargs):
        with open(f, "wb") as out:
            out.write(b"half")
        raise error

    monkeypatch.setattr(ckpt_mod.torch, "save", full_disk)
    with pytest.raises(CheckpointWriteError) as info:
        _run(epoch=2).save(path)
    message = str(info.value)
    assert str(path) in message and "the disk is full" in message and "still holds the previous checkpoint" in message
    assert isinstance(info.value, OSError)  # the commands report it as a user error
    monkeypatch.undo()
    assert RunCheckpoint.load(path).epoch == 1
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]


def test_first_save_on_a_full_disk_says_nothing_was_written(tmp_path, monkeypatch):
    def full_disk(obj, f, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt_mod.torch, "save", full_disk)
    with pytest.raises(CheckpointWriteError, match="best.pt.*nothing was written"):
        _run().save(tmp_path / "best.pt")
    assert os.listdir(tmp_path) == []


def test_saved_files_are_private(tmp_path):
    path = _run().save(tmp_path / "last.pt")
    assert os.stat(path).st_mode & 0o777 == 0o600
