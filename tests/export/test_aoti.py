"""AOTInductor: `torchdet export --format aoti` writes a package that a script with no torchdet
model code runs on the CPU, with eager's detections at another image size.

Compiling a package takes minutes on a small machine: `-m slow`.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from _oracle import assert_detections_match, build_filled, load_case
from torchdet.cli import main
from torchdet.models.registry import get_model_builder as get_builder
from torchdet.export.aoti import to_aoti

NAME = "ssdlite320_mobilenet_v3_large"
ROOT = Path(__file__).resolve().parents[2]


def test_package_must_be_a_pt2_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.pt2"):
        to_aoti(torch.nn.Linear(1, 1), tmp_path / "model.so")


@pytest.mark.slow
def test_cli_package_runs_without_model_code(tmp_path: Path) -> None:
    case = load_case(NAME)
    model = build_filled(get_builder(NAME), case["weights_seed"], **case["kwargs"]).eval()
    checkpoint = tmp_path / "best.pt"
    torch.save({"builder": NAME, "builder_kwargs": dict(case["kwargs"]), "model": model.state_dict()}, checkpoint)
    package = tmp_path / "model.pt2"
    assert main(["export", "--weights", str(checkpoint), "--format", "aoti", "--image-size", "224", "256",
                 "--out", str(package)]) == 0
    # A fresh interpreter that never imports torchdet.models: only the ops the package calls.
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "run_aoti.py"), str(package), "--random", "97", "411",
                           "--check-no-model-code"], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line.split() for line in done.stdout.splitlines() if not line.startswith("#")]
    got = {"labels": torch.tensor([int(v[0]) for v in lines]), "scores": torch.tensor([float(v[1]) for v in lines]),
           "boxes": torch.tensor([[float(x) for x in v[2:6]] for v in lines]).reshape(-1, 4)}
    image = torch.rand(3, 97, 411, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model([image])
    # The script prints 4 decimals of the score and 2 of each corner: within the oracle's tolerances.
    assert_detections_match([got], expected)
