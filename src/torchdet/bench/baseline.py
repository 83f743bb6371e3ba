"""torchvision's figures beside ours: measured live, or read from a stored baseline file.

A baseline gives, per builder, torchvision's eval latency and training step in **reference convs**
(see ``latency.py``), the unit that carries between runs and machines. Three sources:

- ``live``: torchvision is importable here; its builder of the same name is built, filled with the
  same weights and timed on the same inputs, with the same threads, in this process;
- a JSON file (``--baseline PATH``): figures measured elsewhere; a checkout keeps torchvision 0.28's
  in ``benchmarks/baselines/torchvision_cpu.json`` (layout in that folder's README);
- none: the torchvision columns stay empty.

The installed package ships no figures: measured on one machine, they belong to the repository.
"""
from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Optional

from torch import nn

# benchmarks/baselines/ of the checkout this module runs from (absent from an installed package).
REPO_BASELINE = Path(__file__).resolve().parents[3] / "benchmarks" / "baselines" / "torchvision_cpu.json"


@dataclass
class Baseline:
    """Where torchvision's figures come from (``source``) and, for a file, the figures themselves.

    Attributes:
        source: ``"live"``, the file's path, or ``"none"``.
        eval_refs: builder -> torchvision's eval latency in reference convs (from a file).
        train_refs: builder -> torchvision's training step in reference convs (from a file).
    """

    source: str
    eval_refs: Dict[str, float] = field(default_factory=dict)
    train_refs: Dict[str, float] = field(default_factory=dict)

    @property
    def live(self) -> bool:
        return self.source == "live"


def torchvision_builder(name: str) -> Optional[Callable[..., nn.Module]]:
    """torchvision's detection builder called ``name``, or None when torchvision does not import here."""
    try:
        detection = importlib.import_module("torchvision.models.detection")
    except Exception:  # not installed, or built for another torch: no live comparison
        return None
    return getattr(detection, name, None)


def torchvision_available() -> bool:
    try:
        importlib.import_module("torchvision.models.detection")
    except Exception:
        return False
    return True


def read_baseline(path: Path) -> Baseline:
    """The figures in a baseline file: ``{"builders": {name: {"in_conv_refs"}}, "train": {name: {"in_conv_refs"}}}``."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"--baseline {str(path)!r}: no such file; pass a baseline JSON (a checkout has "
                         f"benchmarks/baselines/torchvision_cpu.json), 'live' or 'none'") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"--baseline {str(path)!r} is not JSON: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("builders"), dict):
        raise ValueError(f"--baseline {str(path)!r} has no 'builders' table of torchvision's eval figures")
    refs = {name: float(v["in_conv_refs"]) for name, v in data["builders"].items()}
    train = {name: float(v["in_conv_refs"]) for name, v in (data.get("train") or {}).items()}
    return Baseline(str(path), refs, train)


def resolve_baseline(choice: Optional[str] = None) -> Baseline:
    """``choice``: a file path, ``"live"``, ``"none"``, or None for the default: live where torchvision
    imports, else the checkout's stored file, else none.

    Raises:
        ValueError: ``"live"`` without an importable torchvision, or an unreadable file.
    """
    if choice is None:
        if torchvision_available():
            return Baseline("live")
        return read_baseline(REPO_BASELINE) if REPO_BASELINE.is_file() else Baseline("none")
    if choice == "none":
        return Baseline("none")
    if choice == "live":
        if not torchvision_available():
            raise ValueError("--baseline live needs torchvision, which does not import here; pass a baseline "
                             "file (benchmarks/baselines/torchvision_cpu.json in a checkout) or 'none'")
        return Baseline("live")
    return read_baseline(Path(choice))
