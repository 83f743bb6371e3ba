"""Deprecated alias: the toolkit that lived here is now split by role.

- `torchdet.training`: `train`, `resume`, `TrainConfig`, `Trainer`, `ModelEMA`, `WarmupScheduler`;
- `torchdet.evaluation`: `evaluate_model`, `evaluate_coco` (and `evaluation.api.evaluate`);
- `torchdet.inference`: `predict_images`, `load_inference_model` (and `inference.api.predict`);
- `torchdet.checkpoint`: `RunCheckpoint` (the run checkpoint), `ModelSpec`.

``from torchdet.engine import train`` (and the other names it exported) still works, with a
DeprecationWarning naming the new place.
"""
from __future__ import annotations

import importlib
import warnings
from typing import Any, Dict

_MOVED: Dict[str, str] = {
    "train": "torchdet.training.api", "resume": "torchdet.training.api",
    "evaluate": "torchdet.evaluation.api", "predict": "torchdet.inference.api",
    "TrainConfig": "torchdet.training.loop", "Trainer": "torchdet.training.loop",
    "ModelSpec": "torchdet.checkpoint", "ModelEMA": "torchdet.training.ema",
    "WarmupScheduler": "torchdet.training.schedulers", "evaluate_model": "torchdet.evaluation.evaluate",
    "evaluate_coco": "torchdet.evaluation.coco_eval", "predict_images": "torchdet.inference.predict",
}

__all__ = [*_MOVED, "save_checkpoint", "load_checkpoint"]


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        warnings.warn(f"torchdet.engine.{name} moved to {_MOVED[name]}.{name}; torchdet.engine will be removed",
                      DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module 'torchdet.engine' has no attribute {name!r}")


def save_checkpoint(checkpoint: Dict[str, Any], path: Any) -> Any:
    """Deprecated: use `torchdet.checkpoint.RunCheckpoint(...).save(path)`."""
    from torchdet.checkpoint import RunCheckpoint

    warnings.warn("torchdet.engine.save_checkpoint is deprecated; use torchdet.checkpoint.RunCheckpoint.save",
                  DeprecationWarning, stacklevel=2)
    return RunCheckpoint.from_dict(checkpoint, path).save(path)


def load_checkpoint(path: Any) -> Dict[str, Any]:
    """Deprecated: use `torchdet.checkpoint.RunCheckpoint.load(path)` (this returns its dict form)."""
    from torchdet.checkpoint import RunCheckpoint

    warnings.warn("torchdet.engine.load_checkpoint is deprecated; use torchdet.checkpoint.RunCheckpoint.load",
                  DeprecationWarning, stacklevel=2)
    return RunCheckpoint.load(path).to_dict()
