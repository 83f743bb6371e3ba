"""Builders and weights by name: ``list_models()``, ``get_model(name)``, ``get_model_weights``, ``get_weight``.

Builders are imported lazily from their modules (``torchdet.models.faster_rcnn`` ...), so this
module imports no model code until a builder is asked for.
"""
from __future__ import annotations

import fnmatch
import importlib
from types import ModuleType
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Type, Union

from torch import nn

from torchdet.weights import backbone as _backbone_weights
from torchdet.weights import detection as _detection_weights
from torchdet.weights._api import WeightsEnum

__all__ = ["list_models", "get_model_builder", "get_model", "get_model_weights", "get_weight", "BUILDERS",
           "DETECTION_BUILDERS"]

# builder name -> (module defining it, name of its weights enum)
BUILDERS: Dict[str, Tuple[str, str]] = {
    "fasterrcnn_resnet50_fpn": ("torchdet.models.faster_rcnn", "FasterRCNN_ResNet50_FPN_Weights"),
    "fasterrcnn_resnet50_fpn_v2": ("torchdet.models.faster_rcnn", "FasterRCNN_ResNet50_FPN_V2_Weights"),
    "fasterrcnn_mobilenet_v3_large_fpn": ("torchdet.models.faster_rcnn", "FasterRCNN_MobileNet_V3_Large_FPN_Weights"),
    "fasterrcnn_mobilenet_v3_large_320_fpn": ("torchdet.models.faster_rcnn",
                                              "FasterRCNN_MobileNet_V3_Large_320_FPN_Weights"),
    "maskrcnn_resnet50_fpn": ("torchdet.models.mask_rcnn", "MaskRCNN_ResNet50_FPN_Weights"),
    "maskrcnn_resnet50_fpn_v2": ("torchdet.models.mask_rcnn", "MaskRCNN_ResNet50_FPN_V2_Weights"),
    "keypointrcnn_resnet50_fpn": ("torchdet.models.keypoint_rcnn", "KeypointRCNN_ResNet50_FPN_Weights"),
    "retinanet_resnet50_fpn": ("torchdet.models.retinanet", "RetinaNet_ResNet50_FPN_Weights"),
    "retinanet_resnet50_fpn_v2": ("torchdet.models.retinanet", "RetinaNet_ResNet50_FPN_V2_Weights"),
    "fcos_resnet50_fpn": ("torchdet.models.fcos", "FCOS_ResNet50_FPN_Weights"),
    "ssd300_vgg16": ("torchdet.models.ssd", "SSD300_VGG16_Weights"),
    "ssdlite320_mobilenet_v3_large": ("torchdet.models.ssdlite", "SSDLite320_MobileNet_V3_Large_Weights"),
    "resnet50": ("torchdet.backbones.resnet", "ResNet50_Weights"),
    "mobilenet_v3_large": ("torchdet.backbones.mobilenet_v3", "MobileNet_V3_Large_Weights"),
    "vgg16": ("torchdet.backbones.vgg", "VGG16_Weights"),
}

# The twelve detection builders, in torchvision's documentation order.
DETECTION_BUILDERS: List[str] = [name for name, (module, _) in BUILDERS.items() if module.startswith("torchdet.models.")]

WEIGHTS_ENUMS: Dict[str, Type[WeightsEnum]] = {
    name: getattr(module, name)
    for module in (_detection_weights, _backbone_weights)
    for name in module.__all__
}


def _patterns(value: Union[str, Iterable[str], None]) -> List[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def list_models(
    module: Optional[Union[ModuleType, str]] = None,
    include: Union[str, Iterable[str], None] = None,
    exclude: Union[str, Iterable[str], None] = None,
) -> List[str]:
    """Sorted builder names, optionally those defined under ``module`` (``torchdet.models``,
    ``torchdet.backbones`` or a dotted name) and filtered by fnmatch patterns (``"*rcnn*"``).
    """
    prefix = module if isinstance(module, str) or module is None else module.__name__
    names = [n for n, (mod, _) in BUILDERS.items() if prefix is None or mod == prefix or mod.startswith(prefix + ".")]
    included = _patterns(include)
    if included:
        names = [n for n in names if any(fnmatch.fnmatch(n, p) for p in included)]
    excluded = _patterns(exclude)
    names = [n for n in names if not any(fnmatch.fnmatch(n, p) for p in excluded)]
    return sorted(names)


def _unknown(name: str) -> ValueError:
    return ValueError(f"unknown model {name!r}; the models are: {', '.join(sorted(BUILDERS))}")


def get_model_builder(name: str) -> Callable[..., nn.Module]:
    """The builder function called ``name`` (imported on first use)."""
    key = name.lower()
    if key not in BUILDERS:
        raise _unknown(name)
    module_name, _ = BUILDERS[key]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name == module_name:
            raise ImportError(f"{name}: its module {module_name} is not available in this torchdet") from e
        raise
    return getattr(module, key)


def get_model(name: str, **config: Any) -> nn.Module:
    """Build a model by name: ``get_model("fasterrcnn_resnet50_fpn", weights="DEFAULT")``."""
    return get_model_builder(name)(**config)


def get_model_weights(name: Union[str, Callable[..., Any]]) -> Type[WeightsEnum]:
    """The weights enum of a builder, given its name or the builder itself."""
    key = name if isinstance(name, str) else getattr(name, "__name__", repr(name))
    key = key.lower()
    if key not in BUILDERS:
        raise _unknown(key)
    return WEIGHTS_ENUMS[BUILDERS[key][1]]


def get_weight(name: str) -> WeightsEnum:
    """A weights member by its full name: ``get_weight("FasterRCNN_ResNet50_FPN_Weights.COCO_V1")``."""
    enum_name, _, member = name.partition(".")
    if not member:
        raise ValueError(f"{name!r} is not a full weights name; expected 'EnumName.MEMBER', e.g. "
                         "'FasterRCNN_ResNet50_FPN_Weights.COCO_V1'")
    enum = WEIGHTS_ENUMS.get(enum_name)
    if enum is None:
        raise ValueError(f"unknown weights enum {enum_name!r} in {name!r}; the enums are: "
                         f"{', '.join(sorted(WEIGHTS_ENUMS))}")
    if member not in enum.__members__:
        raise ValueError(f"{enum_name} has no weights {member!r}; it has: {', '.join(enum.__members__)}")
    return enum[member]
