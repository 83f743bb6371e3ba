"""The run checkpoint: the file `torchdet train` writes (RUN/last.pt, RUN/best.pt) and every
command reads. `RunCheckpoint` alone reads and writes it, and migrates older files on reading.

On disk it is one flat dict (``torch.save``), so anything that understands
``{"model": state_dict}`` (``torchdet.weights``, torchvision-style loaders) reads its weights::

    schema_version, torchdet_version, model, builder, builder_kwargs, categories, category_ids,
    epoch, extra, and for resuming: train_model, optimizer, scheduler, scaler, ema,
    rng_per_rank, best_metric, config

Schema versions: 0 is every file written before the version was recorded (categories with or
without the background, one ``rng`` entry); 1 is the layout above.
"""
from __future__ import annotations

import errno
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

import torch
from torch import Tensor

from torchdet import __version__
from torchdet.atomic import atomic_path

__all__ = ["SCHEMA_VERSION", "BACKGROUND", "CheckpointError", "CheckpointWriteError", "ModelSpec",
           "TrainingState", "RunCheckpoint"]

PathLike = Union[str, os.PathLike]
StateDict = Dict[str, Tensor]

SCHEMA_VERSION = 1
BACKGROUND = "__background__"


class CheckpointError(ValueError):
    """A file is not a usable torchdet run checkpoint: unreadable, foreign, inconsistent, or newer."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, no permission); the previous file is intact."""


@dataclass
class ModelSpec:
    """How to rebuild the model: builder name and kwargs, and the class names by label.

    `categories[label]` is the name of `label` (index 0 is "__background__");
    `category_ids[label]` is the dataset's category id (index 0 unused).
    """

    builder: str
    kwargs: Dict[str, Any]
    categories: List[str]
    category_ids: List[int] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.categories)


@dataclass
class TrainingState:
    """What resuming needs beyond the inference weights.

    `train_model` holds the raw weights when EMA is on (the checkpoint's `model` is then the
    EMA); `ema` is `ModelEMA.state_dict()` without its module; `rng_per_rank[r]` is process
    r's random states; `config` is `TrainConfig` as a dict.
    """

    optimizer: Dict[str, Any]
    scheduler: Dict[str, Any]
    config: Dict[str, Any]
    train_model: Optional[StateDict] = None
    scaler: Optional[Dict[str, Any]] = None
    ema: Optional[Dict[str, Any]] = None
    rng_per_rank: List[Dict[str, Any]] = field(default_factory=list)
    best_metric: float = -math.inf


@dataclass
class RunCheckpoint:
    """A training run's checkpoint (schema `SCHEMA_VERSION`).

    `model` is the state_dict to run inference with (the EMA weights when EMA is on).
    `builder` and `builder_kwargs` rebuild the model; None for a weights-only file.
    `categories[label]` is the class name of `label`, label 0 being "__background__", so
    ``len(categories) == builder_kwargs["num_classes"]`` (torchvision's weights meta uses the same
    convention); `category_ids[label]` is the dataset's id of that class (index 0: 0).
    `epoch` counts finished epochs. `training` is present in checkpoints that can be resumed.
    `extra` records how the run was started: "data" (the dataset arguments), "model_kwargs",
    "num_classes" (as given) and "skeleton" (keypoint index pairs to draw, or None).
    `torchdet_version` is the version that wrote the file.
    """

    model: StateDict
    builder: Optional[str] = None
    builder_kwargs: Dict[str, Any] = field(default_factory=dict)
    categories: List[str] = field(default_factory=list)
    category_ids: List[int] = field(default_factory=list)
    epoch: int = 0
    training: Optional[TrainingState] = None
    extra: Dict[str, Any] = field(default_factory=dict)
    torchdet_version: str = __version__
    schema_version: int = SCHEMA_VERSION

    # -- what readers ask ---------------------------------------------------------------------
    def spec(self, source: PathLike = "the checkpoint") -> ModelSpec:
        """The model it rebuilds; a CheckpointError naming `source` for a weights-only file."""
        if self.builder is None:
            raise CheckpointError(f"checkpoint {str(source)!r} holds weights only (no builder, kwargs or classes). "
                                  "Pass --model NAME (and --num-classes) to say which architecture they belong "
                                  "to, or use a checkpoint written by `torchdet train`")
        return ModelSpec(self.builder, dict(self.builder_kwargs), list(self.categories), list(self.category_ids))

    def resumable(self, source: PathLike = "the checkpoint") -> TrainingState:
        """The training state; a CheckpointError naming `source` when it has none."""
        self.spec(source)
        if self.training is None or not self.extra.get("data"):
            raise CheckpointError(f"{str(source)!r} cannot be resumed: it holds inference weights only (no optimizer, "
                                  "scheduler or run record). Start a new run with --weights to initialise from it")
        return self.training

    @property
    def skeleton(self) -> Optional[List[List[int]]]:
        return self.extra.get("skeleton")

    # -- the file -----------------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        """The flat dict written to disk (see the module docstring)."""
        out: Dict[str, Any] = {
            "schema_version": self.schema_version, "torchdet_version": self.torchdet_version,
            "model": self.model, "builder": self.builder, "builder_kwargs": dict(self.builder_kwargs),
            "categories": list(self.categories), "category_ids": list(self.category_ids),
            "epoch": self.epoch, "extra": dict(self.extra),
        }
        if self.training is not None:
            t = self.training
            out.update(train_model=t.train_model, optimizer=t.optimizer, scheduler=t.scheduler, scaler=t.scaler,
                       ema=t.ema, rng_per_rank=list(t.rng_per_rank), best_metric=t.best_metric, config=t.config)
        return out

    def save(self, path: PathLike) -> Path:
        """Write to `path` atomically and durably (temporary file, fsync, rename).

        A reader, a Ctrl-C or a full disk never leaves a half-written `path`: it holds the
        previous checkpoint or the new one.
        """
        path = Path(path)
        try:
            with atomic_path(path, durable=True) as tmp:
                torch.save({**self.to_dict(), "torchdet_version": __version__}, tmp)
        except (OSError, RuntimeError) as e:  # torch's zip writer reports a full disk as a RuntimeError
            text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            full = getattr(e, "errno", None) == errno.ENOSPC or any(
                s in str(e) for s in ("unexpected pos", "file write failed", "No space left"))
            cause = "the disk is full" if full else f"{type(e).__name__}: {text}"
            kept = (f"{str(path)!r} still holds the previous checkpoint" if path.exists()
                    else "nothing was written")
            raise CheckpointWriteError(f"cannot write the checkpoint {str(path)!r}: {cause}. {kept}. Free some space "
                                       "(or pass another --out) and resume from the last checkpoint") from e
        return path

    @classmethod
    def load(cls, path: PathLike, map_location: Union[str, torch.device] = "cpu") -> "RunCheckpoint":
        """Read and migrate the checkpoint at `path`, with errors that name it."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist; pass the path to a .pt file "
                                    "written by `torchdet train` (e.g. RUN/last.pt)")
        try:
            raw = torch.load(path, map_location=map_location, weights_only=False)
        except Exception as e:  # noqa: BLE001 - truncated file, not a torch file, ...
            raise CheckpointError(f"cannot read checkpoint {str(path)!r} ({path.stat().st_size} bytes): it is "
                                  f"truncated or not a PyTorch file ({type(e).__name__}: {e})") from e
        return cls.from_dict(raw, path)

    @classmethod
    def from_dict(cls, raw: Any, source: PathLike = "<dict>") -> "RunCheckpoint":
        """The checkpoint in what ``torch.load`` returned, migrated to the current schema."""
        where = repr(str(source))
        if not isinstance(raw, Mapping) or not isinstance(raw.get("model"), Mapping):
            keys = sorted(map(str, raw))[:8] if isinstance(raw, Mapping) else []
            raise CheckpointError(f"{where} is not a torchdet checkpoint: expected a dict with a 'model' state_dict, "
                                  f"got a {type(raw).__name__}" + (f" with keys {keys}" if keys else ""))
        version = raw.get("schema_version", 0)
        if not isinstance(version, int) or version < 0:
            raise CheckpointError(f"{where} has an invalid schema_version {version!r}; it was not written by torchdet")
        if version > SCHEMA_VERSION:
            raise CheckpointError(f"{where} has checkpoint schema {version}, written by torchdet "
                                  f"{raw.get('torchdet_version', '?')}; this torchdet ({__version__}) reads up to "
                                  f"schema {SCHEMA_VERSION}. Upgrade torchdet to read it")
        kwargs = dict(raw.get("builder_kwargs") or {})
        categories, ids = _label_names(raw.get("categories"), raw.get("category_ids"), kwargs.get("num_classes"),
                                       where)
        training = None
        if all(raw.get(k) is not None for k in ("optimizer", "scheduler", "config")):
            rng = raw.get("rng_per_rank") or ([raw["rng"]] if raw.get("rng") is not None else [])
            training = TrainingState(optimizer=raw["optimizer"], scheduler=raw["scheduler"], config=dict(raw["config"]),
                                     train_model=raw.get("train_model"), scaler=raw.get("scaler") or None,
                                     ema=raw.get("ema"), rng_per_rank=list(rng),
                                     best_metric=float(raw.get("best_metric", -math.inf)))
        return cls(model=dict(raw["model"]), builder=raw.get("builder"), builder_kwargs=kwargs,
                   categories=categories, category_ids=ids, epoch=int(raw.get("epoch") or 0), training=training,
                   extra=dict(raw.get("extra") or {}), torchdet_version=str(raw.get("torchdet_version", "?")),
                   schema_version=SCHEMA_VERSION)


def _label_names(categories: Any, category_ids: Any, num_classes: Optional[int],
                 where: str) -> "tuple[List[str], List[int]]":
    """(names by label with "__background__" first, dataset ids by label) from any schema-0 form.

    Schema 0 wrote the names with the background (what the trainer did) or, as documented,
    ``[{"id", "name"}]`` without it; both become the one convention here.
    """
    items = list(categories or [])
    names = [c.get("name") if isinstance(c, Mapping) else c for c in items]
    if not all(isinstance(n, str) for n in names):
        raise CheckpointError(f"{where} records categories {items[:5]} that are not class names")
    ids = list(category_ids) if category_ids else None
    if ids is None and items and all(isinstance(c, Mapping) and isinstance(c.get("id"), int) for c in items):
        ids = [int(c["id"]) for c in items]
    if not names and num_classes:
        names = [BACKGROUND] + [f"class_{i}" for i in range(1, int(num_classes))]
    elif names and names[0] != BACKGROUND and (num_classes is None or len(names) == int(num_classes) - 1):
        names = [BACKGROUND] + names
        if ids is not None and len(ids) == len(names) - 1:
            ids = [0] + ids
    if num_classes is not None and names and len(names) != int(num_classes):
        raise CheckpointError(f"{where} records {len(names)} categories (with the background) but builder_kwargs "
                              f"num_classes={num_classes}; the file is inconsistent")
    ids = [int(i) for i in ids] if ids is not None else list(range(len(names)))
    if len(ids) != len(names):
        raise CheckpointError(f"{where} records {len(ids)} category ids for {len(names)} categories")
    return names, ids
