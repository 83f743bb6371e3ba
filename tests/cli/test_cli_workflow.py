"""train -> evaluate -> predict through the CLI, as a user runs them (toy detector, tiny data)."""
from __future__ import annotations

import csv
import json

from _tiny_shapes import CATEGORY_IDS
from torchdet.cli import main
from torchdet.checkpoint import RunCheckpoint


def test_train_writes_run(toy_run):
    assert {"last.pt", "best.pt", "metrics.csv", "plot.png"} <= {p.name for p in toy_run.iterdir()}
    ckpt = RunCheckpoint.load(toy_run / "last.pt")
    assert ckpt.extra["data"]["val_data"].endswith("_annotations.coco.json")


def test_evaluate_writes_metrics_and_detections_in_dataset_ids(toy_run, cli_shapes, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", "--weights", str(toy_run / "best.pt"), "--data", str(cli_shapes["val"]),
                 "--out", str(out), "--workers", "0"]) == 0
    printed = capsys.readouterr().out
    assert "[bbox] AP" in printed and "square" in printed  # headline and per-class table
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"bbox"}
    assert {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100"} <= set(metrics["bbox"])
    detections = json.loads((out / "detections.json").read_text())
    assert detections, "the toy model predicts something on every image"
    assert {d["image_id"] for d in detections} <= {101, 102, 103, 104}
    assert {d["category_id"] for d in detections} <= set(CATEGORY_IDS.values())
    assert all(len(d["bbox"]) == 4 and 0 <= d["score"] <= 1 for d in detections)
    per_class = json.loads((out / "per_class.json").read_text())
    assert [r["id"] for r in per_class["bbox"]] == sorted(CATEGORY_IDS.values())
    confusion = json.loads((out / "confusion_matrix.json").read_text())
    size = len(CATEGORY_IDS) + 1
    assert confusion["names"][-1] == "background" and len(confusion["matrix"]) == size
    assert all(len(row) == size for row in confusion["matrix"])
    curves = json.loads((out / "pr_curves.json").read_text())
    assert [c["id"] for c in curves["classes"]] == sorted(CATEGORY_IDS.values())
    for picture in ("confusion_matrix.png", "pr_curves.png"):
        assert (out / picture).read_bytes()[:4] == b"\x89PNG"


def test_predict_writes_json_and_pictures(toy_run, cli_shapes, tmp_path, capsys):
    folder = cli_shapes["val"].parent
    out = tmp_path / "pred"
    assert main(["predict", "--weights", str(toy_run / "last.pt"), str(folder), "--out", str(out),
                 "--score-thresh", "0.0", "--picture-scale", "2"]) == 0
    predictions = json.loads((out / "predictions.json").read_text())
    assert {p["file_name"] for p in predictions} == {str(p) for p in folder.glob("*.png")}
    assert {"image_id", "category_id", "category_name", "bbox", "score"} <= set(predictions[0])
    assert sorted(p.name for p in out.glob("*.png")) == sorted(p.name for p in folder.glob("*.png"))
    from PIL import Image

    assert Image.open(next(out.glob("*.png"))).size == (128, 128)  # 64 px images drawn 2x
    assert "pictures" in capsys.readouterr().out


def test_predict_threshold_filters(toy_run, cli_shapes, tmp_path):
    out = tmp_path / "pred"
    image = sorted(cli_shapes["val"].parent.glob("*.png"))[0]
    assert main(["predict", "--weights", str(toy_run / "last.pt"), str(image), "--out", str(out),
                 "--score-thresh", "0.99", "--no-pictures"]) == 0
    assert json.loads((out / "predictions.json").read_text()) == []
    assert not list(out.glob("*.png"))


def test_resume_continues_the_run(cli_shapes, tmp_path, capsys):
    from _toy_detector import BUILDER

    out = tmp_path / "run"
    args = ["train", "--model", BUILDER, "--data", str(cli_shapes["train"]), "--epochs", "1", "--batch-size", "4",
            "--workers", "0", "--out", str(out)]
    assert main(args) == 0
    assert main(["train", "--resume", str(out / "last.pt"), "--epochs", "2", "--batch-size", "8"]) == 0
    printed = capsys.readouterr().out
    assert "ignoring --batch-size" in printed and "resuming" in printed
    assert RunCheckpoint.load(out / "last.pt").epoch == 2
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
