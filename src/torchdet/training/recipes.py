"""Training recipes: the settings `torchdet train` uses unless told otherwise, chosen by the situation.

- ``finetune``: the model starts from pretrained weights (``--weights``) or a pretrained
  backbone (``--weights-backbone``). SGD with momentum at the linear-scaling rule's rate, a short
  warm-up, cosine decay, flips and colour jitter, an EMA of the weights.
- ``scratch``: nothing is pretrained. AdamW with decoupled weight decay (robust to the large,
  badly scaled gradients of a random network), a warm-up, cosine decay to zero, gradient
  clipping, flips, colour jitter and zoom-out, an EMA of the weights, and BatchNorm statistics
  recomputed for the evaluated weights before every validation (see
  `torchdet.training.batchnorm`: without it the eval-mode network of a fast-moving from-scratch
  model normalises with stale statistics and its validation loss spikes).

`resolve_config` starts from the recipe and lets every explicitly given setting win, so
``--lr 0.01`` changes the learning rate and nothing else. ``--recipe NAME`` picks a recipe by
name; ``plain`` is the old fixed default (SGD, multistep, flips only), kept for comparison.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Dict, Mapping, Optional

from torchdet.training.loop import TrainConfig

__all__ = ["Recipe", "RECIPES", "choose_recipe", "resolve_config"]


@dataclass(frozen=True)
class Recipe:
    """A named set of `TrainConfig` settings; the learning rate is given per 16 images of total batch
    (linear scaling: a batch of 4 in one process trains at a quarter of it)."""

    name: str
    summary: str
    lr_per_16: float
    settings: Mapping[str, Any] = field(default_factory=dict)

    def config(self, **base: Any) -> TrainConfig:
        """The `TrainConfig` of this recipe (``base``: other fields, e.g. the batch size)."""
        return TrainConfig(**{**base, **dict(self.settings), "lr_per_16": self.lr_per_16, "recipe": self.name})

    def describe(self, config: TrainConfig) -> str:
        """One line for the start of a run: what the recipe does with these settings."""
        parts = [f"{config.optimizer} lr {config.base_lr():.3g} (batch {config.batch_size})", f"{config.schedule}",
                 f"warm-up {config.warmup_iters if config.warmup_iters is not None else 'one epoch'}"]
        if config.clip_grad_norm:
            parts.append(f"clip {config.clip_grad_norm:g}")
        if config.ema:
            parts.append(f"EMA {config.ema_decay:g}")
        parts.append("augment " + ("+".join(config.augment) if config.augment else "none"))
        if config.bn_recalibration_batches:
            parts.append(f"BN recalibrated on {config.bn_recalibration_batches} batches before validation")
        return f"recipe {self.name} ({self.summary}): " + ", ".join(parts)


RECIPES: Dict[str, Recipe] = {r.name: r for r in (
    Recipe("finetune", "pretrained weights or backbone", lr_per_16=0.02, settings=dict(
        optimizer="sgd", momentum=0.9, weight_decay=1e-4, schedule="cosine", warmup_iters=200,
        warmup_factor=0.001, ema=True, ema_decay=0.999, ema_tau=200.0, augment=("hflip", "photometric"),
        bn_recalibration_batches=0)),
    Recipe("scratch", "no pretrained weights", lr_per_16=0.004, settings=dict(
        optimizer="adamw", weight_decay=0.05, schedule="cosine", warmup_iters=100, warmup_factor=0.001,
        clip_grad_norm=10.0, ema=True, ema_decay=0.998, ema_tau=100.0,
        augment=("hflip", "photometric"), bn_recalibration_batches=8)),
    Recipe("plain", "torchdet's earlier fixed defaults", lr_per_16=0.02, settings=dict(
        optimizer="sgd", momentum=0.9, weight_decay=1e-4, schedule="multistep", warmup_iters=None,
        ema=False, augment=("hflip",), bn_recalibration_batches=0)),
)}


def choose_recipe(name: Optional[str], *, pretrained: bool) -> Recipe:
    """The recipe called ``name``, or by the situation: ``finetune`` if anything is pretrained, else ``scratch``."""
    if name is None:
        return RECIPES["finetune" if pretrained else "scratch"]
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {sorted(RECIPES)}")
    return RECIPES[name]


def resolve_config(recipe: Recipe, explicit: Mapping[str, Any]) -> TrainConfig:
    """The recipe's config with every key of ``explicit`` set over it.

    ``explicit`` holds only what the user chose (`TrainConfig` field names); an ``lr`` there
    replaces the recipe's rate (which otherwise scales with the total batch).
    """
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(explicit) - known)
    if unknown:
        raise ValueError(f"unknown training settings {unknown}")
    return replace(recipe.config(), **dict(explicit))
