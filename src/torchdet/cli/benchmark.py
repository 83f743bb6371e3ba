"""`torchdet benchmark`: the speed and memory measurements, each beside its reference figure.

Sections (each prints a table; `--json` writes them all):

- latency (default): eval latency per builder in reference convs beside torchvision's, the share
  of nms / roi_align, and the achieved GFLOP/s beside the reference conv's (`make bench`);
- `--batch N`: N images in one call vs N single calls (images/s, speed-up);
- `--train`: forward + backward + SGD step beside torchvision's (`make bench-train`);
- `--memory`: peak RSS of each builder's eval, one fresh process each;
- `--compile`: torch.compile (inductor) compile time and steady-state latency vs eager;
- `--profile NAME` (with `--train` for a training step): time per stage and the top ops;
- `--train-quality`: time to accuracy of `torchdet train`'s recipe against a plain torchvision-style
  loop, from scratch on a generated dataset (`make bench-train-quality`; long: see
  `torchdet.bench.train_quality`).

With none of `--latency/--batch/--train/--memory/--compile` the latency table runs; with some,
only those; `--all` runs latency, batch 4, train and memory.

torchvision's figures (`--baseline`): measured live where torchvision imports, else the stored
file of a checkout (`benchmarks/baselines/torchvision_cpu.json`), else none; or a file you name.
"""
from __future__ import annotations

import argparse
import json
import platform
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict

from torchdet.cli._args import reports_errors


@reports_errors("benchmark")
def run(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(args.threads)
    if args.train_quality:
        from torchdet.bench.train_quality import BUILDERS, run_train_quality

        run_train_quality(args.builders or BUILDERS, iterations=args.iterations, out=Path(args.out))
        return 0
    if args.device != "cpu":
        from torchdet.bench.device import run_device_benchmark

        run_device_benchmark(args.builders or ["fasterrcnn_resnet50_fpn", "retinanet_resnet50_fpn"],
                             torch.device(args.device), repeats=args.repeats, tf32=False if args.no_tf32 else None,
                             height=args.height, width=args.width)
        return 0
    tuned = False
    if args.tune_allocator:
        from torchdet.runtime import tune_cpu_allocator

        tuned = tune_cpu_allocator(respect_env=False)
        print("allocator: " + ("tuned (torchdet.runtime.tune_cpu_allocator)" if tuned
                               else "--tune-allocator does not apply here (not glibc); default allocator"))
    builders = args.builders or None
    size = dict(height=args.height, width=args.width)
    report: Dict[str, Any] = {"torch": torch.__version__, "threads": args.threads, "machine": platform.node(),
                              "input": [3, args.height, args.width], "repeats": args.repeats,
                              "allocator_tuned": tuned}

    from torchdet.bench.baseline import resolve_baseline

    baseline = resolve_baseline(args.baseline)
    report["baseline"] = baseline.source

    if args.profile:
        from torchdet.bench.latency import load_builder
        from torchdet.bench.profile import run_profile

        load_builder(args.profile)  # a clear error for an unknown name
        report["profile"] = asdict(run_profile(args.profile, train=args.train, top=args.top, **size))
        _write_json(args.json, report)
        return 0

    batch = 4 if args.all and not args.batch else args.batch
    chosen = args.latency or batch or args.train or args.memory or args.compile
    if args.all or not chosen or args.latency:
        from torchdet.bench.latency import run_latency

        results = run_latency(builders=builders, threads=args.threads, repeats=args.repeats,
                              flops=not args.no_flops, baseline=baseline, **size)
        report["latency"] = [asdict(r) for r in results]
    if batch:
        from torchdet.bench.throughput import run_throughput

        report["throughput"] = [asdict(r) for r in run_throughput(builders, batch=batch, repeats=args.repeats,
                                                                  **size)]
    if args.train or args.all:
        from torchdet.bench.train_step import run_train

        train_builders = args.train_builders or None
        report["train"] = [asdict(r) for r in run_train(train_builders, repeats=args.repeats,
                                                        flops=not args.no_flops, baseline=baseline, **size)]
    if args.memory or args.all:
        from torchdet.bench.memory import run_memory

        report["memory"] = [asdict(r) for r in run_memory(builders, threads=args.threads, tune_allocator=tuned,
                                                          **size)]
    if args.compile:
        from torchdet.bench.compile import run_compile

        report["compile"] = [asdict(r) for r in run_compile(builders, target=args.compile, repeats=args.repeats,
                                                            **size)]
    _write_json(args.json, report)
    return 0


def _write_json(path: Path, report: Dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1))
    print(f"\nwrote {path}")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "benchmark", help="time the builders against torchvision's (make bench, make bench-all)",
        description="Eval latency of each builder on one image (median after warm-up), the same "
                    "figure in reference convs beside torchvision's, the share of time in nms "
                    "and roi_align, and the achieved GFLOP/s beside the reference conv's. Further "
                    "sections on request: batch throughput, training step, peak memory, "
                    "torch.compile, and a per-stage profile of one builder.")
    parser.add_argument("--builders", nargs="*", metavar="NAME", help="builders to measure (default: all)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2, as the stored baseline)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per builder (median reported)")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--device", default="cpu",
                        help="cpu (the tables below), or cuda: synchronised eval at batch 1 and 8 (fp32, AMP), "
                             "an AMP training step and peak memory, beside torchvision when importable")
    parser.add_argument("--no-tf32", action="store_true", help="TF32 off on CUDA (parity runs)")
    parser.add_argument("--json", type=Path, help="also write every section's results to this JSON file")
    parser.add_argument("--baseline", metavar="PATH|live|none",
                        help="torchvision's figures: 'live' (time torchvision's builders here, on the same inputs "
                             "and threads), a baseline JSON file, or 'none'. Default: live where torchvision "
                             "imports, else benchmarks/baselines/torchvision_cpu.json when run from a checkout")
    parser.add_argument("--tune-allocator", action="store_true",
                        help="first call torchdet.runtime.tune_cpu_allocator, as the other torchdet commands do "
                             "(off by default, so the ratios against torchvision compare code with code)")
    sections = parser.add_argument_group("sections (default: the latency table alone)")
    sections.add_argument("--latency", action="store_true", help="the latency table, alongside other sections")
    sections.add_argument("--no-flops", action="store_true",
                          help="skip the FLOP count (GFLOP/s columns) of the latency and train tables")
    sections.add_argument("--batch", type=int, metavar="N", default=0,
                          help="batch throughput: N images in one call vs N single calls (--all: 4)")
    sections.add_argument("--train-quality", action="store_true",
                          help="time to accuracy: the training recipe against a plain loop (long)")
    sections.add_argument("--iterations", type=int, default=360, help="--train-quality: iterations per run (360)")
    sections.add_argument("--out", default="runs/train_quality", help="--train-quality: report.json and curves.png here")
    sections.add_argument("--train", action="store_true",
                          help="training step (forward, backward, SGD) on 2 images, beside torchvision's; "
                               "with --profile: profile a training step")
    sections.add_argument("--train-builders", nargs="*", metavar="NAME",
                          help="builders for --train (default: the three with a torchvision figure)")
    sections.add_argument("--memory", action="store_true", help="peak RSS of each builder's eval (fresh process each)")
    sections.add_argument("--compile", nargs="?", const="backbone", choices=["backbone", "model"],
                          help="torch.compile the backbone (default) or the whole model: compile time and "
                               "steady-state latency vs eager")
    sections.add_argument("--all", action="store_true", help="latency, --batch 4, --train and --memory")
    sections.add_argument("--profile", metavar="NAME",
                          help="time per stage and top ops of one builder's eval (or training step with --train)")
    sections.add_argument("--top", type=int, default=12, help="ops listed per phase by --profile")
    parser.set_defaults(func=run)
