"""The `torchdet` command line: one sub-command per module in this package.

Each sub-command module defines `add_parser(subparsers)` (registers its parser, with a
`func` default taking the parsed args and returning an exit code).
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

# Sub-command modules, in the order `torchdet --help` lists them.
COMMANDS = ["models", "data", "train", "evaluate", "predict", "export", "benchmark", "demo"]
# Commands that run models call torchdet.runtime.tune_cpu_allocator first (TORCHDET_TUNE_ALLOCATOR=0
# turns it off); `benchmark` has its own --tune-allocator, off by default.
TUNED_COMMANDS = {"train", "evaluate", "predict", "demo"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="torchdet",
        description="Object detection in pure PyTorch: train, evaluate, predict, export, benchmark.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"torchdet.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"torchdet.cli.{name}":
                continue  # not shipped yet
            raise
        module.add_parser(subparsers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if args.command in TUNED_COMMANDS:
        from torchdet.runtime import tune_cpu_allocator

        tune_cpu_allocator()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
