"""Peak resident memory (RSS) of each builder's eval, each in a fresh Python process.

The child imports torchdet, builds the model with the baseline's weights, reads its current
RSS (``after_build``, from /proc/self/statm), runs eval on one image ``runs`` times and reads
the peak RSS (``peak``, ``VmHWM``; see `peak_rss_mib` for why not ``ru_maxrss``). ``increment = peak - after_build``
is what eval itself added on top of the built model. (Building can peak higher than it ends,
while the fill replaces the initial weights; ``build_peak`` is that peak.) Figures in MiB.

Run one child by hand: ``python -m torchdet.bench.memory fasterrcnn_resnet50_fpn``.
"""
from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable, List, Optional

from torchdet.bench.latency import zoo_builders


@dataclass
class MemoryResult:
    builder: str
    build_peak_mib: float
    after_build_mib: float
    peak_mib: float
    increment_mib: float


def peak_rss_mib() -> float:
    """This process's peak RSS so far, in MiB.

    Linux: ``VmHWM`` from /proc/self/status, the peak of this process's own memory map.
    ``getrusage(RUSAGE_SELF).ru_maxrss`` would carry the parent's peak over through fork and
    exec (a child started by a 2 GiB benchmark process reports >= 2 GiB), so it is only the
    fallback where /proc is missing (its KiB, macOS bytes aside).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    """This process's RSS now, in MiB (from /proc/self/statm; the peak where that is missing)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except OSError:
        return peak_rss_mib()
    return pages * resource.getpagesize() / 2**20


def measure_here(name: str, height: int, width: int, threads: int, runs: int) -> MemoryResult:
    """Measure in this process (the child's side of `measure_in_subprocess`)."""
    import torch

    from torchdet.bench.latency import benchmark_image, build_eval_model

    torch.set_num_threads(threads)
    image = benchmark_image(height, width)
    model = build_eval_model(name)
    gc.collect()
    build_peak, after_build = peak_rss_mib(), current_rss_mib()
    with torch.no_grad():
        for _ in range(runs):
            model([image])
    peak = peak_rss_mib()
    return MemoryResult(builder=name, build_peak_mib=build_peak, after_build_mib=after_build, peak_mib=peak, increment_mib=peak - after_build)


def measure_in_subprocess(name: str, height: int = 480, width: int = 640, threads: int = 2,
                          runs: int = 2, tune_allocator: bool = False) -> MemoryResult:
    """Run `measure_here` in a fresh interpreter, so earlier builders do not raise the peak.

    ``tune_allocator``: the child calls `torchdet.runtime.tune_cpu_allocator` first.
    """
    command = [sys.executable, "-m", "torchdet.bench.memory", name, "--height", str(height),
               "--width", str(width), "--threads", str(threads), "--runs", str(runs)]
    if tune_allocator:
        command.append("--tune-allocator")
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"memory child for {name} exited with {done.returncode}: {done.stderr.strip()[-2000:]}")
    return MemoryResult(**json.loads(done.stdout.strip().splitlines()[-1]))


def format_memory(results: List[MemoryResult]) -> str:
    head = (f"{'builder':40s} {'build_peak_MiB':>14s} {'after_build_MiB':>15s} {'peak_MiB':>9s} "
            f"{'eval_increment_MiB':>18s}")
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(f"{r.builder:40s} {r.build_peak_mib:14.1f} {r.after_build_mib:15.1f} {r.peak_mib:9.1f} "
                     f"{r.increment_mib:18.1f}")
    return "\n".join(lines)


def run_memory(builders: Optional[List[str]] = None, height: int = 480, width: int = 640, threads: int = 2,
               runs: int = 2, tune_allocator: bool = False,
               echo: Callable[[str], None] = print) -> List[MemoryResult]:
    allocator = "tuned allocator" if tune_allocator else "default allocator"
    echo(f"\nPeak RSS of eval on one {height}x{width} image ({runs} runs, {allocator}), one fresh process per "
         f"builder: peak while building, RSS after import+build, peak after eval, and the increment eval adds")
    results = []
    for name in builders or zoo_builders():
        results.append(measure_in_subprocess(name, height, width, threads, runs, tune_allocator))
        table = format_memory(results[-1:]).splitlines()
        echo("\n".join(table if len(results) == 1 else table[-1:]))
    return results


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Peak RSS of one builder's eval (prints one JSON line).")
    parser.add_argument("builder", choices=zoo_builders())
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--tune-allocator", action="store_true", help="call torchdet.runtime.tune_cpu_allocator first")
    args = parser.parse_args(argv)
    if args.tune_allocator:
        from torchdet.runtime import tune_cpu_allocator

        tune_cpu_allocator(respect_env=False)
    result = measure_here(args.builder, args.height, args.width, args.threads, args.runs)
    print(json.dumps(result.__dict__))
    return 0


if __name__ == "__main__":
    sys.exit(main())
