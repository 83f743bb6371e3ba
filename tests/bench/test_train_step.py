"""Training-step benchmark: valid seeded targets, consistent figures (no timing assertions)."""
import pytest
import torch

from torchdet.bench.baseline import REPO_BASELINE, read_baseline
from torchdet.bench.train_step import TRAIN_BUILDERS, format_train, random_targets, run_train


def test_every_train_builder_has_a_torchvision_figure():
    assert set(TRAIN_BUILDERS) <= set(read_baseline(REPO_BASELINE).train_refs)


def test_random_targets_are_valid_and_seeded():
    a = random_targets(2, 48, 64, masks=True, num_keypoints=5, seed=1)
    b = random_targets(2, 48, 64, masks=True, num_keypoints=5, seed=1)
    for t, u in zip(a, b):
        boxes = t["boxes"]
        assert boxes.shape == (3, 4) and torch.equal(boxes, u["boxes"])
        assert (boxes[:, 0] < boxes[:, 2]).all() and (boxes[:, 1] < boxes[:, 3]).all()
        assert (boxes >= 0).all() and (boxes[:, 2] <= 64).all() and (boxes[:, 3] <= 48).all()
        assert t["labels"].dtype == torch.int64 and ((t["labels"] >= 1) & (t["labels"] < 91)).all()
        assert t["masks"].shape == (3, 48, 64) and t["masks"].sum() > 0
        kp = t["keypoints"]
        assert kp.shape == (3, 5, 3) and (kp[..., 0] >= boxes[:, None, 0]).all() and (kp[..., 2] == 1).all()
    assert not torch.equal(a[0]["boxes"], random_targets(2, 48, 64, seed=2)[0]["boxes"])


def test_train_step_figures_are_consistent():
    lines = []
    baseline = read_baseline(REPO_BASELINE)
    (r,) = run_train(["ssdlite320_mobilenet_v3_large"], repeats=1, height=64, width=80, echo=lines.append,
                     baseline=baseline)
    assert r.images == 2 and r.ms > 0 and min(r.forward_ms, r.backward_ms, r.optimizer_ms) > 0
    assert r.ms == pytest.approx(r.forward_ms + r.backward_ms + r.optimizer_ms)  # one repeat: parts add up
    tv = baseline.train_refs[r.builder]
    assert r.in_conv_refs == pytest.approx(r.ms / r.conv_ref_ms) and r.ratio == pytest.approx(r.in_conv_refs / tv)
    assert set(r.losses) == {"bbox_regression", "classification"}
    assert r.gflop > 0 and r.fraction == pytest.approx(r.gflops / r.conv_ref_gflops)
    assert r.builder in format_train([r]) and "SGD" in "\n".join(lines)
