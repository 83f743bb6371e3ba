"""`torchdet benchmark`: eval latency per builder beside torchvision's, in reference convs."""
from __future__ import annotations

import argparse
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from torchdet.bench.latency import run_latency

    run_latency(builders=args.builders or None, threads=args.threads, repeats=args.repeats,
                height=args.height, width=args.width, json_out=args.json)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "benchmark", help="time the builders against torchvision's figures (make bench)",
        description="Eval latency of each builder on one image (median after warm-up), the same "
                    "figure in reference convs beside torchvision's, and the share of time in nms "
                    "and roi_align.")
    parser.add_argument("--builders", nargs="*", metavar="NAME", help="builders to time (default: all)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2, as the baseline)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per builder (median reported)")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.set_defaults(func=run)
