"""Batch throughput: B images in one eval call against the same B images in B single calls.

Both are timed in the same process, interleaved (single, batch, single, batch, ...) so that a
noisy neighbour hurts both alike; each figure is the median over the repeats. The images are
B different 480x640 images (`benchmark_image` with seeds 0..B-1).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable, List, Optional

import torch

from torchdet.bench.latency import benchmark_image, build_eval_model, zoo_builders


@dataclass
class ThroughputResult:
    builder: str
    batch: int
    single_ms: float  # B single calls, in all
    batch_ms: float  # one call with B images
    single_images_per_s: float
    batch_images_per_s: float
    speedup: float  # batch_images_per_s / single_images_per_s


def measure_throughput(name: str, images: List[torch.Tensor], repeats: int = 5,
                       warmup: int = 1) -> ThroughputResult:
    """Median time of ``len(images)`` single-image calls vs one call on all of them."""
    model = build_eval_model(name)
    n = len(images)

    def singles() -> None:
        for image in images:
            model([image])

    def batched() -> None:
        model(images)

    single_times, batch_times = [], []
    with torch.no_grad():
        for _ in range(warmup):
            singles()
            batched()
        for _ in range(repeats):
            for fn, times in ((singles, single_times), (batched, batch_times)):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
    single_s, batch_s = statistics.median(single_times), statistics.median(batch_times)
    return ThroughputResult(builder=name, batch=n, single_ms=1000 * single_s, batch_ms=1000 * batch_s,
                            single_images_per_s=n / single_s, batch_images_per_s=n / batch_s,
                            speedup=single_s / batch_s)


def format_throughput(results: List[ThroughputResult]) -> str:
    head = (f"{'builder':40s} {'batch':>5s} {'singles_ms':>11s} {'batch_ms':>10s} {'single_img/s':>13s} "
            f"{'batch_img/s':>12s} {'speedup':>8s}")
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(f"{r.builder:40s} {r.batch:5d} {r.single_ms:11.1f} {r.batch_ms:10.1f} "
                     f"{r.single_images_per_s:13.2f} {r.batch_images_per_s:12.2f} {r.speedup:7.2f}x")
    return "\n".join(lines)


def run_throughput(builders: Optional[List[str]] = None, batch: int = 4, repeats: int = 5,
                   height: int = 480, width: int = 640,
                   echo: Callable[[str], None] = print) -> List[ThroughputResult]:
    if batch < 1:
        raise ValueError(f"--batch {batch}: need at least one image, e.g. --batch 4")
    images = [benchmark_image(height, width, seed=i) for i in range(batch)]
    echo(f"\nBatch throughput: {batch} images of {height}x{width} in one call vs {batch} single calls, "
         f"interleaved, median of {repeats}; speedup = batch img/s / single img/s (target >= 1.3x)")
    results = []
    for name in builders or zoo_builders():
        results.append(measure_throughput(name, images, repeats=repeats))
        table = format_throughput(results[-1:]).splitlines()
        echo("\n".join(table if len(results) == 1 else table[-1:]))
    return results
