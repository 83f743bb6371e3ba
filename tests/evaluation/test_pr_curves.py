"""Precision-recall curves are pycocotools' own: their means are the per-class AP and AP50."""
from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation.test_confusion import DETS, GT, _coco
from torchdet.evaluation.coco_eval import evaluate_coco
from torchdet.evaluation.pr_curves import plot_pr_curves


def test_curve_means_are_the_per_class_ap(tmp_path):
    coco = _coco(GT)
    metrics = evaluate_coco(coco, [dict(d) for d in DETS], ["bbox"])
    curves = metrics.pr_curves["bbox"]
    assert len(curves["recall"]) == 101 and curves["recall"][0] == 0.0 and curves["recall"][-1] == 1.0
    for row, curve in zip(metrics.per_class["bbox"], curves["classes"]):
        assert row["id"] == curve["id"]
        if math.isnan(row["AP"]):
            assert curve["precision"] == []
            continue
        assert np.mean(curve["precision50"]) == pytest.approx(row["AP50"], abs=1e-5)
        assert np.mean(curve["precision"]) == pytest.approx(row["AP"], abs=1e-5)
        assert all(a >= b - 1e-9 for a, b in zip(curve["precision50"], curve["precision50"][1:]))  # interpolated
    assert plot_pr_curves(curves, tmp_path / "pr.png").read_bytes()[:4] == b"\x89PNG"
