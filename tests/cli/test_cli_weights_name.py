"""`--weights DEFAULT --model NAME`: a builder's published weights, read from the torch.hub cache."""
from __future__ import annotations

import json

import pytest
import torch

from torchdet.cli import main

BUILDER = "ssdlite320_mobilenet_v3_large"


@pytest.fixture
def cached_default(tmp_path, monkeypatch):
    """Random weights saved in a private $TORCH_HOME under the DEFAULT weights' official file name."""
    from torchdet.models.registry import build_model
    from torchdet.weights.registry import get_model_weights

    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    weights = get_model_weights(BUILDER).DEFAULT
    torch.manual_seed(0)
    state_dict = build_model(BUILDER, {"num_classes": 91}).state_dict()
    (home / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(state_dict, home / "hub" / "checkpoints" / weights.file_name)
    return weights


def test_predict_with_a_weights_name(cached_default, cli_shapes, tmp_path, capsys):
    image = sorted(cli_shapes["val"].parent.glob("*.png"))[0]
    out = tmp_path / "pred"
    code = main(["predict", "--model", BUILDER, "--weights", "DEFAULT", str(image), "--out", str(out),
                 "--score-thresh", "0.0", "--no-pictures"])
    assert code == 0, capsys.readouterr().err
    predictions = json.loads((out / "predictions.json").read_text())
    from torchdet.weights.meta import COCO_CATEGORIES

    assert all(p["category_name"] == COCO_CATEGORIES[p["category_id"]] for p in predictions)


def test_weights_name_needs_a_model(tmp_path, capsys):
    assert main(["predict", "--weights", "DEFAULT", str(tmp_path), "--out", str(tmp_path / "p")]) == 1
    assert "give its builder too" in capsys.readouterr().err
