"""The demo: generate the shapes dataset, train a small detector from scratch on the CPU,
evaluate it, predict on held-out images and draw them. Its whole configuration is `RECIPE`.

    python -m torchdet.cli demo            # what `make demo` runs; writes runs/demo/
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import torch

from torchdet.data.synthetic import make_shapes_dataset
from torchdet.evaluation.api import evaluate
from torchdet.inference.api import predict
from torchdet.progress import echo
from torchdet.training.api import train
from torchdet.training.loop import TrainConfig

Log = Callable[[str], None]


@dataclass(frozen=True)
class DemoRecipe:
    """Everything the demo does, in one place (dataset, model, training, targets)."""

    # the generated shapes dataset (torchdet.data.synthetic.make_shapes_dataset)
    train_images: int = 800
    val_images: int = 100
    test_images: int = 8
    image_size: int = 128
    shapes_per_image: Tuple[int, int] = (3, 8)  # dense scenes: more objects to learn from per image
    max_overlap: float = 0.1
    data_seed: int = 0
    # the model: FCOS on a small CNN, trained from scratch
    model: str = "fcos_tiny"
    model_kwargs: Dict[str, Any] = field(default_factory=lambda: {"min_size": 128, "max_size": 128,
                                                                   "score_thresh": 0.05})
    # training
    epochs: int = 12
    batch_size: int = 8
    optimizer: str = "adamw"
    lr: float = 0.002
    weight_decay: float = 0.05
    schedule: str = "cosine"
    warmup_iters: int = 50
    seed: int = 0
    # one torch thread plus one data-loading process suits a small (2-core) CPU, busy or not
    threads: int = 1
    workers: int = 1
    # pictures and the targets the demo checks
    score_thresh: float = 0.5
    picture_scale: float = 3.0
    target_ap: float = 0.6
    target_ap50: float = 0.9
    target_minutes: float = 10.0

    def train_config(self) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, optimizer=self.optimizer, lr=self.lr,
                           weight_decay=self.weight_decay, schedule=self.schedule, warmup_iters=self.warmup_iters,
                           seed=self.seed, workers=self.workers, val_losses=True, eval_batch_size=16)


RECIPE = DemoRecipe()

# A smoke-test version (seconds, not minutes; no AP target): `torchdet demo --quick`.
QUICK = replace(RECIPE, train_images=16, val_images=8, test_images=2, image_size=64, epochs=1, batch_size=4,
                model_kwargs={"min_size": 64, "max_size": 64, "score_thresh": 0.05}, workers=0)


@dataclass
class DemoResult:
    metrics: Dict[str, float]
    seconds: float
    pictures: Path
    met_target: bool


def _make_data(recipe: DemoRecipe, root: Path, log: Log) -> Dict[str, Path]:
    """Generate the dataset under `root` (kept and reused when its parameters are unchanged)."""
    params = {k: v for k, v in asdict(recipe).items() if k in ("train_images", "val_images", "test_images",
                                                              "image_size", "shapes_per_image", "max_overlap",
                                                              "data_seed")}
    params["shapes_per_image"] = list(params["shapes_per_image"])
    stamp = root / "params.json"
    files = {split: root / split / "_annotations.coco.json" for split in ("train", "val", "test")}
    if stamp.exists() and json.loads(stamp.read_text()) == params and all(f.exists() for f in files.values()):
        log(f"[1/4] reusing the shapes dataset in {root}")
        return files
    start = time.perf_counter()
    files = make_shapes_dataset(root, {"train": recipe.train_images, "val": recipe.val_images,
                                       "test": recipe.test_images},
                                image_size=recipe.image_size, seed=recipe.data_seed,
                                shapes_per_image=recipe.shapes_per_image, max_overlap=recipe.max_overlap)
    stamp.write_text(json.dumps(params))
    log(f"[1/4] generated {recipe.train_images} training, {recipe.val_images} validation and {recipe.test_images} "
        f"held-out shapes images ({recipe.image_size} px) in {root} ({time.perf_counter() - start:.1f}s)")
    return files


def run_demo(recipe: DemoRecipe = RECIPE, out: str = "runs/demo", device: Optional[str] = None,
             log: Log = echo) -> DemoResult:
    """Run the demo into `out`: data/, train/ (checkpoints, metrics.csv, plot.png), eval/, predictions/."""
    start = time.perf_counter()
    torch.set_num_threads(recipe.threads)
    out_dir = Path(out)
    log(f"torchdet demo: train {recipe.model} from scratch on generated shapes, evaluate, predict -> {out_dir}")
    files = _make_data(recipe, out_dir / "data", log)

    log(f"[2/4] training {recipe.model} for {recipe.epochs} epochs")
    run = out_dir / "train"
    train(recipe.model, str(files["train"]), val_data=str(files["val"]), out=str(run), epochs=recipe.epochs,
              config=recipe.train_config(), model_kwargs=dict(recipe.model_kwargs), device=device, log=log)

    log(f"[3/4] evaluating {run / 'best.pt'} on the validation split")
    result = evaluate(str(run / "best.pt"), str(files["val"]), out=str(out_dir / "eval"), batch_size=16,
                          workers=0, device=device, log=log)

    pictures = out_dir / "predictions"
    log(f"[4/4] predicting on the {recipe.test_images} held-out images")
    predict(str(run / "best.pt"), [str(files["test"].parent)], out=str(pictures),
                score_thresh=recipe.score_thresh, batch_size=8, device=device, picture_scale=recipe.picture_scale,
                log=log)

    seconds = time.perf_counter() - start
    bbox = result.coco.metrics["bbox"]
    met = bbox["AP"] >= recipe.target_ap and bbox["AP50"] >= recipe.target_ap50
    minutes, secs = divmod(int(round(seconds)), 60)
    log("")
    log(f"done in {minutes}m{secs:02d}s: bbox AP {bbox['AP']:.3f}, AP50 {bbox['AP50']:.3f} on the shapes validation "
        f"split (target AP >= {recipe.target_ap}, AP50 >= {recipe.target_ap50}: {'met' if met else 'NOT met'})")
    log(f"pictures: {pictures}/*.png   training curves: {run / 'plot.png'}   metrics: {out_dir / 'eval' / 'metrics.json'}")
    return DemoResult(metrics=dict(bbox), seconds=seconds, pictures=pictures, met_target=met)
