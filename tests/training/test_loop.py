"""The training loop on a toy detector: files written, exact resume, Ctrl-C, EMA, AMP, bad labels."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Dict

import pytest
import torch

from _toy_detector import BUILDER
from torchdet.training import api
from torchdet.checkpoint import SCHEMA_VERSION, RunCheckpoint
from torchdet.training.loop import TrainConfig, Trainer, TrainResult


def _quiet(_msg: str) -> None:
    pass


def _train(files: Dict[str, Path], out: Path, epochs: int = 2, **config) -> TrainResult:
    cfg = TrainConfig(batch_size=4, workers=0, lr=0.01, **config)
    return api.train(BUILDER, str(files["train"]), val_data=str(files["val"]), out=str(out), epochs=epochs,
                     config=cfg, log=_quiet)


def _weights_equal(a: Dict[str, torch.Tensor], b: Dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_fit_writes_checkpoints_metrics_and_plot(tiny_shapes, tmp_path):
    result = _train(tiny_shapes, tmp_path / "run")
    run = tmp_path / "run"
    assert {"last.pt", "best.pt", "metrics.csv", "plot.png"} <= {p.name for p in run.iterdir()}
    assert not [p for p in run.iterdir() if ".tmp" in p.name]  # no temporary file left behind
    assert result.epochs_done == 2
    ckpt = RunCheckpoint.load(run / "last.pt")
    assert ckpt.epoch == 2
    assert ckpt.builder == BUILDER
    assert ckpt.builder_kwargs["num_classes"] == 6
    assert ckpt.categories == ["__background__", "circle", "square", "triangle", "star", "cross"]
    assert ckpt.category_ids == [0, 3, 7, 11, 20, 42]
    state = ckpt.resumable(run / "last.pt")
    assert state.optimizer["state"] and state.scheduler and state.config["epochs"] == 2 and state.rng_per_rank
    assert ckpt.torchdet_version and ckpt.schema_version == SCHEMA_VERSION
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    for column in ("lr", "train/loss", "train/loss_classifier", "val/loss", "bbox/AP", "bbox/AP50"):
        assert column in rows[0]
    assert (run / "plot.png").read_bytes()[:4] == b"\x89PNG"


def test_interrupt_keeps_last_checkpoint_and_resume_is_exact(tiny_shapes, tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    _train(tiny_shapes, straight)

    interrupted = tmp_path / "interrupted"
    original = Trainer.train_one_epoch

    def interrupt_second_epoch(self):
        if self.epoch == 1:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "train_one_epoch", interrupt_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        _train(tiny_shapes, interrupted)
    monkeypatch.setattr(Trainer, "train_one_epoch", original)
    after_one = RunCheckpoint.load(interrupted / "last.pt")  # still a valid checkpoint
    assert after_one.epoch == 1

    api.resume(str(interrupted / "last.pt"), log=_quiet)
    a = RunCheckpoint.load(straight / "last.pt")
    b = RunCheckpoint.load(interrupted / "last.pt")
    assert b.epoch == 2
    assert _weights_equal(a.model, b.model)
    state_a, state_b = a.training.optimizer["state"], b.training.optimizer["state"]
    assert state_a.keys() == state_b.keys()
    for k in state_a:
        assert torch.equal(state_a[k]["momentum_buffer"], state_b[k]["momentum_buffer"])
    rows = list(csv.DictReader(open(interrupted / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]


def test_resume_of_finished_run_does_nothing_and_can_extend(tiny_shapes, tmp_path):
    run = tmp_path / "run"
    _train(tiny_shapes, run, epochs=1)
    messages = []
    api.resume(str(run / "last.pt"), log=messages.append)
    assert any("nothing to do" in m for m in messages)
    api.resume(str(run / "last.pt"), epochs=2, log=_quiet)
    assert RunCheckpoint.load(run / "last.pt").epoch == 2


def test_ema_is_saved_and_evaluated(tiny_shapes, tmp_path):
    _train(tiny_shapes, tmp_path / "run", epochs=1, ema=True, ema_decay=0.9, ema_tau=1.0)
    ckpt = RunCheckpoint.load(tmp_path / "run" / "last.pt")
    assert ckpt.training.ema["updates"] == 2
    assert ckpt.training.train_model is not None
    assert not _weights_equal(ckpt.model, ckpt.training.train_model)  # inference weights are the average


def test_amp_requested_on_cpu_is_disabled(tiny_shapes, tmp_path):
    messages = []
    api.train(BUILDER, str(tiny_shapes["train"]), out=str(tmp_path / "run"), epochs=1,
              config=TrainConfig(batch_size=4, workers=0, amp=True), log=messages.append)
    assert any("AMP is only used on CUDA" in m for m in messages)
    scaler = RunCheckpoint.load(tmp_path / "run" / "last.pt").training.scaler
    assert not scaler or not scaler.get("_enabled", False)
    assert (tmp_path / "run" / "best.pt").exists()  # no validation set: best by training loss


def test_labels_beyond_model_classes_are_named(tiny_shapes, tmp_path):
    with pytest.raises(ValueError, match=r"labels 3..5 \(\['triangle', 'star', 'cross'\]\) are beyond"):
        api.train(BUILDER, str(tiny_shapes["train"]), out=str(tmp_path / "run"), epochs=1, num_classes=3,
                  config=TrainConfig(batch_size=4, workers=0), log=_quiet)


def test_check_labels_names_the_image():
    from torchdet.training.loop import check_labels

    targets = [{"labels": torch.tensor([1, 2]), "image_id": 4}, {"labels": torch.tensor([7]), "image_id": 9}]
    with pytest.raises(ValueError, match="image 9 has label 7, but the model has 2 classes"):
        check_labels(targets, 3, ["__background__", "a", "b"])


def test_diverging_loss_says_what_to_do(tiny_shapes, tmp_path):
    with pytest.raises(FloatingPointError, match="Lower the learning rate"):
        api.train(BUILDER, str(tiny_shapes["train"]), out=str(tmp_path / "run"), epochs=1,
                  config=TrainConfig(batch_size=4, workers=0, lr=1e30, warmup_iters=0), log=_quiet)
