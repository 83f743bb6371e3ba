"""Time a validation pass with losses: one eval forward (forward_with_losses) against the former two
forwards (eval detections, then a training-mode forward for the losses).

    PYTHONPATH=src python scripts/measure_validation_losses.py [--images 32] [--repeats 3] [--models ...]

Generates the shapes dataset (128 px) in a temporary folder, builds each model (random weights,
seeded; default the tiny Faster R-CNN and FCOS at 128 px), and prints the best-of-``repeats`` wall time of ``evaluate_model`` for
detections only, losses the old way and losses the new way, with the mean losses of each.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from typing import Dict, Tuple

import torch
from torch import nn

from torchdet.data.formats import open_dataset
from torchdet.data.synthetic import make_shapes_dataset
from torchdet.evaluation.evaluate import evaluate_model
from torchdet.models import get_model


class TwoForwards(nn.Module):
    """The model without ``forward_with_losses``: evaluate_model falls back to its former two forwards."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args):  # noqa: ANN201, ANN002
        return self.model(*args)


def _time(model: nn.Module, dataset, names, with_losses: bool, repeats: int) -> Tuple[float, Dict[str, float]]:
    best, losses = float("inf"), {}
    for _ in range(repeats):
        start = time.perf_counter()
        result = evaluate_model(model, dataset, device=torch.device("cpu"), model_categories=names, batch_size=8,
                                with_losses=with_losses)
        best = min(best, time.perf_counter() - start)
        losses = result.losses
    return best, losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=["fasterrcnn_tiny", "fcos_tiny"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        files = make_shapes_dataset(tmp, {"val": args.images}, image_size=128, seed=0)
        dataset = open_dataset("coco", str(files["val"]), role="val")
        names = list(dataset.categories)
        for name in args.models:
            torch.manual_seed(0)
            sizes = {"min_size": 128, "max_size": 128} if name.endswith("_tiny") else {}
            model = get_model(name, weights=None, weights_backbone=None, num_classes=len(names), **sizes).eval()
            plain, _ = _time(model, dataset, names, False, args.repeats)
            old, old_losses = _time(TwoForwards(model), dataset, names, True, args.repeats)
            new, new_losses = _time(model, dataset, names, True, args.repeats)
            print(f"{name}: {args.images} images of 128 px, batch 8, 1 thread, best of {args.repeats}")
            print(f"  detections only            {plain:6.2f} s")
            print(f"  + losses, two forwards     {old:6.2f} s  {_fmt(old_losses)}")
            print(f"  + losses, one forward      {new:6.2f} s  {_fmt(new_losses)}")


def _fmt(losses: Dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4f}" for k, v in sorted(losses.items()))


if __name__ == "__main__":
    main()
