"""`torchdet demo`: run a detector end to end on a generated image.

Interim demo: fasterrcnn_mobilenet_v3_large_320_fpn with random weights (pretrained weights
and the training demo arrive with later work), so the detections are meaningless; it shows
the contract (list of images in, list of dicts out) and that everything installs and runs.
"""
from __future__ import annotations

import argparse
import time

import torch


def _generated_image(height: int = 480, width: int = 640, seed: int = 0) -> torch.Tensor:
    """A [3, H, W] float image in 0..1 with a few filled rectangles on a gradient."""
    g = torch.Generator().manual_seed(seed)
    ys = torch.linspace(0, 1, height)[:, None]
    xs = torch.linspace(0, 1, width)[None, :]
    image = torch.stack([ys.expand(height, width), xs.expand(height, width), 0.5 * (ys + xs)])
    for _ in range(4):
        x1, y1 = int(torch.randint(0, width - 100, (1,), generator=g)), int(torch.randint(0, height - 100, (1,), generator=g))
        w, h = int(torch.randint(40, 100, (1,), generator=g)), int(torch.randint(40, 100, (1,), generator=g))
        image[:, y1:y1 + h, x1:x1 + w] = torch.rand(3, 1, 1, generator=g)
    return image


def run(args: argparse.Namespace) -> int:
    from torchdet.models.faster_rcnn import fasterrcnn_mobilenet_v3_large_320_fpn

    torch.manual_seed(0)
    print("torchdet demo: fasterrcnn_mobilenet_v3_large_320_fpn with RANDOM weights "
          "(no pretrained weights yet), on a generated 480x640 image")
    model = fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, box_score_thresh=0.0).eval()
    image = _generated_image()
    with torch.no_grad():
        start = time.perf_counter()
        (detections,) = model([image])
        elapsed = time.perf_counter() - start
    n = len(detections["boxes"])
    print(f"{n} detections in {elapsed * 1000:.0f} ms; the first {min(5, n)}:")
    for box, label, score in list(zip(detections["boxes"], detections["labels"], detections["scores"]))[:5]:
        print(f"  label {int(label):3d}  score {float(score):.3f}  box {[round(v, 1) for v in box.tolist()]}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="run the demo", description=__doc__)
    parser.set_defaults(func=run)
