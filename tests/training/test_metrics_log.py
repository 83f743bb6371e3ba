"""The metrics CSV (rows per epoch, growing columns, resumed runs) and its plot."""
from __future__ import annotations

import math

from torchdet.training.metrics_log import append_metrics, plot_metrics, read_metrics


def test_append_replaces_epoch_and_unions_columns(tmp_path):
    path = tmp_path / "metrics.csv"
    append_metrics({"epoch": 1, "lr": 0.01, "train/loss": 1.5}, path)
    append_metrics({"epoch": 2, "lr": 0.01, "train/loss": 1.2, "bbox/AP": 0.3}, path)
    rows = append_metrics({"epoch": 2, "lr": 0.001, "train/loss": 1.1, "bbox/AP": 0.4}, path)
    assert [r["epoch"] for r in rows] == [1, 2]
    again = read_metrics(path)
    assert again[1]["bbox/AP"] == 0.4 and math.isnan(again[0]["bbox/AP"])
    assert path.read_text().splitlines()[0].startswith("epoch,lr")


def test_plot_writes_png(tmp_path):
    rows = [{"epoch": e, "train/loss": 2.0 / e, "val/loss": 2.2 / e, "bbox/AP": 0.1 * e, "bbox/AP50": 0.2 * e}
            for e in (1, 2, 3)]
    out = plot_metrics(rows, tmp_path / "plot.png")
    assert out is not None and out.read_bytes()[:4] == b"\x89PNG"
