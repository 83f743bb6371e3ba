"""Checkpoints: atomic writes, clear errors on bad files, random states, weight mismatches."""
from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch
from torch import nn

from torchdet.engine import checkpoint as ckpt_mod
from torchdet.engine.checkpoint import (capture_rng_state, load_checkpoint, load_model_weights,
                                        require_training_checkpoint, restore_rng_state, save_checkpoint)


def test_save_is_atomic_and_cleans_up_on_interrupt(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint({"model": {"w": torch.ones(2)}, "epoch": 1}, path)
    assert load_checkpoint(path)["torchdet_version"]

    def interrupted_replace(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt_mod.os, "replace", interrupted_replace)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"model": {"w": torch.zeros(2)}, "epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1  # the previous checkpoint survives
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]  # no temp file left behind


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="cannot read checkpoint .*corrupt.pt"):
        load_checkpoint(corrupt)
    plain = tmp_path / "plain.pt"
    torch.save([1, 2], plain)
    with pytest.raises(ValueError, match="not a torchdet checkpoint"):
        load_checkpoint(plain)
    weights_only = tmp_path / "weights.pt"
    torch.save({"model": {}}, weights_only)
    with pytest.raises(ValueError, match="holds weights only"):
        require_training_checkpoint(load_checkpoint(weights_only), weights_only)


def test_rng_state_round_trip():
    state = capture_rng_state()
    a = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    restore_rng_state(state)
    b = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    assert a == b


def test_mismatched_weights_say_what_differs():
    model = nn.Sequential(nn.Linear(2, 3))
    other = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1)).state_dict()
    with pytest.raises(ValueError, match="another architecture") as info:
        load_model_weights(model, other, "'x.pt'")
    assert "shape mismatches" in str(info.value) and "unexpected keys" in str(info.value)
