"""`torchdet demo --quick`: the demo's whole pipeline on a few tiny images."""
from __future__ import annotations

import json

from torchdet.cli import main


def test_quick_demo_writes_everything(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "bbox AP" in printed and "pictures:" in printed
    for path in ("train/last.pt", "train/best.pt", "train/metrics.csv", "train/plot.png", "eval/metrics.json",
                 "eval/detections.json", "predictions/predictions.json"):
        assert (out / path).exists(), path
    assert "AP50" in json.loads((out / "eval" / "metrics.json").read_text())["bbox"]
    assert len(list((out / "predictions").glob("*.png"))) == 2
    # a second run reuses the generated data
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    assert "reusing the shapes dataset" in capsys.readouterr().out
