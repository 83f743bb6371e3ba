"""The time-to-accuracy benchmark's plumbing, on a tiny model and dataset (its figures come from `make bench-train-quality`)."""
from __future__ import annotations

import json

from _tiny_shapes import one_thread_quiet  # noqa: F401 - fixture
from torchdet.bench.train_quality import CurvePoint, QualityRun, compare, run_train_quality


def test_equal_time_takes_the_last_evaluation_within_the_budget():
    slow = QualityRun("recipe", "m", [CurvePoint(10, 20.0, 0.2, 0.4), CurvePoint(20, 40.0, 0.3, 0.6)])
    fast = QualityRun("plain", "m", [CurvePoint(10, 10.0, 0.1, 0.2), CurvePoint(20, 20.0, 0.15, 0.3)])
    row = compare(fast, slow)
    assert row["equal_time_s"] == 20.0
    assert row["recipe_at_equal_time"]["ap"] == 0.2 and row["plain_at_equal_time"]["ap"] == 0.15
    assert row["ap50_ratio"] == 2.0
    assert slow.at_time(5.0).ap == 0.0


def test_runs_both_loops_and_writes_report_and_curves(tmp_path, one_thread_quiet):
    rows = run_train_quality(["fasterrcnn_tiny"], iterations=4, out=tmp_path, splits={"train": 8, "val": 2},
                             batch_size=4, log=lambda m: None)
    assert len(rows) == 1 and rows[0]["iterations"] == 4
    report = json.loads((tmp_path / "report.json").read_text())
    assert [r["name"] for r in report["runs"]] == ["plain", "recipe"]
    assert all(len(r["curve"]) == 2 for r in report["runs"])  # an evaluation per epoch of 2 iterations
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
