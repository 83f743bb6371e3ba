"""Timings for the ops that dominate detection inference on CPU (run by hand, not by pytest).

    PYTHONPATH=src .venv/bin/python tests/ops/bench_ops.py [--threads N]

Prints nms / batched_nms times for 1000 and 5000 boxes and roi_align times for 1000 RoIs x 256
channels x 7x7 from a 200x270 feature map (FPN level P2 of an 800x1080 image).
"""
from __future__ import annotations

import argparse
import time
from typing import Callable, Tuple

import torch

from torchdet.ops.nms import batched_nms, nms
from torchdet.ops.roi_align import roi_align


CLOCK = time.perf_counter


def best_ms(fn: Callable[[], object], repeat: int = 7) -> float:
    """Best of ``repeat`` runs, in ms of CLOCK (wall time, or process CPU time with --cpu-time)."""
    fn()
    times = []
    for _ in range(repeat):
        start = CLOCK()
        fn()
        times.append(CLOCK() - start)
    return min(times) * 1e3


def random_boxes(n: int, seed: int, size: float = 300.0, max_wh: float = 120.0) -> Tuple[torch.Tensor, torch.Tensor]:
    """Uniform boxes, heavy overlap (as in the oracle's NMS cases)."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * size
    wh = torch.rand(n, 2, generator=g) * max_wh + 0.5
    return torch.cat([xy, xy + wh], 1), torch.rand(n, generator=g)


def proposal_like_boxes(n: int, seed: int, width: int = 1216, height: int = 800, objects: int = 15):
    """Boxes clustered around a few objects, as RPN proposals are."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(objects, 2, generator=g) * torch.tensor([width, height])
    size = torch.rand(objects, 2, generator=g) * 300 + 20
    k = torch.randint(0, objects, (n,), generator=g)
    c = centre[k] + torch.randn(n, 2, generator=g) * size[k] * 0.2
    wh = size[k] * torch.exp(torch.randn(n, 2, generator=g) * 0.25)
    boxes = torch.cat([c - wh / 2, c + wh / 2], 1)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    return boxes, torch.rand(n, generator=g)


def fpn_rois(n: int, seed: int, min_side: float, max_side: float, width: int = 1080, height: int = 800) -> torch.Tensor:
    """``[n, 5]`` RoIs on image 0 whose sqrt(area) lies in [min_side, max_side], aspect 1:2..2:1."""
    g = torch.Generator().manual_seed(seed)
    side = min_side + torch.rand(n, generator=g) * (max_side - min_side)
    aspect = 2.0 ** (torch.rand(n, generator=g) * 2 - 1)
    w, h = side * aspect.sqrt(), side / aspect.sqrt()
    x1 = torch.rand(n, generator=g) * (width - w)
    y1 = torch.rand(n, generator=g) * (height - h)
    return torch.stack([torch.zeros(n), x1, y1, x1 + w, y1 + h], 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    parser.add_argument(
        "--cpu-time", action="store_true", help="report process CPU time (steadier on a shared machine)"
    )
    args = parser.parse_args()
    global CLOCK
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cpu_time:
        CLOCK = time.process_time
    clock = "process CPU time" if args.cpu_time else "wall time"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {clock}, best of several runs")

    for name, make in (("uniform", random_boxes), ("proposal-like", proposal_like_boxes)):
        for n in (1000, 5000):
            for thr in (0.5, 0.7):
                boxes, scores = make(n, seed=n)
                ms = best_ms(lambda: nms(boxes, scores, thr))
                kept = len(nms(boxes, scores, thr))
                print(f"nms {name:13s} N={n:5d} iou>{thr}: {ms:7.1f} ms  (kept {kept})")
    boxes, scores = proposal_like_boxes(5000, seed=1)
    levels = torch.arange(5).repeat_interleave(1000)
    ms = best_ms(lambda: batched_nms(boxes, scores, levels, 0.7))
    print(f"batched_nms RPN-like 5 levels x 1000 boxes iou>0.7: {ms:7.1f} ms")
    boxes, scores = proposal_like_boxes(3000, seed=2)
    classes = torch.randint(0, 90, (3000,), generator=torch.Generator().manual_seed(0))
    ms = best_ms(lambda: batched_nms(boxes, scores, classes, 0.5))
    print(f"batched_nms heads-like 3000 boxes, 90 classes iou>0.5: {ms:7.1f} ms")

    feature = torch.randn(1, 256, 200, 270, generator=torch.Generator().manual_seed(0))
    for label, lo, hi in (("P2-sized boxes 16-112px", 16, 112), ("boxes 16-400px", 16, 400)):
        rois = fpn_rois(1000, seed=0, min_side=lo, max_side=hi)
        for ratio in (-1, 2):
            ms = best_ms(lambda: roi_align(feature, rois, 7, 0.25, ratio), repeat=5)
            print(f"roi_align 1000 RoIs x 256ch x 7x7 from 200x270, {label}, sampling_ratio={ratio:2d}: {ms:7.1f} ms")
    g = torch.Generator().manual_seed(1)
    masks = (torch.rand(10, 1, 800, 1216, generator=g) > 0.5).float()
    side = 50 + torch.rand(128, 2, generator=g) * 350
    xy = torch.rand(128, 2, generator=g) * (torch.tensor([1216.0, 800.0]) - side)
    mask_rois = torch.cat([torch.randint(0, 10, (128, 1), generator=g).float(), xy, xy + side], dim=1)
    ms = best_ms(lambda: roi_align(masks, mask_rois, 28, 1.0, -1), repeat=3)
    print(f"roi_align mask targets: 128 RoIs 50-400px on 1-channel 800x1216 masks, 28x28 adaptive: {ms:7.1f} ms")
    grad_feature = feature.clone().requires_grad_(True)
    rois = fpn_rois(1000, seed=0, min_side=16, max_side=112)

    def forward_backward() -> None:
        roi_align(grad_feature, rois, 7, 0.25, 2).sum().backward()

    print(f"roi_align forward+backward (P2-sized, sampling_ratio=2): {best_ms(forward_backward, repeat=3):7.1f} ms")


if __name__ == "__main__":
    main()
