"""Multi-object tracking by detection: ByteTrack's association on torchdet's detections.

`ByteTracker.update(detections)` takes one frame's detections (the model's dict) and returns
those that belong to a track, with a persistent ``track_ids`` entry. Per frame:

1. every track's box is predicted by a constant-velocity Kalman filter (state: centre, aspect
   ratio, height and their velocities, as in SORT/ByteTrack);
2. tracked and recently lost tracks are matched to the high-score detections by IoU
   (optimal assignment), then the still-unmatched tracked ones to the low-score detections -
   ByteTrack's idea: an occluded object's weak detection keeps its track alive;
3. tentative tracks (born last frame) are matched to what is left of the high-score ones;
   matched they get an id, unmatched they are dropped;
4. a track unmatched in both passes is lost, kept `lost_buffer` frames for re-identification;
5. a high-score detection matched nowhere (score >= `new_track_thresh`) starts a tentative track.

Written here rather than taken from supervision (whose ByteTrack works on its own Detections
type) so that tracking needs neither supervision nor OpenCV; assignment is a small Hungarian
solver in NumPy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from torchdet.errors import InvalidInputError

TENTATIVE, TRACKED, LOST = "tentative", "tracked", "lost"


# -- assignment -----------------------------------------------------------------------------------
def linear_assignment(cost: np.ndarray) -> List[Tuple[int, int]]:
    """Minimum-cost one-to-one assignment (Hungarian algorithm with potentials) of a ``[N, M]`` cost
    matrix; returns min(N, M) (row, column) pairs sorted by row."""
    cost = np.asarray(cost, dtype=np.float64)
    if cost.size == 0:
        return []
    transposed = cost.shape[0] > cost.shape[1]
    if transposed:
        cost = cost.T
    n, m = cost.shape
    u, v = np.zeros(n + 1), np.zeros(m + 1)
    owner = np.zeros(m + 1, dtype=np.int64)  # owner[j]: the row (1-based) assigned to column j, 0 = none
    way = np.zeros(m + 1, dtype=np.int64)
    for i in range(1, n + 1):
        owner[0] = i
        j0 = 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = owner[j0]
            free = ~used[1:]
            reduced = cost[i0 - 1] - u[i0] - v[1:]
            better = free & (reduced < minv[1:])
            minv[1:][better] = reduced[better]
            way[1:][better] = j0
            candidates = np.where(free, minv[1:], np.inf)
            j1 = int(candidates.argmin()) + 1
            delta = candidates[j1 - 1]
            u[owner[used]] += delta
            v[used] -= delta
            minv[1:][free] -= delta
            j0 = j1
            if owner[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            owner[j0] = owner[j1]
            j0 = j1
    pairs = [(int(owner[j]) - 1, j - 1) for j in range(1, m + 1) if owner[j]]
    if transposed:
        pairs = [(c, r) for r, c in pairs]
    return sorted(pairs)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[N, 4]`` x ``[M, 4]`` xyxy -> ``[N, M]`` IoU."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(-1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


# -- motion model ---------------------------------------------------------------------------------
class KalmanBoxFilter:
    """Constant-velocity Kalman filter over (cx, cy, aspect w/h, h) and their velocities.

    Noise scales with the box height (position 1/20, velocity 1/160 of it), as in ByteTrack.
    """

    std_position = 1.0 / 20
    std_velocity = 1.0 / 160

    def __init__(self) -> None:
        self.motion = np.eye(8)
        self.motion[:4, 4:] = np.eye(4)  # x' = x + v (one frame)
        self.observe = np.eye(4, 8)

    def initiate(self, xyah: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        h = xyah[3]
        std = [2 * self.std_position * h, 2 * self.std_position * h, 1e-2, 2 * self.std_position * h,
               10 * self.std_velocity * h, 10 * self.std_velocity * h, 1e-5, 10 * self.std_velocity * h]
        return np.concatenate([xyah, np.zeros(4)]), np.diag(np.square(std))

    def predict(self, mean: np.ndarray, cov: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        h = mean[3]
        std = [self.std_position * h, self.std_position * h, 1e-2, self.std_position * h,
               self.std_velocity * h, self.std_velocity * h, 1e-5, self.std_velocity * h]
        mean = self.motion @ mean
        cov = self.motion @ cov @ self.motion.T + np.diag(np.square(std))
        return mean, cov

    def update(self, mean: np.ndarray, cov: np.ndarray, xyah: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        h = mean[3]
        noise = np.diag(np.square([self.std_position * h, self.std_position * h, 1e-1, self.std_position * h]))
        projected = self.observe @ cov @ self.observe.T + noise  # [4, 4]
        gain = np.linalg.solve(projected, self.observe @ cov).T  # [8, 4]: cov H^T S^-1 (S, cov symmetric)
        mean = mean + gain @ (xyah - self.observe @ mean)
        cov = cov - gain @ projected @ gain.T
        return mean, cov


def _xyah(box: np.ndarray) -> np.ndarray:
    w, h = box[2] - box[0], max(box[3] - box[1], 1e-6)
    return np.array([box[0] + w / 2, box[1] + h / 2, w / h, h])


def _xyxy(xyah: np.ndarray) -> np.ndarray:
    cx, cy, a, h = xyah[:4]
    w = a * h
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


@dataclass(eq=False)
class _Track:
    mean: np.ndarray
    cov: np.ndarray
    label: int
    score: float
    state: str
    last_frame: int
    track_id: int = 0  # given when the track is confirmed

    def box(self) -> np.ndarray:
        return _xyxy(self.mean)


# -- tracker --------------------------------------------------------------------------------------
class ByteTracker:
    """ByteTrack-style tracker; `update` once per frame, in order.

    Args:
        high_thresh: detections scoring at least this are matched first and can start tracks.
        low_thresh: detections below this are ignored; those in [low, high) only keep tracks alive.
        new_track_thresh: a new track needs a detection scoring at least this.
        match_iou: least IoU for the high-score pass (tracked and lost tracks).
        low_match_iou: least IoU for the low-score pass.
        tentative_match_iou: least IoU to confirm a track born the frame before.
        lost_buffer: frames a lost track waits to be found again before it is dropped.
        class_aware: only match detections to tracks of the same label.
    """

    def __init__(self, *, high_thresh: float = 0.5, low_thresh: float = 0.1, new_track_thresh: float = 0.6,
                 match_iou: float = 0.2, low_match_iou: float = 0.5, tentative_match_iou: float = 0.3,
                 lost_buffer: int = 30, class_aware: bool = False) -> None:
        if not 0.0 <= low_thresh <= high_thresh <= 1.0:
            raise InvalidInputError(f"need 0 <= low_thresh <= high_thresh <= 1; got low_thresh={low_thresh}, "
                                    f"high_thresh={high_thresh}")
        if lost_buffer < 0:
            raise InvalidInputError(f"lost_buffer is a number of frames >= 0; got {lost_buffer}")
        self.high_thresh, self.low_thresh, self.new_track_thresh = high_thresh, low_thresh, new_track_thresh
        self.match_iou, self.low_match_iou, self.tentative_match_iou = match_iou, low_match_iou, tentative_match_iou
        self.lost_buffer = lost_buffer
        self.class_aware = class_aware
        self.kalman = KalmanBoxFilter()
        self.reset()

    def reset(self) -> None:
        """Forget every track (a new video); ids start again at 1."""
        self.tracks: List[_Track] = []
        self.frame = 0
        self._next_id = 1

    def update(self, detections: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """One frame: `detections` holds ``boxes`` ``[N, 4]``, ``scores`` ``[N]``, ``labels`` ``[N]``
        (and any other per-detection entries, e.g. masks).

        Returns the detections that belong to a confirmed track this frame, every entry indexed
        alike, plus ``track_ids`` ``[M]`` int64 (ids start at 1 and are never reused).
        """
        boxes = detections["boxes"].detach().cpu().double().numpy().reshape(-1, 4)
        scores = detections["scores"].detach().cpu().double().numpy().reshape(-1)
        labels = detections["labels"].detach().cpu().numpy().reshape(-1)
        if not len(boxes) == len(scores) == len(labels):
            raise InvalidInputError(f"detections hold {len(boxes)} boxes, {len(scores)} scores and {len(labels)} "
                                    "labels; they must match")
        self.frame += 1
        for track in self.tracks:
            track.mean, track.cov = self.kalman.predict(track.mean, track.cov)

        high = np.flatnonzero(scores >= self.high_thresh)
        low = np.flatnonzero((scores >= self.low_thresh) & (scores < self.high_thresh))
        pool = [t for t in self.tracks if t.state in (TRACKED, LOST)]
        tentative = [t for t in self.tracks if t.state == TENTATIVE]
        owner: Dict[int, _Track] = {}  # detection index -> its track this frame

        matched, left_tracks, left_high = self._associate(pool, high, boxes, labels, self.match_iou)
        owner.update(matched)
        was_tracked = [t for t in left_tracks if t.state == TRACKED]
        matched, unmatched, _ = self._associate(was_tracked, low, boxes, labels, self.low_match_iou)
        owner.update(matched)
        for track in unmatched:
            track.state = LOST
        matched, dropped, left_high = self._associate(tentative, left_high, boxes, labels, self.tentative_match_iou)
        owner.update(matched)
        for det, track in owner.items():
            self._absorb(track, boxes[det], scores[det], int(labels[det]))
        for det in left_high:
            if scores[det] >= self.new_track_thresh:
                track = self._start(boxes[det], scores[det], int(labels[det]))
                if track.state == TRACKED:
                    owner[int(det)] = track
        self.tracks = [t for t in self.tracks
                       if t not in dropped and not (t.state == LOST and self.frame - t.last_frame > self.lost_buffer)]

        kept = sorted(owner)
        index = torch.as_tensor(kept, dtype=torch.int64)
        result = {k: v[index.to(v.device)] if isinstance(v, Tensor) and v.dim() and len(v) == len(boxes) else v
                  for k, v in detections.items()}
        result["track_ids"] = torch.as_tensor([owner[d].track_id for d in kept], dtype=torch.int64)
        return result

    def _associate(self, tracks: Sequence[_Track], dets: np.ndarray, boxes: np.ndarray, labels: np.ndarray,
                   min_iou: float) -> Tuple[Dict[int, _Track], List[_Track], np.ndarray]:
        """Optimal IoU matching: ({detection: track}, unmatched tracks, unmatched detection indices)."""
        if len(tracks) == 0 or len(dets) == 0:
            return {}, list(tracks), np.asarray(dets, dtype=np.int64)
        predicted = np.stack([t.box() for t in tracks])
        overlap = _iou(predicted, boxes[dets])  # [T, D]
        if self.class_aware:
            overlap *= np.array([t.label for t in tracks])[:, None] == labels[dets][None, :]
        matches = {}
        for t, d in linear_assignment(1.0 - overlap):
            if overlap[t, d] >= min_iou:
                matches[int(dets[d])] = tracks[t]
        taken = {id(t) for t in matches.values()}
        left = np.array([d for d in dets if int(d) not in matches], dtype=np.int64)
        return matches, [t for t in tracks if id(t) not in taken], left

    def _absorb(self, track: _Track, box: np.ndarray, score: float, label: int) -> None:
        track.mean, track.cov = self.kalman.update(track.mean, track.cov, _xyah(box))
        track.score, track.label, track.last_frame = float(score), label, self.frame
        if track.state == TENTATIVE:
            track.track_id = self._take_id()
        track.state = TRACKED

    def _start(self, box: np.ndarray, score: float, label: int) -> _Track:
        """A new track, tentative; confirmed at once in the first frame (nothing to confirm it against)."""
        mean, cov = self.kalman.initiate(_xyah(box))
        track = _Track(mean, cov, label, float(score), TENTATIVE, self.frame)
        if self.frame == 1:
            track.state, track.track_id = TRACKED, self._take_id()
        self.tracks.append(track)
        return track

    def _take_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    @property
    def tracks_started(self) -> int:
        """Ids given out so far (confirmed tracks since the last reset)."""
        return self._next_id - 1

    @property
    def active_tracks(self) -> int:
        """Tracks currently followed (tracked or lost, not tentative)."""
        return sum(t.state in (TRACKED, LOST) for t in self.tracks)
