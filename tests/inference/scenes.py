"""Generated scenes and a handmade detector for the sliced-inference, video and tracking tests.

`BlobDetector` follows the torchdet detector contract and resizes its inputs as the R-CNNs do
(GeneralizedRCNNTransform, short side to `min_size`), then finds bright blobs that are at least
`min_side` pixels wide *after* that resize. A 12 px object in a 2000 px image shrinks to ~5 px
and is missed, as by a real detector; the same object in an enlarged 512 px tile is found.
It has no parameters, so `blob_detector` also serves as a checkpoint builder for CLI tests.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchdet.models.transform import GeneralizedRCNNTransform
from torchdet.ops.nms import nms

BUILDER = "inference.scenes:blob_detector"
CATEGORIES = ["__background__", "blob"]


class BlobDetector(nn.Module):
    """Bright (mean channel > 0.5) axis-aligned blobs at least `min_side` px wide after the resize.

    Each blob gives one box (its bright run's extent), score `score`, label 1.
    """

    def __init__(self, min_size: int = 800, max_size: int = 1333, min_side: int = 8, score: float = 0.9) -> None:
        super().__init__()
        self.transform = GeneralizedRCNNTransform(min_size, max_size, [0.0] * 3, [1.0] * 3, size_divisible=1)
        self.min_side = min_side
        self.score = score

    def forward(self, images: List[Tensor],
                targets: Optional[List[Dict[str, Tensor]]] = None) -> List[Dict[str, Tensor]]:
        original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        batch, _ = self.transform(images)
        results = []
        for i, (h, w) in enumerate(batch.image_sizes):
            results.append(self._blobs(batch.tensors[i, :, :h, :w].mean(0) > 0.5))
        return self.transform.postprocess(results, batch.image_sizes, original_sizes)

    def _blobs(self, fg: Tensor) -> Dict[str, Tensor]:
        """fg: bool [H, W] -> a box per blob: the extent of the bright row and column through it."""
        h, w = fg.shape
        k = self.min_side
        if h < k or w < k:
            return _empty()
        integral = F.pad(fg.to(torch.int32).cumsum(0).cumsum(1), (1, 0, 1, 0))  # [H+1, W+1]
        window = integral[k:, k:] - integral[:-k, k:] - integral[k:, :-k] + integral[:-k, :-k]  # [H-k+1, W-k+1]
        full = window == k * k
        # One window per blob: the top-left full window (none full above it or to its left).
        corner = full.clone()
        corner[1:] &= ~full[:-1]
        corner[:, 1:] &= ~full[:, :-1]
        ys, xs = corner.nonzero(as_tuple=True)
        if len(ys) == 0:
            return _empty()
        ys, xs = ys + k // 2, xs + k // 2  # inside the blob
        extents = [_run_extent(fg[y], x) + _run_extent(fg[:, x], y) for y, x in zip(ys.tolist(), xs.tolist())]
        boxes = torch.tensor(extents, dtype=torch.float32)[:, [0, 2, 1, 3]]  # (x1, x2, y1, y2) -> xyxy
        scores = torch.full((len(boxes),), self.score)
        keep = nms(boxes, scores, 0.5)
        return {"boxes": boxes[keep], "scores": scores[keep], "labels": torch.ones(len(keep), dtype=torch.int64)}


def _run_extent(line: Tensor, i: int) -> List[int]:
    """[start, end) of the run of True values in the bool vector `line` that holds index i."""
    before = (~line[:i]).nonzero()
    after = (~line[i:]).nonzero()
    return [int(before[-1]) + 1 if len(before) else 0, i + int(after[0]) if len(after) else len(line)]


def _empty() -> Dict[str, Tensor]:
    return {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}


def blob_detector(*, weights: Any = None, weights_backbone: Any = None, num_classes: int = 2,
                  **kwargs: Any) -> BlobDetector:
    assert weights is None and weights_backbone is None
    return BlobDetector(**kwargs)


def small_objects_scene(size: int = 2000, small: int = 12, large: int = 40, spacing: int = 125,
                        large_every: int = 7, seed: int = 0) -> Tuple[Tensor, Tensor]:
    """A `size` px square image with bright squares on a jittered grid over a dark noisy background.

    Most squares are `small` px; every `large_every`-th is `large` px. Returns (image float
    [3, size, size] in 0..1, boxes [N, 4] xyxy).
    """
    rng = np.random.default_rng(seed)
    image = rng.uniform(0.05, 0.3, size=(3, size, size)).astype(np.float32)
    boxes = []
    index = 0
    for cy in range(spacing // 2, size - spacing // 2, spacing):
        for cx in range(spacing // 2, size - spacing // 2, spacing):
            side = large if index % large_every == large_every - 1 else small
            index += 1
            x = int(cx + rng.integers(-spacing // 4, spacing // 4) - side // 2)
            y = int(cy + rng.integers(-spacing // 4, spacing // 4) - side // 2)
            image[:, y:y + side, x:x + side] = rng.uniform(0.75, 1.0, size=(3, 1, 1))
            boxes.append([x, y, x + side, y + side])
    return torch.from_numpy(image), torch.tensor(boxes, dtype=torch.float32)


def recall(found: Tensor, truth: Tensor, iou: float = 0.5) -> float:
    """Fraction of `truth` boxes matched one-to-one (greedily, best IoU first) by `found` boxes."""
    from torchdet.ops.boxes import box_iou

    if len(truth) == 0:
        return 1.0
    if len(found) == 0:
        return 0.0
    overlaps = box_iou(truth, found.float())
    matched = 0
    while True:
        best = overlaps.max()
        if best < iou:
            break
        t, f = divmod(int(overlaps.argmax()), overlaps.shape[1])
        overlaps[t, :] = 0
        overlaps[:, f] = 0
        matched += 1
    return matched / len(truth)


def moving_squares(num_frames: int = 60, size: Tuple[int, int] = (120, 160), num_objects: int = 4,
                   side: int = 20, seed: int = 0) -> Tuple[List[Tensor], List[Dict[int, List[float]]]]:
    """Squares moving at constant speed and bouncing off the borders (their paths cross).

    Returns (frames: uint8 [3, H, W] each, tracks: per frame {object id: xyxy box}).
    """
    rng = np.random.default_rng(seed)
    h, w = size
    pos = rng.uniform([0, 0], [w - side, h - side], size=(num_objects, 2))
    vel = rng.uniform(1.0, 2.5, size=(num_objects, 2)) * rng.choice([-1, 1], size=(num_objects, 2))
    colours = rng.integers(160, 256, size=(num_objects, 3))
    frames, tracks = [], []
    for _ in range(num_frames):
        frame = rng.integers(0, 60, size=(h, w, 3)).astype(np.uint8)
        boxes: Dict[int, List[float]] = {}
        for i in range(num_objects):
            x, y = pos[i].round().astype(int)
            frame[y:y + side, x:x + side] = colours[i]
            boxes[i + 1] = [float(x), float(y), float(x + side), float(y + side)]
        frames.append(torch.from_numpy(frame).permute(2, 0, 1).contiguous())
        tracks.append(boxes)
        pos += vel
        for axis, limit in ((0, w - side), (1, h - side)):
            out = (pos[:, axis] < 0) | (pos[:, axis] > limit)
            vel[out, axis] *= -1
            pos[:, axis] = pos[:, axis].clip(0, limit)
    return frames, tracks


def noisy_detections(truth: Dict[int, List[float]], rng: np.random.Generator, *, jitter: float = 1.5,
                     miss: float = 0.1, weak: float = 0.15, false_positives: float = 0.3,
                     size: Tuple[int, int] = (120, 160)) -> Dict[str, Tensor]:
    """A detector's view of one frame: true boxes jittered, some missed, some with low scores
    (as when partly occluded), plus random false positives (mostly low-scoring)."""
    boxes, scores = [], []
    for box in truth.values():
        r = rng.random()
        if r < miss:
            continue
        boxes.append(np.asarray(box) + rng.normal(0, jitter, 4))
        scores.append(rng.uniform(0.15, 0.45) if r < miss + weak else rng.uniform(0.6, 0.95))
    for _ in range(rng.poisson(false_positives)):
        x, y = rng.uniform(0, size[1] - 20), rng.uniform(0, size[0] - 20)
        boxes.append(np.array([x, y, x + rng.uniform(8, 20), y + rng.uniform(8, 20)]))
        scores.append(rng.uniform(0.1, 0.7))
    return {"boxes": torch.tensor(np.array(boxes), dtype=torch.float32).reshape(-1, 4),
            "scores": torch.tensor(scores, dtype=torch.float32),
            "labels": torch.ones(len(scores), dtype=torch.int64)}
