"""Model builders by name: the zoo's twelve, and any "package.module:function" builder.

A checkpoint records the builder's name and keyword arguments; `build_model` rebuilds the
model from them, so later commands need nothing but the checkpoint.
"""
from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable, Dict, List, Mapping

from torch import nn

from torchdet.weights.registry import BUILDERS, DETECTION_BUILDERS

# Builder name -> defining module, in torchvision's documentation order (from the registry).
ZOO_BUILDERS: Dict[str, str] = {name: BUILDERS[name][0] for name in DETECTION_BUILDERS}

# Small from-scratch detectors for quick experiments, the demo and the tests.
TINY_BUILDERS: Dict[str, str] = {
    "fcos_tiny": "torchdet.engine.tiny_models",
    "fasterrcnn_tiny": "torchdet.engine.tiny_models",
}
ALL_BUILDERS: Dict[str, str] = {**ZOO_BUILDERS, **TINY_BUILDERS}


def get_builder(name: str) -> Callable[..., nn.Module]:
    """The builder function called `name` (a zoo name, or "package.module:function")."""
    if ":" in name:
        module_name, _, attr = name.partition(":")
    elif name in ALL_BUILDERS:
        module_name, attr = ALL_BUILDERS[name], name
    else:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(ALL_BUILDERS)} "
                         "(`torchdet models` lists them) or give a builder as 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"cannot import the module of builder {name!r}: {e}") from e
    builder = getattr(module, attr, None)
    if not callable(builder):
        raise ValueError(f"{module_name} has no builder function {attr!r}")
    return builder


def available_builders() -> List[str]:
    """The builders (zoo, then tiny) whose module imports in this installation."""
    names = []
    for name in ALL_BUILDERS:
        try:
            get_builder(name)
        except ValueError:
            continue
        names.append(name)
    return names


def builder_accepts(name: str, kwarg: str) -> bool:
    """Whether builder `name` takes keyword `kwarg` (explicitly, or through **kwargs)."""
    params = inspect.signature(get_builder(name)).parameters
    return kwarg in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def build_model(name: str, kwargs: Mapping[str, Any], weights: Any = None, weights_backbone: Any = None) -> nn.Module:
    """`builder(weights=..., weights_backbone=..., **kwargs)` for the builder called `name`."""
    builder = get_builder(name)
    try:
        return builder(weights=weights, weights_backbone=weights_backbone, **dict(kwargs))
    except TypeError as e:
        raise ValueError(f"cannot build {name} with {dict(kwargs)}: {e}") from e


def model_outputs(name: str) -> List[str]:
    """What the builder's models predict: boxes always, masks / keypoints for those families."""
    outputs = ["boxes"]
    if "maskrcnn" in name:
        outputs.append("masks")
    if "keypointrcnn" in name:
        outputs.append("keypoints")
    return outputs
