"""The model registry: one ``ModelRecord`` per builder, written by ``@register_model`` where the builder is defined.

A record says once what a builder makes: its name, what the model predicts (``boxes``, ``masks``,
``keypoints``), its input-size rule (free, or a fixed ``(H, W)`` such as SSD's 300x300) and its
weights enums. Every command reads it; nothing guesses from a name.

    @register_model(outputs=("boxes", "masks"), pretrained=MaskRCNN_ResNet50_FPN_Weights.COCO_V1,
                    pretrained_backbone=ResNet50_Weights.IMAGENET1K_V1)
    def maskrcnn_resnet50_fpn(*, weights=None, weights_backbone=ResNet50_Weights.IMAGENET1K_V1, ...): ...

The decorator also takes torchvision's legacy keywords for the builder: ``pretrained=True/False``
and ``pretrained_backbone=True/False`` (or a bool as ``weights``, or the keywords by position) become
``weights=<the pretrained member>`` / ``None`` with a deprecation warning.

The registry is filled as the model modules load; the lookups (torchvision's ``list_models``,
``get_model``, ``get_model_builder``, ``get_model_weights``, ``get_weight``) import the zoo on first
use, so importing this module imports no model code. It lives in ``torchdet.weights`` (the layer both
the backbones and the detectors import) and ``torchdet.models.registry`` re-exports it.
"""
from __future__ import annotations

import fnmatch
import functools
import importlib
import inspect
import warnings
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Type, Union

from torch import nn

from torchdet.weights import backbone as _backbone_weights
from torchdet.weights import detection as _detection_weights
from torchdet.weights._api import WeightsEnum

__all__ = [
    "ModelRecord", "register_model", "registered_models", "get_model_record", "record_of", "outputs_of",
    "list_models", "get_model_builder", "get_model", "get_model_weights", "get_weight",
    "build_model", "builder_accepts", "model_outputs", "TASKS", "DETECTION_OUTPUTS",
]

TASKS = ("detection", "classification")
DETECTION_OUTPUTS = ("boxes", "masks", "keypoints")

# The packages whose modules register builders, imported by the first lookup.
_REGISTERING_PACKAGES = ("torchdet.models", "torchdet.models.tiny", "torchdet.backbones")

# The attribute a registered builder sets on the model it returns: the record's name.
BUILDER_ATTRIBUTE = "registered_builder"


@dataclass(frozen=True)
class ModelRecord:
    """What one builder makes.

    Attributes:
        name: the builder's name (``"fasterrcnn_resnet50_fpn"``), or ``"package.module:function"``
            for an unregistered builder named that way.
        builder: the builder function (taking the legacy keywords).
        module: the module that defines it.
        task: ``"detection"`` (``model(images) -> [{"boxes", "scores", "labels", ...}]``) or
            ``"classification"`` (a backbone: ``model(images [N, 3, H, W]) -> logits [N, classes]``).
        outputs: detection: the keys each image's result holds besides scores and labels, in
            ``("boxes", "masks", "keypoints")`` order; classification: ``("logits",)``.
        fixed_size: ``(H, W)`` every image is resized to (SSD 300x300, SSDlite 320x320), or None when
            the input size is free (R-CNN, RetinaNet, FCOS resize the short side, keeping the aspect).
        pretrained: the weights member ``pretrained=True`` stands for (its enum is ``weights``), or
            None when the builder has no published weights.
        pretrained_backbone: likewise for ``pretrained_backbone=True``.
    """

    name: str
    builder: Callable[..., nn.Module]
    module: str
    task: str
    outputs: Tuple[str, ...]
    fixed_size: Optional[Tuple[int, int]]
    pretrained: Optional[WeightsEnum]
    pretrained_backbone: Optional[WeightsEnum]

    @property
    def weights(self) -> Optional[Type[WeightsEnum]]:
        """The builder's weights enum (``FasterRCNN_ResNet50_FPN_Weights``), or None."""
        return None if self.pretrained is None else type(self.pretrained)

    @property
    def backbone_weights(self) -> Optional[Type[WeightsEnum]]:
        """The enum of the backbone's ImageNet weights (``ResNet50_Weights``), or None."""
        return None if self.pretrained_backbone is None else type(self.pretrained_backbone)

    def accepts(self, kwarg: str) -> bool:
        """Whether the builder takes keyword ``kwarg`` (by name, or through ``**kwargs``)."""
        params = inspect.signature(self.builder).parameters
        return kwarg in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


_RECORDS: Dict[str, ModelRecord] = {}


def register_model(*, task: str = "detection", outputs: Optional[Iterable[str]] = None,
                   fixed_size: Optional[Tuple[int, int]] = None, pretrained: Optional[WeightsEnum] = None,
                   pretrained_backbone: Optional[WeightsEnum] = None) -> Callable[[Callable[..., nn.Module]],
                                                                                    Callable[..., nn.Module]]:
    """Register the decorated builder under its function name (see ``ModelRecord`` for the arguments).

    ``outputs`` defaults to ``("boxes",)`` for detection and ``("logits",)`` for classification.
    The returned builder is the same function, taking torchvision's legacy keywords as well.

    Raises:
        ValueError: an unknown task or output, or another builder registered under the same name.
    """
    if task not in TASKS:
        raise ValueError(f"task={task!r}; choose one of {TASKS}")
    outputs = tuple(outputs) if outputs is not None else (("boxes",) if task == "detection" else ("logits",))
    if task == "detection" and ("boxes" not in outputs or not set(outputs) <= set(DETECTION_OUTPUTS)):
        raise ValueError(f"outputs={outputs!r}: a detector predicts 'boxes', and may add 'masks' and 'keypoints'")
    outputs = tuple(sorted(outputs, key=lambda o: DETECTION_OUTPUTS.index(o))) if task == "detection" else outputs

    def decorate(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        builder = _with_legacy_keywords(fn, pretrained, pretrained_backbone)
        record = ModelRecord(name=fn.__name__, builder=builder, module=fn.__module__, task=task, outputs=outputs,
                             fixed_size=None if fixed_size is None else (int(fixed_size[0]), int(fixed_size[1])),
                             pretrained=pretrained, pretrained_backbone=pretrained_backbone)
        previous = _RECORDS.get(record.name)
        if previous is not None and previous.module != record.module:
            raise ValueError(f"a builder named {record.name!r} is already registered (from {previous.module}); "
                             f"rename the one in {record.module}")
        _RECORDS[record.name] = record
        return builder

    return decorate


# -- legacy keywords ------------------------------------------------------------------------------
_LEGACY_KEYWORDS = (("weights", "pretrained"), ("weights_backbone", "pretrained_backbone"))


def _with_legacy_keywords(fn: Callable[..., nn.Module], pretrained: Optional[WeightsEnum],
                          pretrained_backbone: Optional[WeightsEnum]) -> Callable[..., nn.Module]:
    """``fn`` taking ``pretrained`` / ``pretrained_backbone`` (and keywords by position) as torchvision's builders
    do, and marking the model it returns with its name (``BUILDER_ATTRIBUTE``)."""
    name = fn.__name__
    params = inspect.signature(fn).parameters
    keyword_only = [p for p, v in params.items() if v.kind is inspect.Parameter.KEYWORD_ONLY]
    members = {"weights": pretrained, "weights_backbone": pretrained_backbone}

    @functools.wraps(fn)
    def builder(*args: Any, **kwargs: Any) -> nn.Module:
        if args:
            kwargs = _positional_to_keywords(name, keyword_only, args, kwargs)
        for new, old in _LEGACY_KEYWORDS:
            if new not in params:
                continue
            if old in kwargs:
                if new in kwargs:
                    raise TypeError(f"{name}() got both {old}={kwargs[old]!r} and {new}={kwargs[new]!r}; '{old}' is "
                                    f"the deprecated spelling of '{new}': pass {new} alone")
                kwargs[new] = _legacy_value(name, old, new, kwargs.pop(old), members[new])
            elif isinstance(kwargs.get(new), bool):
                kwargs[new] = _legacy_value(name, new, new, kwargs[new], members[new])
        model = fn(**kwargs)
        setattr(model, BUILDER_ATTRIBUTE, name)
        return model

    return builder


def _positional_to_keywords(name: str, keyword_only: List[str], args: Tuple[Any, ...],
                            kwargs: Dict[str, Any]) -> Dict[str, Any]:
    if len(args) > len(keyword_only):
        raise TypeError(f"{name}() takes its arguments by keyword ({', '.join(keyword_only)}); got {len(args)} "
                        "positional arguments")
    names = keyword_only[: len(args)]
    for param in names:
        if param in kwargs:
            raise TypeError(f"{name}() got multiple values for argument '{param}'")
    warnings.warn(f"{name}: passing {', '.join(names)} by position is deprecated; pass "
                  f"{', '.join(f'{n}=...' for n in names)} by keyword", UserWarning, stacklevel=3)
    return {**dict(zip(names, args)), **kwargs}


def _legacy_value(name: str, old: str, new: str, value: Any, member: Optional[WeightsEnum]) -> Optional[WeightsEnum]:
    """``member`` for a true ``value``, None for a false one, with torchvision's kind of deprecation warning."""
    if value and member is None:
        raise ValueError(f"{name}: {old}={value!r} asks for pretrained weights, but {name} has no published "
                         f"{'backbone ' if new == 'weights_backbone' else ''}weights; pass {new}=None")
    meaning = (f"{new}={member!r} (or {new}={type(member).__name__}.DEFAULT for the most recent weights)"
               if value else f"{new}=None")
    spelling = f"the parameter '{old}' is deprecated, use '{new}' instead" if old != new else \
        f"a bool as '{new}' is deprecated, pass a weights enum member or None"
    warnings.warn(f"{name}: {spelling}: {old}={value!r} means {meaning}", UserWarning, stacklevel=3)
    return member if value else None


# -- lookups --------------------------------------------------------------------------------------
def _load_registering_modules() -> None:
    for package in _REGISTERING_PACKAGES:
        importlib.import_module(package)


def registered_models(task: Optional[str] = None, *, with_weights: Optional[bool] = None) -> List[ModelRecord]:
    """Every record, in registration order (the detectors: the zoo in torchvision's documentation
    order, then the tiny from-scratch ones); optionally only one task, or only those with (or
    without) published weights."""
    _load_registering_modules()
    return [r for r in _RECORDS.values()
            if (task is None or r.task == task) and (with_weights is None or (r.weights is not None) == with_weights)]


def _unknown(name: str) -> ValueError:
    return ValueError(f"unknown model {name!r}; the models are: {', '.join(sorted(_RECORDS))} "
                      "(`torchdet models` lists the detectors), or give a builder as 'package.module:function'")


def get_model_record(name: str) -> ModelRecord:
    """The record of builder ``name``: a registered name, or ``"package.module:function"``.

    A ``module:function`` builder decorated with ``@register_model`` has its own record; an
    undecorated one gets a record saying it predicts boxes, with a free input size and no weights.

    Raises:
        ValueError: an unknown name (the message lists the registered ones), or a module or
            function that cannot be found.
    """
    if ":" not in name:
        _load_registering_modules()
        record = _RECORDS.get(name.lower())
        if record is None:
            raise _unknown(name)
        return record
    module_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"cannot import the module of builder {name!r}: {e}") from e
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"{module_name} has no builder function {attr!r}")
    registered = _RECORDS.get(getattr(fn, "__name__", ""))
    if registered is not None and registered.builder is fn:
        return registered
    return ModelRecord(name=name, builder=fn, module=module_name, task="detection", outputs=("boxes",),
                       fixed_size=None, pretrained=None, pretrained_backbone=None)


def record_of(model: nn.Module) -> Optional[ModelRecord]:
    """The record of the registered builder that made ``model``, or None (a model assembled from the classes)."""
    name = getattr(model, BUILDER_ATTRIBUTE, None)
    return _RECORDS.get(name) if isinstance(name, str) else None


def outputs_of(model: nn.Module) -> Tuple[str, ...]:
    """What a detector predicts: its builder's record, or for a model assembled from the classes (no
    record), what its ``roi_heads`` say they have (``has_mask()`` / ``has_keypoint()``)."""
    record = record_of(model)
    if record is not None:
        return record.outputs
    heads = getattr(model, "roi_heads", None)
    extra = [key for key, has in (("masks", "has_mask"), ("keypoints", "has_keypoint"))
             if callable(getattr(heads, has, None)) and getattr(heads, has)()]
    return ("boxes", *extra)


def _patterns(value: Union[str, Iterable[str], None]) -> List[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def list_models(
    module: Optional[Union[ModuleType, str]] = None,
    include: Union[str, Iterable[str], None] = None,
    exclude: Union[str, Iterable[str], None] = None,
) -> List[str]:
    """Sorted names of the builders with published weights (as torchvision's ``list_models``), optionally
    those defined under ``module`` (``torchdet.models``, ``torchdet.backbones`` or a dotted name) and
    filtered by fnmatch patterns (``"*rcnn*"``). ``registered_models()`` also has the tiny detectors.
    """
    prefix = module if isinstance(module, str) or module is None else module.__name__
    names = [r.name for r in registered_models(with_weights=True)
             if prefix is None or r.module == prefix or r.module.startswith(prefix + ".")]
    included = _patterns(include)
    if included:
        names = [n for n in names if any(fnmatch.fnmatch(n, p) for p in included)]
    excluded = _patterns(exclude)
    names = [n for n in names if not any(fnmatch.fnmatch(n, p) for p in excluded)]
    return sorted(names)


def get_model_builder(name: str) -> Callable[..., nn.Module]:
    """The builder function called ``name`` (a registered name, or ``"package.module:function"``)."""
    return get_model_record(name).builder


def get_model(name: str, **config: Any) -> nn.Module:
    """Build a model by name: ``get_model("fasterrcnn_resnet50_fpn", weights="DEFAULT")``."""
    return get_model_builder(name)(**config)


def get_model_weights(name: Union[str, Callable[..., Any]]) -> Type[WeightsEnum]:
    """The weights enum of a builder, given its name or the builder itself.

    Raises:
        ValueError: an unknown builder, or one without published weights.
    """
    key = name if isinstance(name, str) else getattr(name, "__name__", repr(name))
    record = get_model_record(key)
    if record.weights is None:
        raise ValueError(f"{record.name} has no published weights; build it with weights=None, or pass a "
                         "checkpoint file as weights")
    return record.weights


_WEIGHTS_ENUMS: Dict[str, Type[WeightsEnum]] = {
    name: getattr(module, name)
    for module in (_detection_weights, _backbone_weights)
    for name in module.__all__
}


def get_weight(name: str) -> WeightsEnum:
    """A weights member by its full name: ``get_weight("FasterRCNN_ResNet50_FPN_Weights.COCO_V1")``."""
    enum_name, _, member = name.partition(".")
    if not member:
        raise ValueError(f"{name!r} is not a full weights name; expected 'EnumName.MEMBER', e.g. "
                         "'FasterRCNN_ResNet50_FPN_Weights.COCO_V1'")
    enum = _WEIGHTS_ENUMS.get(enum_name)
    if enum is None:
        raise ValueError(f"unknown weights enum {enum_name!r} in {name!r}; the enums are: "
                         f"{', '.join(sorted(_WEIGHTS_ENUMS))}")
    if member not in enum.__members__:
        raise ValueError(f"{enum_name} has no weights {member!r}; it has: {', '.join(enum.__members__)}")
    return enum[member]


# -- building from a recorded name (run checkpoints, the CLI) -------------------------------------
def build_model(name: str, kwargs: Mapping[str, Any], weights: Any = None, weights_backbone: Any = None) -> nn.Module:
    """``builder(weights=..., weights_backbone=..., **kwargs)`` for the builder called ``name``.

    Raises:
        ValueError: an unknown builder, or kwargs it does not take.
    """
    builder = get_model_builder(name)
    try:
        return builder(weights=weights, weights_backbone=weights_backbone, **dict(kwargs))
    except TypeError as e:
        raise ValueError(f"cannot build {name} with {dict(kwargs)}: {e}") from e


def builder_accepts(name: str, kwarg: str) -> bool:
    """Whether builder ``name`` takes keyword ``kwarg`` (explicitly, or through ``**kwargs``)."""
    return get_model_record(name).accepts(kwarg)


def model_outputs(name: str) -> List[str]:
    """What builder ``name``'s models predict, from its record: ``["boxes"]``, plus ``"masks"`` / ``"keypoints"``."""
    return list(get_model_record(name).outputs)
