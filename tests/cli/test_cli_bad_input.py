"""Bad input gets one clear line naming what is wrong, and exit code 1."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from _toy_detector import BUILDER
from torchdet.cli import main


def _train(data, out, *extra):
    return main(["train", "--model", BUILDER, "--data", str(data), "--epochs", "1", "--batch-size", "4",
                 "--workers", "0", "--out", str(out), *extra])


def _copy_split(cli_shapes, tmp_path):
    split = tmp_path / "train"
    shutil.copytree(cli_shapes["train"].parent, split)
    return split / "_annotations.coco.json"


def test_missing_image_is_named_and_can_be_skipped(cli_shapes, tmp_path, capsys):
    data = _copy_split(cli_shapes, tmp_path)
    (data.parent / "000003.png").unlink()
    assert _train(data, tmp_path / "run") == 1
    err = capsys.readouterr().err
    assert "torchdet train: error:" in err and "000003.png" in err
    with pytest.warns(UserWarning, match="skipped 1 of 8 images"):
        assert _train(data, tmp_path / "run", "--skip-bad-images") == 0
    assert "skipped 1 unreadable training image(s)" in capsys.readouterr().out


def test_corrupt_image_is_named(cli_shapes, tmp_path, capsys):
    data = _copy_split(cli_shapes, tmp_path)
    image = data.parent / "000002.png"
    image.write_bytes(image.read_bytes()[:60])  # truncated
    assert _train(data, tmp_path / "run") == 1
    assert "000002.png" in capsys.readouterr().err


def test_not_a_coco_file_says_what_is_missing(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": [], "labels": []}))
    assert _train(bad, tmp_path / "run") == 1
    err = capsys.readouterr().err
    assert "not a COCO annotation file" in err and "'annotations'" in err and "'categories'" in err


def test_empty_dataset(tmp_path, capsys):
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]}))
    assert _train(empty, tmp_path / "run") == 1
    assert "empty" in capsys.readouterr().err


def test_labels_beyond_the_model_classes(cli_shapes, tmp_path, capsys):
    assert _train(cli_shapes["train"], tmp_path / "run", "--num-classes", "3") == 1
    assert "beyond the model's classes" in capsys.readouterr().err


def test_checkpoint_of_another_architecture(toy_run, cli_shapes, tmp_path, capsys):
    args = ["evaluate", "--weights", str(toy_run / "last.pt"), "--data", str(cli_shapes["val"]), "--workers", "0"]
    assert main(args + ["--model", "fcos_tiny"]) == 1
    assert "holds a _toy_detector:toy_detector checkpoint, not fcos_tiny" in capsys.readouterr().err
    weights_only = tmp_path / "weights.pt"
    torch.save({"model": torch.load(toy_run / "last.pt", weights_only=False)["model"]}, weights_only)
    assert main(["predict", "--weights", str(weights_only), "--model", "fcos_tiny", "--num-classes", "6",
                 str(cli_shapes["val"].parent), "--out", str(tmp_path / "p")]) == 1
    err = capsys.readouterr().err
    assert "does not fit this FCOS" in err and "another architecture" in err


def test_missing_checkpoint_and_sources(toy_run, tmp_path, capsys):
    assert main(["predict", "--weights", str(tmp_path / "nope.pt"), str(tmp_path), "--out", str(tmp_path)]) == 1
    assert "nope.pt" in capsys.readouterr().err
    assert main(["predict", "--weights", str(toy_run / "last.pt"), str(tmp_path / "none.jpg"),
                 "--out", str(tmp_path / "p")]) == 1
    assert "none.jpg" in capsys.readouterr().err


def test_train_needs_its_options(capsys):
    assert main(["train", "--model", BUILDER]) == 1
    assert "missing --data --epochs --out" in capsys.readouterr().err
