"""Time to accuracy: torchdet's training recipe against a plain torchvision-style loop.

Both train the same torchdet model from scratch (``weights=None, weights_backbone=None``) on the
same generated dataset (`torchdet.data.synthetic_parts`: 240 training and 60 validation images
of 160 px, three classes) with batches of 4, and are scored with pycocotools on the validation
images every ``eval_every`` iterations. Evaluation time is not counted as training time.

- **plain**: the loop of torchvision's detection references: SGD (lr 0.02, momentum 0.9,
  weight decay 1e-4 on every parameter), a linear warm-up over the first 100 iterations from
  0.001x, random horizontal flips, shuffled batches, ``sum(losses).backward()``.
- **recipe**: ``torchdet train`` with the recipe it picks for the situation (from scratch here).

The report gives AP / AP50 after ``iterations`` iterations and, at equal training time (the
shorter of the two runs), the AP each had reached by then; the curves go to a PNG.

    torchdet benchmark --train-quality                     # both builders, 360 iterations
    python -m torchdet.bench.train_quality --builders ssdlite320_mobilenet_v3_large --iterations 120
"""
from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

Log = Callable[[str], None]
BUILDERS = ("fasterrcnn_mobilenet_v3_large_320_fpn", "ssdlite320_mobilenet_v3_large")


@dataclass
class CurvePoint:
    """The validation scores after ``iteration`` iterations and ``seconds`` of training."""

    iteration: int
    seconds: float
    ap: float
    ap50: float


@dataclass
class QualityRun:
    name: str
    builder: str
    curve: List[CurvePoint] = field(default_factory=list)

    @property
    def final(self) -> CurvePoint:
        return self.curve[-1]

    def at_time(self, seconds: float) -> CurvePoint:
        """The last evaluation made within ``seconds`` of training (a zero point if none)."""
        within = [p for p in self.curve if p.seconds <= seconds + 1e-9]
        return within[-1] if within else CurvePoint(0, 0.0, 0.0, 0.0)

    def seconds_per_iteration(self) -> float:
        return self.final.seconds / max(self.final.iteration, 1)


def _scores(model: torch.nn.Module, val_set: Any, categories: Sequence[str]) -> tuple:
    from torchdet.evaluation.evaluate import evaluate_model

    result = evaluate_model(model, val_set, device=torch.device("cpu"), model_categories=categories, batch_size=4)
    stats = result.coco.metrics["bbox"]
    return float(stats["AP"]), float(stats["AP50"])


def plain_loop(builder: str, train_set: Any, val_set: Any, *, iterations: int = 360, batch_size: int = 4,
               eval_every: int = 60, seed: int = 0, log: Log = print) -> QualityRun:
    """Train ``builder`` from scratch with the torchvision-reference loop described in the module doc."""
    from torchdet.data.collate import collate_fn
    from torchdet.data.transforms import RandomHorizontalFlip
    from torchdet.models.registry import build_model

    torch.manual_seed(seed)
    random.seed(seed)
    model = build_model(builder, {"num_classes": train_set.num_classes})
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.02, momentum=0.9, weight_decay=1e-4)
    warmup = 100
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: 0.001 + (1 - 0.001) * it / warmup if it < warmup else 1.0)
    flip = RandomHorizontalFlip(0.5)
    generator = torch.Generator().manual_seed(seed)
    run = QualityRun("plain", builder)
    trained, done = 0.0, 0
    while done < iterations:
        order = torch.randperm(len(train_set), generator=generator).tolist()
        for start in range(0, len(order) - batch_size + 1, batch_size):
            model.train()
            tic = time.perf_counter()
            images, targets = collate_fn([flip(*train_set[i]) for i in order[start:start + batch_size]])
            loss = sum(model(list(images), list(targets)).values())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            trained += time.perf_counter() - tic
            done += 1
            if done % eval_every == 0 or done == iterations:
                ap, ap50 = _scores(model, val_set, train_set.categories)
                run.curve.append(CurvePoint(done, round(trained, 2), ap, ap50))
                log(f"  plain {builder}: iteration {done}  AP {ap:.3f}  AP50 {ap50:.3f}  {trained:.0f}s")
            if done >= iterations:
                break
    return run


def recipe_run(builder: str, files: Dict[str, Path], *, iterations: int = 360, batch_size: int = 4,
               out_dir: Path, recipe: Optional[str] = None, seed: int = 0, log: Log = print) -> QualityRun:
    """Train ``builder`` from scratch with ``torchdet train``'s recipe; one validation per epoch."""
    from torchdet.training import api

    images = len(json.loads(Path(files["train"]).read_text())["images"])
    per_epoch = images // batch_size
    epochs = max(1, math.ceil(iterations / per_epoch))
    settings = {"batch_size": batch_size, "seed": seed, "workers": 0, "progress": False}
    result = api.train(builder, str(files["train"]), val_data=str(files["val"]), out=str(out_dir), recipe=recipe,
                       settings=settings, epochs=epochs, weights_backbone=None, log=log)
    run = QualityRun("recipe", builder)
    seconds = 0.0
    for row in result.history:
        seconds += float(row["time_s"])
        if "bbox/AP" in row:
            run.curve.append(CurvePoint(int(row["epoch"]) * per_epoch, round(seconds, 2), float(row["bbox/AP"]),
                                        float(row["bbox/AP50"])))
            log(f"  recipe {builder}: iteration {run.curve[-1].iteration}  AP {row['bbox/AP']:.3f}  "
                f"AP50 {row['bbox/AP50']:.3f}  {seconds:.0f}s")
    return run


def compare(plain: QualityRun, recipe: QualityRun) -> Dict[str, Any]:
    """The figures of the report for one builder."""
    budget = min(plain.final.seconds, recipe.final.seconds)
    return {
        "builder": plain.builder,
        "iterations": plain.final.iteration,
        "plain": asdict(plain.final), "recipe": asdict(recipe.final),
        "ap50_ratio": recipe.final.ap50 / plain.final.ap50 if plain.final.ap50 > 0 else math.inf,
        "equal_time_s": budget,
        "plain_at_equal_time": asdict(plain.at_time(budget)),
        "recipe_at_equal_time": asdict(recipe.at_time(budget)),
        "seconds_per_iteration": {"plain": plain.seconds_per_iteration(), "recipe": recipe.seconds_per_iteration()},
    }


def plot_curves(runs: Sequence[QualityRun], path: Path) -> Path:
    """AP50 against iterations and against training seconds, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from torchdet.atomic import atomic_path

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    for run in runs:
        style = "-" if run.name == "recipe" else "--"
        label = f"{run.builder.split('_')[0]} {run.name}"
        xs_it = [0] + [p.iteration for p in run.curve]
        xs_s = [0.0] + [p.seconds for p in run.curve]
        ys = [0.0] + [p.ap50 for p in run.curve]
        axes[0].plot(xs_it, ys, style, marker="o", label=label)
        axes[1].plot(xs_s, ys, style, marker="o", label=label)
    axes[0].set_xlabel("iterations (batch 4)")
    axes[1].set_xlabel("training seconds")
    for ax in axes:
        ax.set_ylabel("bbox AP50 (validation)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("From scratch on the machine-parts dataset: torchdet recipe vs plain loop")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def run_train_quality(builders: Sequence[str] = BUILDERS, *, iterations: int = 360, out: Path = Path("runs/train_quality"),
                      seed: int = 0, splits: Optional[Dict[str, int]] = None, batch_size: int = 4,
                      log: Log = print) -> List[Dict[str, Any]]:
    """Generate the data (once), run both loops per builder, write ``report.json`` and ``curves.png``.

    ``splits`` overrides the dataset's size (default 240 training and 60 validation images)."""
    from torchdet.data.coco import CocoDetection
    from torchdet.data.synthetic_parts import make_parts_dataset

    out = Path(out)
    data = out / "parts"
    files = ({s: data / s / "_annotations.coco.json" for s in ("train", "val")}
             if (data / "val" / "_annotations.coco.json").exists()
             else make_parts_dataset(data, **({"splits": splits} if splits else {}), seed=seed))
    train_set, val_set = CocoDetection(files["train"]), CocoDetection(files["val"])
    rows, runs = [], []
    for builder in builders:
        log(f"{builder}: plain loop, {iterations} iterations")
        per_epoch = len(train_set) // batch_size
        plain = plain_loop(builder, train_set, val_set, iterations=iterations, batch_size=batch_size,
                           eval_every=per_epoch, seed=seed, log=log)
        log(f"{builder}: torchdet train's recipe, {iterations} iterations")
        recipe = recipe_run(builder, files, iterations=iterations, batch_size=batch_size, out_dir=out / builder,
                            seed=seed, log=log)
        runs += [plain, recipe]
        rows.append(compare(plain, recipe))
        (out / "report.json").write_text(json.dumps({"rows": rows, "runs": [asdict(r) for r in runs]}, indent=1))
    plot_curves(runs, out / "curves.png")
    log(format_report(rows))
    return rows


def format_report(rows: Sequence[Dict[str, Any]]) -> str:
    lines = [f"{'builder':<40} {'plain AP/AP50':>14} {'recipe AP/AP50':>15} {'AP50 x':>7} "
             f"{'equal time':>10} {'plain AP':>9} {'recipe AP':>10} {'s/it plain':>10} {'s/it recipe':>11}"]
    for r in rows:
        lines.append(
            f"{r['builder']:<40} {r['plain']['ap']:>6.3f}/{r['plain']['ap50']:<7.3f} {r['recipe']['ap']:>6.3f}/"
            f"{r['recipe']['ap50']:<8.3f} {r['ap50_ratio']:>7.2f} {r['equal_time_s']:>9.0f}s "
            f"{r['plain_at_equal_time']['ap']:>9.3f} {r['recipe_at_equal_time']['ap']:>10.3f} "
            f"{r['seconds_per_iteration']['plain']:>10.2f} {r['seconds_per_iteration']['recipe']:>11.2f}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--builders", nargs="+", default=list(BUILDERS))
    parser.add_argument("--iterations", type=int, default=360)
    parser.add_argument("--out", default="runs/train_quality")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    run_train_quality(args.builders, iterations=args.iterations, out=Path(args.out), seed=args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
