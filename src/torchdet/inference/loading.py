"""Load a model for evaluation or prediction from what the user passes as `--weights`.

- a checkpoint written by `torchdet train` (it records its builder, kwargs and classes);
- a weights-only ``{"model": state_dict}`` file, with `--model` (and `--num-classes`);
- a weights enum name of the builder (`DEFAULT`, `COCO_V1`, or the full
  `FasterRCNN_ResNet50_FPN_Weights.COCO_V1`) with `--model`, read from the weights cache.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import torch
from torch import Tensor, nn

from torchdet.checkpoint import BACKGROUND, ModelSpec, RunCheckpoint
from torchdet.models.registry import build_model, get_model_builder as get_builder
from torchdet.weights import hub


def _looks_like_path(text: str) -> bool:
    return "/" in text or "\\" in text or text.endswith((".pt", ".pth", ".bin", ".ckpt")) or Path(text).exists()


def load_weights(model: nn.Module, state_dict: Mapping[str, Tensor], source: str) -> None:
    """Load `state_dict` into `model` strictly; a ValueError naming `source` and what does not fit."""
    try:
        hub.load_state_dict_into(model, state_dict, source=source)
    except hub.CheckpointMismatchError as e:
        raise ValueError(f"{e} Pass the matching --model / --num-classes, or a checkpoint of this "
                         "architecture") from e


def load_inference_model(weights: str, *, model_name: Optional[str] = None, num_classes: Optional[int] = None,
                         overrides: Optional[Dict[str, Any]] = None, device: torch.device = torch.device("cpu")
                         ) -> Tuple[nn.Module, ModelSpec, Optional[RunCheckpoint]]:
    """Build the model `weights` describes and load them; return (model in eval mode, spec,
    the run checkpoint, or None for a weights enum name).

    Args:
        weights: a checkpoint path, or a weights enum name (with `model_name`).
        model_name: the builder, required unless the checkpoint records it; when both are
            given they must agree.
        num_classes: for weights-only files, the classes including the background.
        overrides: builder kwargs to change at inference (e.g. box_score_thresh, min_size).
        device: where to put the model.
    """
    overrides = dict(overrides or {})
    ckpt: Optional[RunCheckpoint] = None
    if _looks_like_path(weights):
        ckpt = RunCheckpoint.load(weights)
        spec = _spec_from_checkpoint(ckpt, weights, model_name, num_classes)
        model = build_model(spec.builder, {**spec.kwargs, **overrides})
        load_weights(model, ckpt.model, repr(str(weights)))
    else:
        if model_name is None:
            raise ValueError(f"--weights {weights!r} is not a file; to use a published checkpoint give its builder "
                             f"too, e.g. --model fasterrcnn_resnet50_fpn --weights {weights}")
        model, spec = _from_weights_enum(model_name, weights, overrides)
    return model.to(device).eval(), spec, ckpt


def _spec_from_checkpoint(ckpt: RunCheckpoint, path: str, model_name: Optional[str],
                          num_classes: Optional[int]) -> ModelSpec:
    if ckpt.builder is not None:
        if model_name is not None and model_name != ckpt.builder:
            raise ValueError(f"{path!r} holds a {ckpt.builder} checkpoint, not {model_name}; drop --model (the "
                             "checkpoint says what it is) or pass a checkpoint of that architecture")
        spec = ckpt.spec(path)
        if not spec.categories:  # a record without classes: the builder's default of 91
            n = int(spec.kwargs.get("num_classes", 91))
            spec.categories = [BACKGROUND] + [f"class_{i}" for i in range(1, n)]
            spec.category_ids = list(range(n))
        return spec
    if model_name is None:
        raise ValueError(f"{path!r} holds weights only (no record of its architecture); pass --model NAME and "
                         "--num-classes N (classes including the background)")
    get_builder(model_name)
    n = num_classes or 91
    categories = [BACKGROUND] + [f"class_{i}" for i in range(1, n)]
    if n == 91:
        from torchdet.weights.meta import COCO_CATEGORIES

        categories = list(COCO_CATEGORIES)
    return ModelSpec(model_name, {"num_classes": n}, categories, list(range(n)))


def _from_weights_enum(model_name: str, name: str, overrides: Dict[str, Any]) -> Tuple[nn.Module, ModelSpec]:
    """The builder's published weights called `name`, loaded through torchdet.weights (cache only)."""
    builder = get_builder(model_name)
    enum = _weights_enum_of(builder, model_name)
    member_name = name.split(".")[-1]
    try:
        member = enum[member_name] if member_name != "DEFAULT" else enum.DEFAULT
    except (KeyError, AttributeError):
        choices = ["DEFAULT"] + [m.name for m in enum]
        raise ValueError(f"{model_name} has no weights {name!r}; choose one of {choices}") from None
    model = builder(weights=member, **overrides)
    categories = list(member.meta.get("categories") or [])
    return model, ModelSpec(model_name, {"num_classes": len(categories), **overrides}, categories,
                            list(range(len(categories))))


def _weights_enum_of(builder: Any, model_name: str) -> Any:
    """The weights enum class that goes with the zoo builder `model_name`."""
    from torchdet.weights.registry import get_model_weights

    try:
        return get_model_weights(model_name)
    except ValueError:
        raise ValueError(f"{model_name} has no published weights; pass a checkpoint file as --weights") from None
