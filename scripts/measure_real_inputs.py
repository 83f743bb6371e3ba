"""Figures for the README's "Real inputs" section: sliced-inference recall and speed, tracking accuracy.

    PYTHONPATH=src:tests python scripts/measure_real_inputs.py [--threads 1] [--skip-speed]

Uses the test suite's generated scenes (tests/inference/scenes.py): a 2000 px image with 12 px
and 40 px squares seen by a blob detector that resizes like the R-CNNs (min_size 800), and
bouncing squares with a simulated detector (jitter, misses, low scores, false positives).
Speed is measured with a zoo model with random weights (the weights do not change the time).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from inference.mot import clear_mot  # noqa: E402
from inference.scenes import BlobDetector, moving_squares, noisy_detections, recall, small_objects_scene  # noqa: E402
from torchdet.inference.slicing import SlicedPredictor  # noqa: E402
from torchdet.inference.tracking import ByteTracker  # noqa: E402


def sliced_recall() -> None:
    image, truth = small_objects_scene(size=2000, small=12, large=40, seed=0)
    small = (truth[:, 2] - truth[:, 0]) < 20
    detector = BlobDetector(min_size=800).eval()
    plain = detector([image])[0]["boxes"]
    print(f"scene: 2000x2000, {int(small.sum())} squares of 12 px, {int((~small).sum())} of 40 px")
    print(f"  whole image:  recall {recall(plain, truth):.3f} (12 px: {recall(plain, truth[small]):.3f}, "
          f"40 px: {recall(plain, truth[~small]):.3f}), {len(plain)} boxes")
    for merge, metric in (("nms", "iou"), ("nmm", "ios"), ("nms", "ios")):
        boxes = SlicedPredictor(detector, 512, 0.2, merge=merge, match_metric=metric).eval()([image])[0]["boxes"]
        print(f"  sliced 512/0.2 {merge}-{metric}: recall {recall(boxes, truth):.3f} (12 px: "
              f"{recall(boxes, truth[small]):.3f}), {len(boxes)} boxes for {len(truth)} objects")


def sliced_speed(builder: str, repeats: int) -> None:
    from torchdet.models.registry import build_model

    model = build_model(builder, {"num_classes": 91}).eval()
    image = torch.rand(3, 2000, 2000)
    runs = {"whole image": model, "sliced 512x512, overlap 0.2 (25 tiles)": SlicedPredictor(model, 512, 0.2,
                                                                                             batch_size=4).eval()}
    with torch.no_grad():
        for name, runner in runs.items():
            runner([image])  # warm-up
            start = time.perf_counter()
            for _ in range(repeats):
                runner([image])
            seconds = (time.perf_counter() - start) / repeats
            print(f"  {builder}, {name}: {seconds:.2f} s per 2000x2000 image = {seconds / 4.0:.2f} s per megapixel")


def tracking(scenes: int = 5) -> None:
    totals = {"mota": [], "id_switches": 0, "misses": 0, "false_positives": 0, "objects": 0}
    for seed in range(scenes):
        _, truth = moving_squares(num_frames=120, num_objects=4, seed=seed)
        rng = np.random.default_rng(seed)
        tracker = ByteTracker()
        predicted = []
        for frame in truth:
            out = tracker.update(noisy_detections(frame, rng))
            predicted.append({int(i): b.tolist() for i, b in zip(out["track_ids"], out["boxes"])})
        scores = clear_mot(truth, predicted)
        totals["mota"].append(scores["mota"])
        for key in ("id_switches", "misses", "false_positives", "objects"):
            totals[key] += scores[key]
    print(f"tracking: {scenes} videos x 120 frames x 4 bouncing squares; detector misses 10%, scores 15% low, "
          "adds ~0.3 false positives per frame")
    print(f"  ByteTracker: MOTA {np.mean(totals['mota']):.3f} (min {min(totals['mota']):.3f}), "
          f"{totals['id_switches']} identity switches, {totals['misses']} misses, "
          f"{totals['false_positives']} false positives over {totals['objects']} objects")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sliced_recall()
    tracking()
    if not args.skip_speed:
        print(f"speed ({args.threads} CPU thread(s), random weights):")
        for builder in ("fasterrcnn_mobilenet_v3_large_320_fpn", "fasterrcnn_mobilenet_v3_large_fpn"):
            sliced_speed(builder, args.repeats)


if __name__ == "__main__":
    main()
