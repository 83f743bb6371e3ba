"""Two training processes with torch.distributed (gloo, CPU) launched by torchrun, on tiny data."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import torch

from _toy_detector import BUILDER
from torchdet.checkpoint import RunCheckpoint

SRC = Path(__file__).resolve().parents[2] / "src"
TESTS = Path(__file__).resolve().parents[1]


def test_two_process_gloo_training(tiny_shapes, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)]), "OMP_NUM_THREADS": "1",
           "CI": "true"}
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "torchdet.cli", "train", "--model", BUILDER, "--data", str(tiny_shapes["train"]),
           "--val-data", str(tiny_shapes["val"]), "--epochs", "2", "--batch-size", "2", "--workers", "0",
           "--device", "cpu", "--out", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "x 2 processes" in proc.stdout
    assert proc.stdout.count("epoch 2/2") == 1  # only the first process logs
    ckpt = RunCheckpoint.load(out / "last.pt")
    assert ckpt.epoch == 2
    assert len(ckpt.training.rng_per_rank) == 2
    # 8 images, 2 processes x batch 2 -> 2 iterations per epoch
    assert ckpt.training.scheduler["last_epoch"] == 4
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert rows[-1]["bbox/AP"] != ""
    assert all(torch.isfinite(v).all() for v in ckpt.model.values() if v.is_floating_point())
