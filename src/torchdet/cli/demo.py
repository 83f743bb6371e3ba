"""`torchdet demo`: train a detector from scratch on generated shapes, evaluate it, draw its predictions.

Generates the shapes dataset, trains a small FCOS from scratch on the CPU, evaluates it (COCO AP
on the validation split), predicts on held-out images and writes the pictures, all under
OUT (default runs/demo): data/, train/ (last.pt, best.pt, metrics.csv, plot.png), eval/
(metrics.json, detections.json) and predictions/ (predictions.json and the pictures).
The recipe is torchdet.demo.RECIPE.
"""
from __future__ import annotations

import argparse

from torchdet.cli._args import add_device, reports_errors


@reports_errors("demo")
def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from torchdet.demo import QUICK, RECIPE, run_demo

    recipe = QUICK if args.quick else RECIPE
    if args.epochs is not None:
        recipe = replace(recipe, epochs=args.epochs)
    run_demo(recipe, out=args.out, device=args.device)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="train, evaluate and predict on generated shapes (make demo)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/demo", help="where everything goes (default runs/demo)")
    parser.add_argument("--quick", action="store_true",
                        help="a seconds-long smoke version on a few tiny images (no AP target)")
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's number of epochs")
    add_device(parser)
    parser.set_defaults(func=run)
