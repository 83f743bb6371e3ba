"""ByteTracker: the assignment solver, the motion model, and tracks through a generated video."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from inference.mot import clear_mot
from inference.scenes import moving_squares, noisy_detections
from torchdet.inference.tracking import ByteTracker, KalmanBoxFilter, linear_assignment


def _brute_force(cost):
    n, m = cost.shape
    if n <= m:
        return min(sum(cost[i, p[i]] for i in range(n)) for p in itertools.permutations(range(m), n))
    return _brute_force(cost.T)


@pytest.mark.parametrize("shape", [(3, 3), (2, 5), (5, 3), (4, 4)])
def test_linear_assignment_is_optimal(shape):
    rng = np.random.default_rng(sum(shape))
    for _ in range(20):
        cost = rng.uniform(0, 1, shape)
        pairs = linear_assignment(cost)
        assert len(pairs) == min(shape)
        assert len({r for r, _ in pairs}) == len({c for _, c in pairs}) == len(pairs)
        assert sum(cost[r, c] for r, c in pairs) == pytest.approx(_brute_force(cost))
    assert linear_assignment(np.zeros((0, 3))) == []


def test_kalman_filter_learns_a_constant_velocity():
    kf = KalmanBoxFilter()
    mean, cov = kf.initiate(np.array([10.0, 20.0, 1.0, 16.0]))
    for step in range(1, 15):
        mean, cov = kf.predict(mean, cov)
        mean, cov = kf.update(mean, cov, np.array([10.0 + 3 * step, 20.0 - 2 * step, 1.0, 16.0]))
    predicted, _ = kf.predict(mean, cov)
    assert predicted[:2] == pytest.approx([10.0 + 3 * 15, 20.0 - 2 * 15], abs=0.5)
    assert predicted[4:6] == pytest.approx([3.0, -2.0], abs=0.2)


def _track(frames_truth, seed=0, **options):
    rng = np.random.default_rng(seed)
    tracker = ByteTracker(**options)
    predicted = []
    for truth in frames_truth:
        out = tracker.update(noisy_detections(truth, rng))
        predicted.append({int(i): b.tolist() for i, b in zip(out["track_ids"], out["boxes"])})
    return predicted


def test_tracks_keep_their_ids_through_noise_misses_and_false_positives():
    """4 squares bouncing for 120 frames; the detector misses 10%, scores 15% low, adds false positives.

    A tracker that only reports detections cannot beat MOTA ~0.9 here (the misses)."""
    results = []
    for scene in range(3):
        _, truth = moving_squares(num_frames=120, num_objects=4, seed=scene)
        results.append(clear_mot(truth, _track(truth, seed=scene)))
    assert all(r["mota"] > 0.8 for r in results), results
    assert all(r["id_switches"] <= 3 for r in results), results
    assert sum(r["id_switches"] for r in results) <= 5, results
    assert sum(r["false_positives"] for r in results) <= 3, results  # the detector's false positives are filtered


def test_low_score_detections_keep_tracks_alive():
    truth = [{1: [10.0 + 2 * t, 10.0, 30.0 + 2 * t, 30.0]} for t in range(12)]
    tracker = ByteTracker(lost_buffer=0)
    ids = []
    for t, frame in enumerate(truth):
        score = 0.3 if 4 <= t < 8 else 0.9  # occluded: weak detections only
        out = tracker.update({"boxes": torch.tensor([frame[1]]), "scores": torch.tensor([score]),
                              "labels": torch.tensor([1])})
        ids += out["track_ids"].tolist()
    assert ids == [1] * 12


def test_lost_tracks_are_found_again_within_the_buffer():
    boxes = [[10.0 + 2 * t, 10.0, 30.0 + 2 * t, 30.0] for t in range(20)]
    empty = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}
    for buffer, expected in ((10, {1}), (2, {1, 2})):
        tracker = ByteTracker(lost_buffer=buffer)
        ids = set()
        for t, box in enumerate(boxes):
            frame = empty if 8 <= t < 13 else {"boxes": torch.tensor([box]), "scores": torch.tensor([0.9]),
                                               "labels": torch.tensor([1])}
            ids |= set(tracker.update(frame)["track_ids"].tolist())
        assert ids == expected


def test_other_entries_follow_and_bad_input():
    tracker = ByteTracker()
    out = tracker.update({"boxes": torch.tensor([[0, 0, 10, 10.], [20, 20, 30, 30]]), "scores": torch.tensor([0.9, 0.2]),
                          "labels": torch.tensor([1, 2]), "masks": torch.ones(2, 1, 4, 4)})
    assert out["track_ids"].tolist() == [1] and out["labels"].tolist() == [1] and out["masks"].shape == (1, 1, 4, 4)
    with pytest.raises(ValueError, match="must match"):
        tracker.update({"boxes": torch.zeros(2, 4), "scores": torch.zeros(1), "labels": torch.zeros(2)})
    with pytest.raises(ValueError, match="low_thresh"):
        ByteTracker(low_thresh=0.6, high_thresh=0.5)
