"""Training checkpoints: one dict per file, written atomically, loaded with clear errors.

A checkpoint is a plain dict (``torch.save``), readable by anything that understands
``{"model": state_dict}``:

- ``model``: the weights to run inference with (the EMA weights when EMA is on);
- ``builder``, ``builder_kwargs``, ``categories``: enough to rebuild the model with no other
  input (``categories`` is a list of ``{"id", "name"}`` in label order, label ``i + 1`` is
  ``categories[i]``; label 0 is background);
- ``epoch``: the number of finished epochs;
- for resuming: ``train_model`` (raw weights when EMA is on), ``optimizer``, ``scheduler``,
  ``scaler``, ``ema``, ``rng``, ``best_metric``, ``config``;
- ``torchdet_version``.
"""
from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np
import torch

import torchdet
from torchdet.weights import hub

PathLike = Union[str, os.PathLike]

# Keys every torchdet training checkpoint has.
REQUIRED_KEYS = ("model", "builder", "builder_kwargs", "categories")


def save_checkpoint(checkpoint: Dict[str, Any], path: PathLike) -> Path:
    """Write `checkpoint` to `path` atomically: a temp file in the same folder, then os.replace.

    A reader (or a Ctrl-C) never sees a half-written file: `path` holds either the previous
    checkpoint or the new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {**checkpoint, "torchdet_version": torchdet.__version__}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> Dict[str, Any]:
    """Read a torchdet checkpoint, raising ValueError that names the file when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist; pass the path to a .pt file "
                                "written by `torchdet train` (e.g. RUN/last.pt)")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # truncated file, not a torch file, ...
        raise ValueError(f"cannot read checkpoint {str(path)!r}: {type(e).__name__}: {e}") from e
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        kind = type(checkpoint).__name__
        keys = sorted(checkpoint)[:8] if isinstance(checkpoint, dict) else []
        raise ValueError(f"{str(path)!r} is not a torchdet checkpoint: expected a dict with a 'model' "
                         f"state_dict, got a {kind}" + (f" with keys {keys}" if keys else ""))
    return checkpoint


def require_training_checkpoint(checkpoint: Dict[str, Any], path: PathLike) -> None:
    """Check that `checkpoint` records how to rebuild its model (builder, kwargs, categories)."""
    missing = [k for k in REQUIRED_KEYS if k not in checkpoint]
    if missing:
        raise ValueError(f"checkpoint {str(path)!r} lacks {missing}: it holds weights only. Pass --model "
                         "NAME (and --num-classes) to say which architecture they belong to, or use a "
                         "checkpoint written by `torchdet train`")


def capture_rng_state() -> Dict[str, Any]:
    """The state of every random generator training touches (python, numpy, torch, cuda)."""
    state: Dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Dict[str, Any]) -> None:
    """Put back what `capture_rng_state` saved."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda_states: List[torch.Tensor] = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])


def state_dict_mismatch(model: torch.nn.Module, state_dict: Dict[str, torch.Tensor]) -> Optional[str]:
    """A sentence describing why `state_dict` does not fit `model`, or None when it fits.

    The comparison is `torchdet.weights.hub.state_dict_mismatch`'s (BatchNorm step counters aside).
    """
    missing, unexpected, reshaped = hub.state_dict_mismatch(model, state_dict)
    wrong = [f"{k} {checkpoint} vs {own}" for k, checkpoint, own in reshaped]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys (e.g. {missing[:3]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})")
    if wrong:
        parts.append(f"{len(wrong)} shape mismatches (checkpoint vs model, e.g. {wrong[:3]})")
    return "; ".join(parts) or None


def load_model_weights(model: torch.nn.Module, state_dict: Dict[str, torch.Tensor], source: str) -> None:
    """Load `state_dict` strictly, with an error naming `source` and what does not fit."""
    problem = state_dict_mismatch(model, state_dict)
    if problem:
        raise ValueError(f"the weights in {source} do not fit {type(model).__name__}: {problem}. "
                         "The checkpoint was probably trained with another architecture or number of "
                         "classes; pass the matching --model / --num-classes or another checkpoint")
    model.load_state_dict(state_dict)
