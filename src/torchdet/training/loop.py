"""Training: the loop, validation each epoch, checkpoints, metrics log and plot.

`fit` trains a detector built by a named builder on a torchdet detection dataset and writes,
under the run folder, every epoch:

- ``last.pt`` (everything needed to resume exactly) and ``best.pt`` (the best validation
  bbox AP so far; the lowest training loss when there is no validation set), both written
  atomically, so a crash or Ctrl-C leaves the previous epoch's files intact;
- ``metrics.csv`` (one row per epoch) and ``plot.png`` (losses and AP).

It runs in one process or in several under torchrun (DistributedDataParallel, gloo on CPU,
nccl on GPU), with SGD or AdamW, linear warm-up then multistep or cosine decay per
iteration, AMP on CUDA, gradient clipping and an optional EMA of the weights.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from torchdet import distributed
from torchdet.checkpoint import ModelSpec, RunCheckpoint, TrainingState
from torchdet.data.formats import AUGMENTATIONS
from torchdet.data.loaders import make_train_loader, move_targets
from torchdet.evaluation.evaluate import EvalResult, dataset_ground_truth, evaluate_model
from torchdet.inference.loading import load_weights
from torchdet.progress import bars_enabled, echo, progress
from torchdet.training.batchnorm import recalibrate_batchnorm
from torchdet.training.ema import ModelEMA
from torchdet.training.metrics_log import append_metrics, plot_metrics
from torchdet.training.rng import capture_rng_state, restore_rng_state
from torchdet.training.schedulers import SCHEDULES, WarmupScheduler

OPTIMIZERS = ("sgd", "adamw")
Log = Callable[[str], None]


@dataclass
class TrainConfig:
    """How to train. `lr=None` scales `lr_per_16` (default 0.02 for SGD, 0.0002 for AdamW) linearly
    with the total batch.

    `lr_steps` are epochs (multistep only; default: at 2/3 and 8/9 of the run). `warmup_iters`
    None means min(1000, one epoch). `amp=None` turns AMP on where it helps (CUDA). `augment`
    names the training augmentations (see `torchdet.data.formats.AUGMENTATIONS`);
    `bn_recalibration_batches` > 0 recomputes BatchNorm statistics on that many training batches
    before each validation (see `torchdet.training.batchnorm`). `recipe` records where the
    settings came from (see `torchdet.training.recipes`).
    """

    epochs: int = 12
    batch_size: int = 2
    optimizer: str = "sgd"
    lr: Optional[float] = None
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "multistep"
    lr_steps: Optional[Sequence[int]] = None
    lr_gamma: float = 0.1
    warmup_iters: Optional[int] = None
    warmup_factor: float = 0.001
    amp: Optional[bool] = None
    clip_grad_norm: Optional[float] = None
    ema: bool = False
    ema_decay: float = 0.9998
    ema_tau: float = 2000.0
    workers: int = 0
    seed: int = 0
    group_by_aspect_ratio: bool = True
    val_every: int = 1
    val_losses: bool = True
    eval_batch_size: Optional[int] = None
    progress: Optional[bool] = None
    augment: Tuple[str, ...] = ("hflip",)
    bn_recalibration_batches: int = 0
    lr_per_16: Optional[float] = None
    recipe: str = "custom"

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {self.batch_size}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {OPTIMIZERS}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown lr schedule {self.schedule!r}; choose one of {SCHEDULES}")
        self.augment = tuple(self.augment)
        unknown = [a for a in self.augment if a not in AUGMENTATIONS]
        if unknown:
            raise ValueError(f"unknown augmentation(s) {unknown}; choose from {AUGMENTATIONS}")
        if self.bn_recalibration_batches < 0:
            raise ValueError(f"bn_recalibration_batches must be >= 0, got {self.bn_recalibration_batches}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"learning rate must be positive, got {self.lr}")

    def base_lr(self, world_size: int = 1) -> float:
        if self.lr is not None:
            return self.lr
        per_16 = self.lr_per_16 if self.lr_per_16 is not None else 0.02 if self.optimizer == "sgd" else 0.0002
        return per_16 * self.batch_size * world_size / 16


@dataclass
class TrainResult:
    out_dir: Path
    epochs_done: int
    last: Optional[EvalResult]
    best_metric: float
    history: List[Dict[str, float]]
    interrupted: bool = False


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def make_optimizer(model: nn.Module, config: TrainConfig, lr: float) -> torch.optim.Optimizer:
    """SGD (momentum) or AdamW; normalisation weights and biases get no weight decay."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            is_norm = isinstance(module, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm))
            (no_decay if is_norm or name == "bias" else decay).append(p)
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError("the model has no trainable parameters")
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=config.momentum)
    return torch.optim.AdamW(groups, lr=lr)


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, iters_per_epoch: int) -> WarmupScheduler:
    total = config.epochs * iters_per_epoch
    steps = config.lr_steps
    if steps is None:
        steps = sorted({max(1, round(config.epochs * 2 / 3)), max(1, round(config.epochs * 8 / 9))})
    warmup = config.warmup_iters if config.warmup_iters is not None else min(1000, iters_per_epoch)
    return WarmupScheduler(optimizer, total_iters=total, warmup_iters=min(warmup, total),
                           warmup_factor=config.warmup_factor, schedule=config.schedule,
                           milestones=[s * iters_per_epoch for s in steps], gamma=config.lr_gamma)


def check_labels(targets: Sequence[Dict[str, Any]], num_classes: int, categories: Sequence[str]) -> None:
    """Every target label is a class of the model (1 .. num_classes - 1)."""
    for t in targets:
        labels = t["labels"]
        if labels.numel() and (int(labels.max()) >= num_classes or int(labels.min()) < 0):
            bad = int(labels.max()) if int(labels.max()) >= num_classes else int(labels.min())
            raise ValueError(f"image {_image_id(t)} has label {bad}, but the model has {num_classes - 1} classes "
                             f"(labels 1..{num_classes - 1}: {list(categories[1:])[:10]}); build the model with "
                             "the dataset's number of classes (--num-classes) or fix the annotations")


def _image_id(target: Dict[str, Any]) -> Any:
    v = target.get("image_id", "?")
    return int(v) if isinstance(v, torch.Tensor) else v


def resolve_amp(requested: Optional[bool], device: torch.device, log: Log) -> bool:
    """AMP (float16 autocast with loss scaling) only where it is supported: CUDA."""
    if device.type == "cuda":
        return True if requested is None else requested
    if requested:
        log(f"note: AMP is only used on CUDA; training in float32 on {device.type}")
    return False


class Trainer:
    """One training run; `fit()` runs it. See the module docstring for what it writes."""

    def __init__(self, model: nn.Module, spec: ModelSpec, train_set: Any, val_set: Any, config: TrainConfig,
                 out_dir: Path, *, device: torch.device, extra: Optional[Dict[str, Any]] = None,
                 log: Log = echo) -> None:
        self.spec = spec
        self.config = config
        self.out_dir = Path(out_dir)
        self.device = device
        self.extra = dict(extra or {})
        self.dist = distributed.current()
        self.log = log if self.dist.is_main else (lambda _msg: None)
        self.train_set, self.val_set = train_set, val_set
        if len(train_set) == 0:
            raise ValueError("the training dataset is empty; give a dataset with at least one image")

        self.model = model.to(device)
        self.loader, self.sampler = make_train_loader(train_set, batch_size=config.batch_size,
                                                      workers=config.workers, seed=config.seed,
                                                      group_by_aspect_ratio=config.group_by_aspect_ratio)
        self.iters_per_epoch = len(self.loader)
        self.lr = config.base_lr(self.dist.world_size)
        self.optimizer = make_optimizer(self.model, config, self.lr)
        self.scheduler = make_scheduler(self.optimizer, config, self.iters_per_epoch)
        self.amp = resolve_amp(config.amp, device, self.log)
        self.scaler = torch.amp.GradScaler(device.type if device.type == "cuda" else "cpu", enabled=self.amp)
        self.ema = ModelEMA(self.model, config.ema_decay, config.ema_tau) if config.ema else None
        self.ddp: nn.Module = self.model
        if self.dist.enabled:
            ids = [device.index if device.index is not None else self.dist.local_rank] if device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.model, device_ids=ids)
        self.epoch = 0
        self.best_metric = -math.inf
        self.history: List[Dict[str, float]] = []
        self.val_gt = dataset_ground_truth(val_set) if val_set is not None else None
        self.show_bars = bars_enabled(config.progress)

    # -- checkpoints -------------------------------------------------------------------------
    def eval_model(self) -> nn.Module:
        """The model evaluated and saved for inference: the EMA when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def checkpoint(self) -> RunCheckpoint:
        rng = distributed.all_gather_objects(capture_rng_state())
        ema_state = None
        if self.ema is not None:
            ema_state = {k: v for k, v in self.ema.state_dict().items() if k != "module"}
        training = TrainingState(optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
                                 config=asdict(self.config),
                                 train_model=self.model.state_dict() if self.ema is not None else None,
                                 scaler=self.scaler.state_dict(), ema=ema_state, rng_per_rank=rng,
                                 best_metric=self.best_metric)
        return RunCheckpoint(model=self.eval_model().state_dict(), builder=self.spec.builder,
                             builder_kwargs=dict(self.spec.kwargs), categories=list(self.spec.categories),
                             category_ids=list(self.spec.category_ids), epoch=self.epoch, training=training,
                             extra=self.extra)

    def load_resume_state(self, ckpt: RunCheckpoint, source: str) -> None:
        """Restore everything `checkpoint()` saved (same builder and classes required)."""
        if ckpt.builder != self.spec.builder:
            raise ValueError(f"{source} was trained with {ckpt.builder!r}, not {self.spec.builder!r}")
        state = ckpt.resumable(source)
        train_weights = state.train_model if state.train_model is not None else ckpt.model
        load_weights(self.model, train_weights, source)
        if self.ema is not None:
            if state.ema is None:
                self.ema.module.load_state_dict(train_weights)
            else:
                self.ema.load_state_dict({**state.ema, "module": ckpt.model})
        self.optimizer.load_state_dict(state.optimizer)
        self.scheduler.load_state_dict(state.scheduler)
        total = self.config.epochs * self.iters_per_epoch
        if self.scheduler.total_iters != total:
            self.log(f"note: training now runs {self.config.epochs} epochs; the lr schedule is stretched to match")
            self.scheduler.total_iters = total
        if state.scaler:
            self.scaler.load_state_dict(state.scaler)
        self.epoch = ckpt.epoch
        self.best_metric = state.best_metric
        per_rank = state.rng_per_rank
        if len(per_rank) == self.dist.world_size:
            restore_rng_state(per_rank[self.dist.rank])
        else:
            self.log(f"note: {source} was written by {len(per_rank)} processes, now {self.dist.world_size}; "
                     "random states are not restored")

    def _save(self, improved: bool) -> None:
        ckpt = self.checkpoint()  # collective: every process takes part
        if self.dist.is_main:
            ckpt.save(self.out_dir / "last.pt")
            if improved or not (self.out_dir / "best.pt").exists():
                ckpt.save(self.out_dir / "best.pt")
        distributed.barrier()

    # -- the loop ----------------------------------------------------------------------------
    def train_one_epoch(self) -> Dict[str, float]:
        """One pass over the training set; returns the mean of each loss."""
        self.ddp.train()
        self.sampler.set_epoch(self.epoch)
        sums: Dict[str, float] = {}
        count = 0
        n = self.iters_per_epoch
        log_points = {round(n * q) for q in (0.25, 0.5, 0.75)} if not self.show_bars and n >= 40 else set()
        bar = progress(self.loader, total=n, desc=f"epoch {self.epoch + 1}/{self.config.epochs}",
                       enabled=self.show_bars)
        for i, (images, targets) in enumerate(bar, start=1):
            check_labels(targets, self.spec.num_classes, self.spec.categories)
            images = [img.to(self.device, non_blocking=True) for img in images]
            targets = move_targets(targets, self.device)
            with torch.autocast(self.device.type, enabled=self.amp):
                loss_dict = self.ddp(images, targets)
            loss = sum(loss_dict.values())
            if not torch.isfinite(loss):
                values = {k: round(float(v.detach()), 4) for k, v in loss_dict.items()}
                raise FloatingPointError(
                    f"the loss is {float(loss.detach())} at epoch {self.epoch + 1}, iteration {i} ({values}); training "
                    f"diverged. Lower the learning rate (now {self.optimizer.param_groups[0]['lr']:.3g}), "
                    "add --clip-grad 10, or lengthen the warm-up")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if self.config.clip_grad_norm:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_grad_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            if self.ema is not None:
                self.ema.update(self.model)
            for k, v in loss_dict.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
            count += 1
            if self.show_bars:
                bar.set_postfix(loss=f"{sums['loss'] / count:.3f}", lr=f"{self.optimizer.param_groups[0]['lr']:.2g}")
            elif i in log_points:
                self.log(f"  epoch {self.epoch + 1} [{i}/{n}] loss {sums['loss'] / count:.4f} "
                         f"lr {self.optimizer.param_groups[0]['lr']:.3g}")
        means = {k: v / max(count, 1) for k, v in sums.items()}
        return distributed.mean_over_processes(means)

    def validate(self) -> Optional[EvalResult]:
        if self.val_set is None:
            return None
        if self.config.bn_recalibration_batches:
            images = ([img.to(self.device, non_blocking=True) for img in batch] for batch, _ in self.loader)
            recalibrate_batchnorm(self.eval_model(), images, self.config.bn_recalibration_batches)
        return evaluate_model(self.eval_model(), self.val_set, device=self.device,
                              model_categories=self.spec.categories,
                              batch_size=self.config.eval_batch_size or self.config.batch_size,
                              workers=self.config.workers, with_losses=self.config.val_losses,
                              coco_gt=self.val_gt, show_progress=self.show_bars, desc="validate")

    def fit(self) -> TrainResult:
        """Train from `self.epoch` to `config.epochs`, validating and checkpointing every epoch."""
        cfg = self.config
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if self.epoch == 0:  # a new run: earlier runs' rows in this folder do not belong to it
                (self.out_dir / "metrics.csv").unlink(missing_ok=True)
        distributed.barrier()
        if self.epoch >= cfg.epochs:
            self.log(f"already trained {self.epoch} epochs (of {cfg.epochs}); nothing to do. "
                     "Pass a larger --epochs to continue")
            return TrainResult(self.out_dir, self.epoch, None, self.best_metric, self.history)
        self.log(f"training {self.spec.builder} ({self.spec.num_classes - 1} classes) on {len(self.train_set)} "
                 f"images for {cfg.epochs} epochs ({self.iters_per_epoch} iterations each, batch {cfg.batch_size}"
                 f"{f' x {self.dist.world_size} processes' if self.dist.enabled else ''}), {cfg.optimizer} lr "
                 f"{self.lr:.3g} {cfg.schedule}, device {self.device}{', AMP' if self.amp else ''}"
                 f"{', EMA' if self.ema else ''}; writing {self.out_dir}")
        last: Optional[EvalResult] = None
        try:
            while self.epoch < cfg.epochs:
                start = time.perf_counter()
                train_losses = self.train_one_epoch()
                train_time = time.perf_counter() - start
                self.epoch += 1
                result = None
                if self.val_set is not None and (self.epoch % cfg.val_every == 0 or self.epoch == cfg.epochs):
                    result = self.validate()
                    last = result
                row: Dict[str, float] = {"epoch": self.epoch, "lr": self.optimizer.param_groups[0]["lr"],
                                         "time_s": round(train_time, 2)}
                row.update({f"train/{k}": v for k, v in train_losses.items()})
                if result is not None:
                    row.update(result.flat())
                metric = self._selection_metric(result, train_losses)
                # with a validation set, only validated epochs compete for best.pt
                improved = metric > self.best_metric and (result is not None or self.val_set is None)
                if improved:
                    self.best_metric = metric
                self._save(improved)
                if self.dist.is_main:
                    self.history = append_metrics(row, self.out_dir / "metrics.csv")
                    plot_metrics(self.history, self.out_dir / "plot.png")
                self.log(self._epoch_line(row, result, time.perf_counter() - start, improved))
        except KeyboardInterrupt:
            self.log(f"\ninterrupted during epoch {self.epoch + 1}; {self.out_dir / 'last.pt'} holds the "
                     f"{self.epoch} finished epoch(s). Continue with: torchdet train --resume "
                     f"{self.out_dir / 'last.pt'}")
            raise
        return TrainResult(self.out_dir, self.epoch, last, self.best_metric, self.history)

    @staticmethod
    def _selection_metric(result: Optional[EvalResult], train_losses: Dict[str, float]) -> float:
        if result is not None and result.coco.metrics:
            ap = next(iter(result.coco.metrics.values())).get("AP", math.nan)
            return -math.inf if math.isnan(ap) else ap
        return -train_losses.get("loss", math.inf)

    def _epoch_line(self, row: Dict[str, float], result: Optional[EvalResult], seconds: float, improved: bool) -> str:
        parts = [f"epoch {self.epoch}/{self.config.epochs}", f"loss {row['train/loss']:.4f}"]
        if "val/loss" in row:
            parts.append(f"val loss {row['val/loss']:.4f}")
        if result is not None:
            for iou_type, stats in result.coco.metrics.items():
                parts.append(f"{iou_type} AP {stats['AP']:.3f} AP50 {stats['AP50']:.3f}")
        parts.append(f"lr {row['lr']:.3g}")
        parts.append(f"{seconds:.1f}s{' *best*' if improved else ''}")
        return "  ".join(parts)
