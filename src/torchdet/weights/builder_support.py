"""What a model builder does with ``weights`` / ``weights_backbone``, as torchvision's builders do.

A detection builder calls, in this order::

    r = resolve_weights("fasterrcnn_resnet50_fpn", weights, FasterRCNN_ResNet50_FPN_Weights,
                        weights_backbone, ResNet50_Weights, num_classes)
    is_trained = r.is_trained            # FrozenBatchNorm2d and trainable layers default 3 when True
    ... build with r.weights_backbone, r.num_classes ...
    if r.weights is not None:
        load_weights(model, r.weights, progress=progress)

- Given ``weights``: ``weights_backbone`` is ignored (the checkpoint holds the backbone too) and
  ``num_classes`` must equal ``len(weights.meta["categories"])`` (it defaults to it).
- Given only ``weights_backbone``: the backbone constructor loads its ImageNet checkpoint with
  ``load_weights`` as well.
- ``load_weights`` also sets ``eps = 0`` in the FrozenBatchNorm2d layers for the four legacy
  checkpoints trained that way, as torchvision does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Type, TypeVar

from torch import nn

from torchdet.weights import hub
from torchdet.weights._api import LocalWeights, WeightsEnum, WeightsLike

__all__ = [
    "_ovewrite_value_param",
    "_ovewrite_named_param",
    "expected_num_classes",
    "expected_num_keypoints",
    "ResolvedWeights",
    "resolve_weights",
    "resolve_num_keypoints",
    "resolve_backbone_weights",
    "load_weights",
    "overwrite_eps",
    "ZERO_EPS_WEIGHTS",
]

V = TypeVar("V")

# Checkpoints trained with FrozenBatchNorm2d(eps=0): loading them sets eps to 0 (torchvision does too).
ZERO_EPS_WEIGHTS = frozenset({
    "FasterRCNN_ResNet50_FPN_Weights.COCO_V1",
    "MaskRCNN_ResNet50_FPN_Weights.COCO_V1",
    "KeypointRCNN_ResNet50_FPN_Weights.COCO_V1",
    "RetinaNet_ResNet50_FPN_Weights.COCO_V1",
})


def _describe(weights: Any) -> str:
    return repr(weights) if isinstance(weights, WeightsEnum) else f"from {str(getattr(weights, 'path', weights))!r}"


def _ovewrite_value_param(param: str, actual: Optional[V], expected: V) -> V:
    """``expected`` when ``actual`` is None or equal to it; a ValueError naming both otherwise.

    (The spelling is torchvision's, kept so that code written against it reads the same.)
    """
    if actual is not None and actual != expected:
        raise ValueError(f"{param}={actual!r} does not match the pretrained weights, which have {param}="
                         f"{expected!r}. Leave {param} out (or pass {expected!r}) to load them; for a model with "
                         f"{param}={actual!r}, pass weights=None and start from weights_backbone instead.")
    return expected


def _ovewrite_named_param(kwargs: Dict[str, Any], param: str, new_value: V) -> None:
    """Set ``kwargs[param] = new_value``, or raise if the caller passed a different value."""
    if param in kwargs and kwargs[param] != new_value:
        raise ValueError(f"{param}={kwargs[param]!r} does not match the pretrained weights, which have "
                         f"{param}={new_value!r}. Leave {param} out to load them, or pass weights=None.")
    kwargs[param] = new_value


def expected_num_classes(weights: WeightsLike) -> Optional[int]:
    """The ``num_classes`` the weights were trained with: ``len(meta["categories"])``, or None if unknown."""
    builder_kwargs = weights.meta.get("builder_kwargs") or {}
    if builder_kwargs.get("num_classes") is not None:
        return int(builder_kwargs["num_classes"])
    categories = weights.meta.get("categories")
    return len(categories) if categories is not None else None


def expected_num_keypoints(weights: WeightsLike) -> Optional[int]:
    """``len(meta["keypoint_names"])`` (or a training checkpoint's ``num_keypoints``), None if unknown."""
    builder_kwargs = weights.meta.get("builder_kwargs") or {}
    if builder_kwargs.get("num_keypoints") is not None:
        return int(builder_kwargs["num_keypoints"])
    names = weights.meta.get("keypoint_names")
    return len(names) if names is not None else None


@dataclass(frozen=True)
class ResolvedWeights:
    """A builder's ``weights``, ``weights_backbone`` and ``num_classes`` after torchvision's rules."""

    weights: Optional[WeightsLike]
    weights_backbone: Optional[WeightsLike]
    num_classes: int

    @property
    def is_trained(self) -> bool:
        """True when any pretrained weights are used: FrozenBatchNorm2d, trainable layers default 3."""
        return self.weights is not None or self.weights_backbone is not None


def resolve_weights(
    builder: str,
    weights: Any,
    weights_enum: Type[WeightsEnum],
    weights_backbone: Any,
    backbone_enum: Type[WeightsEnum],
    num_classes: Optional[int],
    *,
    default_num_classes: int = 91,
) -> ResolvedWeights:
    """Verify ``weights`` / ``weights_backbone`` (members, names or paths) and settle ``num_classes``.

    Raises:
        ValueError: ``num_classes`` differs from the weights' categories, or a training checkpoint
            was saved from another builder.
    """
    weights = weights_enum.verify(weights)
    weights_backbone = backbone_enum.verify(weights_backbone)
    if weights is not None:
        saved_from = weights.meta.get("builder") if isinstance(weights, LocalWeights) else None
        if saved_from is not None and saved_from != builder:
            raise ValueError(f"the checkpoint {str(weights.path)!r} was saved from {saved_from!r}, not {builder!r}: "
                             f"build it with {saved_from}(weights=...) or torchdet.models.get_model({saved_from!r}, "
                             "weights=...)")
        weights_backbone = None
        expected = expected_num_classes(weights)
        if expected is not None:
            num_classes = _ovewrite_value_param("num_classes", num_classes, expected)
    if num_classes is None:
        num_classes = default_num_classes
    return ResolvedWeights(weights=weights, weights_backbone=weights_backbone, num_classes=num_classes)


def resolve_num_keypoints(weights: Optional[WeightsLike], num_keypoints: Optional[int], default: int = 17) -> int:
    """``num_keypoints`` for Keypoint R-CNN: the weights' keypoint count, or ``default`` without weights."""
    if weights is not None:
        expected = expected_num_keypoints(weights)
        if expected is not None:
            return _ovewrite_value_param("num_keypoints", num_keypoints, expected)
    return default if num_keypoints is None else num_keypoints


def resolve_backbone_weights(weights: Any, weights_enum: Type[WeightsEnum], kwargs: Dict[str, Any]) -> Optional[WeightsLike]:
    """For a classification backbone constructor (``resnet50(weights=...)``): verify ``weights`` and set
    ``kwargs["num_classes"]`` to the number of categories the weights have (an error if it differs).
    """
    weights = weights_enum.verify(weights)
    if weights is not None:
        categories = weights.meta.get("categories")
        if categories is not None:
            _ovewrite_named_param(kwargs, "num_classes", len(categories))
    return weights


def overwrite_eps(model: nn.Module, eps: float) -> None:
    """Set ``eps`` of every FrozenBatchNorm2d in ``model`` (legacy checkpoints were trained with 0)."""
    from torchdet.ops.misc import FrozenBatchNorm2d

    for module in model.modules():
        if isinstance(module, FrozenBatchNorm2d):
            module.eps = eps


def load_weights(model: nn.Module, weights: WeightsLike, *, progress: bool = True) -> nn.Module:
    """Load ``weights`` (from torch.hub's cache, downloading when absent, or from a file) into ``model``.

    Raises:
        hub.CheckpointDownloadError: not cached and not downloadable (says where to put the file).
        hub.CheckpointReadError: the file is truncated or holds no state_dict (names the file).
        hub.CheckpointMismatchError: keys or shapes do not fit ``model`` (lists a few).
    """
    state_dict = weights.get_state_dict(progress=progress)
    source = _describe(weights)
    if isinstance(weights, WeightsEnum):
        source += f" ({weights.cache_path()})"
    hub.load_state_dict_into(model, state_dict, source=source)
    official = weights.official
    if official is not None and repr(official) in ZERO_EPS_WEIGHTS:
        overwrite_eps(model, 0.0)
    return model
