"""Recipes: chosen by the situation, explicit settings win, BatchNorm recalibrated before validation."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from _toy_detector import BUILDER
from torchdet.checkpoint import RunCheckpoint
from torchdet.cli import main
from torchdet.training import api
from torchdet.training.loop import TrainConfig, Trainer
from torchdet.training.recipes import RECIPES, choose_recipe, resolve_config


def test_the_situation_chooses_the_recipe():
    assert choose_recipe(None, pretrained=False).name == "scratch"
    assert choose_recipe(None, pretrained=True).name == "finetune"
    assert choose_recipe("plain", pretrained=True).name == "plain"
    with pytest.raises(ValueError, match="unknown recipe 'fast'.*finetune"):
        choose_recipe("fast", pretrained=False)


def test_explicit_settings_win_and_only_they_change():
    scratch = RECIPES["scratch"]
    base = resolve_config(scratch, {"batch_size": 4})
    assert base.optimizer == "adamw" and base.ema and base.bn_recalibration_batches == 8
    assert base.base_lr() == pytest.approx(scratch.lr_per_16 * 4 / 16)
    assert base.base_lr(world_size=2) == pytest.approx(2 * base.base_lr())
    mine = resolve_config(scratch, {"batch_size": 4, "lr": 0.01, "ema": False, "augment": ("hflip",)})
    assert mine.base_lr() == 0.01 and not mine.ema and mine.augment == ("hflip",)
    assert (mine.optimizer, mine.schedule, mine.clip_grad_norm) == (base.optimizer, base.schedule, base.clip_grad_norm)
    with pytest.raises(ValueError, match="unknown training settings"):
        resolve_config(scratch, {"learning_rate": 0.1})
    with pytest.raises(ValueError, match="unknown augmentation"):
        TrainConfig(augment=("mixup",))


def test_cli_says_the_recipe_and_records_flags_over_it(tiny_shapes, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--model", BUILDER, "--data", str(tiny_shapes["train"]), "--epochs", "1",
                 "--batch-size", "4", "--out", str(out), "--workers", "0", "--optimizer", "sgd",
                 "--augment", "hflip", "photometric"]) == 0
    printed = capsys.readouterr().out
    assert "recipe scratch (no pretrained weights)" in printed and "flags override" in printed
    config = RunCheckpoint.load(out / "last.pt").resumable(str(out / "last.pt")).config
    assert config["recipe"] == "scratch" and config["optimizer"] == "sgd"  # the flag won
    assert config["ema"] is True and tuple(config["augment"]) == ("hflip", "photometric")  # the recipe's / flag's


def test_validation_recalibrates_stale_batchnorm(tiny_shapes, tmp_path):
    from torchdet.checkpoint import ModelSpec
    from torchdet.data.formats import open_dataset
    from torchdet.models.registry import build_model

    train_set = open_dataset("coco", str(tiny_shapes["train"]))
    val_set = open_dataset("coco", str(tiny_shapes["val"]))
    kwargs = {"num_classes": train_set.num_classes}
    torch.manual_seed(0)
    model = build_model("fcos_tiny", kwargs)
    config = TrainConfig(epochs=3, batch_size=4, workers=0, optimizer="adamw", lr=2e-3, warmup_iters=5,
                         bn_recalibration_batches=3, ema=False)
    trainer = Trainer(model, ModelSpec("fcos_tiny", kwargs, list(train_set.categories)), train_set, val_set,
                      config, tmp_path, device=torch.device("cpu"), log=lambda m: None)
    trained = trainer.fit().last.losses["loss"]
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms

    def spoil() -> None:
        for m in norms:  # statistics of weights long gone, as after a fast phase of training
            m.running_mean.add_(3 * m.running_var.sqrt() * torch.randn_like(m.running_mean))
            m.running_var.mul_(25.0)

    spoil()
    trainer.config.bn_recalibration_batches = 0
    stale = trainer.validate().losses["loss"]
    trainer.config.bn_recalibration_batches = 3
    fresh = trainer.validate().losses["loss"]
    assert stale > trained * 1.05, (stale, trained, fresh)  # the spike
    assert abs(fresh - trained) < 0.25 * (stale - trained), (fresh, trained, stale)  # gone
