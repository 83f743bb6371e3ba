"""Detection backbones: a classification network's feature stages, partly frozen, with an FPN on top.

- ``BackboneWithFPN``: ``body`` (an IntermediateLayerGetter) then ``fpn``; ``out_channels`` = 256.
- ``_resnet_fpn_extractor`` / ``resnet_fpn_backbone``: ResNet stages layer1..layer4 as levels "0".."3"
  (plus "pool").
- ``_resnet50_fpn_p3p7``: the one-stage detectors' ResNet-50 backbone, levels P3..P5 plus "p6", "p7".
- ``_mobilenet_extractor`` / ``mobilenet_backbone``: MobileNet ``features`` split at the stride-2
  blocks, the last two stages by default.
- ``_validate_trainable_layers``: how many stages the detection builders leave trainable.

``resnet_fpn_backbone`` and ``mobilenet_backbone`` also take torchvision's older calls, with its
deprecation warnings: arguments passed by position (``resnet_fpn_backbone("resnet50", None)``)
and ``pretrained=True/False`` (or a bool as ``weights``) for ImageNet weights / none.

Freezing rules, level names and state_dict keys follow torchvision's ``torchvision.models.detection.backbone_utils``.
"""
from __future__ import annotations

import functools
import inspect
import warnings
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Sequence, TypeVar

import torch
from torch import Tensor, nn

from torchdet.backbones.mobilenet_v2 import mobilenet_v2
from torchdet.backbones.mobilenet_v3 import mobilenet_v3_large, mobilenet_v3_small
from torchdet.backbones.resnet import (
    ResNet, resnet18, resnet34, resnet50, resnet101, resnet152,
    resnext50_32x4d, resnext101_32x8d, wide_resnet50_2, wide_resnet101_2,
)
from torchdet.backbones.intermediate_layers import IntermediateLayerGetter
from torchdet.ops.feature_pyramid_network import ExtraFPNBlock, FeaturePyramidNetwork, LastLevelMaxPool, LastLevelP6P7
from torchdet.ops.misc import FrozenBatchNorm2d
from torchdet.weights.backbone import MobileNet_V3_Large_Weights, ResNet50_Weights

__all__ = ["BackboneWithFPN", "resnet_fpn_backbone", "mobilenet_backbone"]

NormLayer = Callable[..., nn.Module]

_RESNETS: Dict[str, Callable[..., ResNet]] = {
    f.__name__: f
    for f in (
        resnet18, resnet34, resnet50, resnet101, resnet152,
        resnext50_32x4d, resnext101_32x8d, wide_resnet50_2, wide_resnet101_2,
    )
}
_MOBILENETS: Dict[str, Callable[..., nn.Module]] = {
    f.__name__: f for f in (mobilenet_v2, mobilenet_v3_large, mobilenet_v3_small)
}

# What pretrained=True means per backbone name; other names have no weights in torchdet yet, and
# their builder refuses the ImageNet weights' name with a clear error.
_IMAGENET_WEIGHTS: Dict[str, Any] = {
    "resnet50": ResNet50_Weights.IMAGENET1K_V1,
    "mobilenet_v3_large": MobileNet_V3_Large_Weights.IMAGENET1K_V1,
}

# ResNet parameter-name prefixes, from the top stage down: trainable_layers=k trains the first k.
_RESNET_STAGES = ["layer4", "layer3", "layer2", "layer1", "conv1"]


def _channels_last_on_cpu(x: Tensor) -> Tensor:
    """``x`` in channels-last layout when it lives on the CPU (not while tracing for export).

    oneDNN's CPU convolutions run 1.3-2x faster on NHWC than on NCHW inputs at detection sizes
    (every conv then skips its own layout reorders); other devices keep their layout.
    """
    if x.dim() != 4 or x.device.type != "cpu" or torch.jit.is_tracing():
        return x
    return x.contiguous(memory_format=torch.channels_last)


class BackboneWithFPN(nn.Module):
    """``body`` returns the chosen intermediate layers; ``fpn`` turns them into a pyramid.

    forward(x: [N, 3, H, W]) -> OrderedDict[str, Tensor], each ``[N, out_channels, H_i, W_i]``.

    In eval mode on the CPU the body and FPN run in channels-last layout when ``channels_last``
    is True (the default; set it False to run NCHW throughout). The maps are then returned in
    that layout (same shapes and values; ``.contiguous()`` gives NCHW strides), so the heads'
    convs run on it too, unless ``contiguous_outputs`` is True. Training keeps NCHW: batch
    statistics computed in the other layout round differently, and with random weights that
    rounding grows into visibly different losses.
    """

    def __init__(
        self,
        backbone: nn.Module,
        return_layers: Dict[str, str],
        in_channels_list: List[int],
        out_channels: int,
        extra_blocks: Optional[ExtraFPNBlock] = None,
        norm_layer: Optional[NormLayer] = None,
    ) -> None:
        super().__init__()
        if extra_blocks is None:
            extra_blocks = LastLevelMaxPool()
        self.body = IntermediateLayerGetter(backbone, return_layers=return_layers)
        self.fpn = FeaturePyramidNetwork(
            in_channels_list=in_channels_list,
            out_channels=out_channels,
            extra_blocks=extra_blocks,
            norm_layer=norm_layer,
        )
        self.out_channels = out_channels
        self.channels_last = True
        self.contiguous_outputs = False

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        if self.training or not self.channels_last:
            return self.fpn(self.body(x))
        features = self.fpn(self.body(_channels_last_on_cpu(x)))
        if not self.contiguous_outputs:
            return features
        out: Dict[str, Tensor] = OrderedDict()
        for name, feature in features.items():
            out[name] = feature.contiguous()
        return out


def _backbone_norm_layer(is_trained: bool) -> type:
    """Pretrained backbones keep their statistics frozen; from scratch they train BatchNorm."""
    return FrozenBatchNorm2d if is_trained else nn.BatchNorm2d


def _validate_trainable_layers(
    is_trained: bool, trainable_backbone_layers: Optional[int], max_value: int, default_value: int
) -> int:
    """The number of trainable backbone stages a detection builder should use.

    Without pretrained weights everything trains (``max_value``; a value passed anyway is
    overridden with a warning). With weights, ``None`` means ``default_value``.
    """
    if not is_trained:
        if trainable_backbone_layers is not None:
            warnings.warn(
                "Changing trainable_backbone_layers has no effect if neither pretrained nor "
                f"pretrained_backbone have been set to True, falling back to trainable_backbone_layers={max_value} "
                "so that all layers are trainable"
            )
        trainable_backbone_layers = max_value
    if trainable_backbone_layers is None:
        trainable_backbone_layers = default_value
    if not 0 <= trainable_backbone_layers <= max_value:
        raise ValueError(
            f"Trainable backbone layers should be in the range [0, {max_value}], got {trainable_backbone_layers}; "
            f"pass trainable_backbone_layers between 0 and {max_value}."
        )
    return trainable_backbone_layers


def _quoted_list(names: Sequence[str]) -> str:
    """``'a'``, ``'a' and 'b'``, ``'a', 'b', and 'c'`` (the wording of torchvision's warnings)."""
    if len(names) == 1:
        return f"'{names[0]}'"
    head = ", ".join(f"'{name}'" for name in names[:-1])
    return f"{head}{'' if len(names) == 2 else ','} and '{names[-1]}'"


_Builder = TypeVar("_Builder", bound=Callable[..., nn.Module])


def _torchvision_calls(builder: _Builder) -> _Builder:
    """Let a keyword-only backbone helper take torchvision's older calls, warning as torchvision does.

    - Arguments by position map onto the keyword-only parameters in order.
    - ``pretrained=True`` (or ``weights=True``) means the backbone's ImageNet weights, ``False``
      means none; ``weights`` given as a member, a name, a path or None is left alone.
    """
    names = [p.name for p in inspect.signature(builder).parameters.values() if p.kind is p.KEYWORD_ONLY]

    @functools.wraps(builder)
    def wrapper(*args: Any, **kwargs: Any) -> nn.Module:
        if len(args) > len(names):
            raise TypeError(f"{builder.__name__}() takes at most {len(names)} arguments ({len(args)} given)")
        if args:
            positional = dict(zip(names, args))
            repeated = sorted(set(positional) & set(kwargs))
            if repeated:
                raise TypeError(f"{builder.__name__}() got multiple values for argument(s) {_quoted_list(repeated)}")
            warnings.warn(
                f"Using {_quoted_list(list(positional))} as positional parameter(s) is deprecated since 0.13 and may "
                "be removed in the future. Please use keyword parameter(s) instead."
            )
            kwargs.update(positional)
        weights = kwargs.get("weights")
        legacy_weights = isinstance(weights, bool) or weights == "legacy"
        if "pretrained" in kwargs and "weights" not in kwargs or legacy_weights:
            pretrained = kwargs.pop("weights") if legacy_weights else kwargs.pop("pretrained")
            if not legacy_weights:
                warnings.warn(
                    "The parameter 'pretrained' is deprecated since 0.13 and may be removed in the future, "
                    "please use 'weights' instead."
                )
            name = kwargs.get("backbone_name")
            default = _IMAGENET_WEIGHTS.get(name, "IMAGENET1K_V1") if pretrained else None
            warnings.warn(
                "Arguments other than a weight enum or `None` for 'weights' are deprecated since 0.13 and may be "
                f"removed in the future. The current behavior is equivalent to passing `weights={default}`. "
                f"You can also use `weights={type(default).__name__}.DEFAULT` to get the most up-to-date weights."
            )
            kwargs["weights"] = default
        return builder(**kwargs)

    return wrapper  # type: ignore[return-value]


def _resnet_fpn_extractor(
    backbone: ResNet,
    trainable_layers: int,
    returned_layers: Optional[List[int]] = None,
    extra_blocks: Optional[ExtraFPNBlock] = None,
    norm_layer: Optional[NormLayer] = None,
) -> BackboneWithFPN:
    """Freeze all but the top ``trainable_layers`` stages of ``backbone`` (0..5; 5 also trains bn1),
    and put an FPN (256 channels) on ``layer{k}`` for k in ``returned_layers`` (default 1..4),
    named "0", "1", ... in that order. ``norm_layer`` is the FPN's.
    """
    if not 0 <= trainable_layers <= 5:
        raise ValueError(f"Trainable layers should be in the range [0, 5], got {trainable_layers}; "
                         "pass trainable_layers between 0 and 5.")
    layers_to_train = _RESNET_STAGES[:trainable_layers]
    if trainable_layers == 5:
        layers_to_train.append("bn1")
    for name, parameter in backbone.named_parameters():
        if not any(name.startswith(prefix) for prefix in layers_to_train):
            parameter.requires_grad_(False)

    if extra_blocks is None:
        extra_blocks = LastLevelMaxPool()
    if returned_layers is None:
        returned_layers = [1, 2, 3, 4]
    if not returned_layers or min(returned_layers) <= 0 or max(returned_layers) >= 5:
        raise ValueError(f"returned_layers should be a non-empty list of values in [1, 4], got {returned_layers}")
    return_layers = {f"layer{k}": str(v) for v, k in enumerate(returned_layers)}
    # backbone.inplanes is layer4's width (2048 for a bottleneck ResNet): layer k has inplanes / 2**(4-k).
    in_channels_stage2 = backbone.inplanes // 8
    in_channels_list = [in_channels_stage2 * 2 ** (k - 1) for k in returned_layers]
    return BackboneWithFPN(
        backbone, return_layers, in_channels_list, out_channels=256, extra_blocks=extra_blocks, norm_layer=norm_layer
    )


@_torchvision_calls
def resnet_fpn_backbone(
    *,
    backbone_name: str,
    weights: Any,
    norm_layer: NormLayer = FrozenBatchNorm2d,
    trainable_layers: int = 3,
    returned_layers: Optional[List[int]] = None,
    extra_blocks: Optional[ExtraFPNBlock] = None,
) -> BackboneWithFPN:
    """A ResNet-FPN backbone: ``backbone_name`` (e.g. "resnet50") built with ``norm_layer``,
    then ``_resnet_fpn_extractor``."""
    if backbone_name not in _RESNETS:
        raise ValueError(f"unknown ResNet backbone_name {backbone_name!r}; choose one of {sorted(_RESNETS)}")
    backbone = _RESNETS[backbone_name](weights=weights, norm_layer=norm_layer)
    return _resnet_fpn_extractor(backbone, trainable_layers, returned_layers, extra_blocks)


def _resnet50_fpn_p3p7(
    weights_backbone: Any,
    progress: bool,
    is_trained: bool,
    trainable_backbone_layers: Optional[int],
    *,
    p6_from_c5: bool = False,
    norm_layer: Optional[NormLayer] = None,
) -> BackboneWithFPN:
    """RetinaNet's and FCOS's backbone: ResNet-50 (``weights_backbone`` loaded into it) with an FPN on
    layer2..layer4, levels "0", "1", "2" (P3-P5, strides 8-32), then "p6" and "p7" (strides 64, 128).

    ``is_trained`` (any pretrained weights) sets the trainable-layers default (3 of 5; all 5 without
    weights) and, when ``norm_layer`` is None, the ResNet's norm: FrozenBatchNorm2d if trained, else
    BatchNorm2d. P6 is computed from P5 (the paper), or from C5 when ``p6_from_c5`` (the v2 models).
    """
    trainable_layers = _validate_trainable_layers(is_trained, trainable_backbone_layers, 5, 3)
    if norm_layer is None:
        norm_layer = _backbone_norm_layer(is_trained)
    backbone = resnet50(weights=weights_backbone, progress=progress, norm_layer=norm_layer)
    # P2 is skipped: it would add too many anchors (RetinaNet paper, section 4).
    extra_blocks = LastLevelP6P7(backbone.inplanes if p6_from_c5 else 256, 256)
    return _resnet_fpn_extractor(backbone, trainable_layers, returned_layers=[2, 3, 4], extra_blocks=extra_blocks)


def _mobilenet_extractor(
    backbone: nn.Module,
    fpn: bool,
    trainable_layers: int,
    returned_layers: Optional[List[int]] = None,
    extra_blocks: Optional[ExtraFPNBlock] = None,
    norm_layer: Optional[NormLayer] = None,
) -> nn.Module:
    """Split ``backbone.features`` into stages at the stride-2 blocks, freeze all but the top
    ``trainable_layers`` stages, and return either a BackboneWithFPN on stages ``returned_layers``
    (default: the last two) or ``Sequential(features, 1x1 conv to 256)``. Both have ``out_channels`` = 256.
    """
    features = backbone.features
    # Stage starts: the stem, every stride-2 block, and the last conv (the end of the last stage).
    stage_indices = [0] + [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)] + [len(features) - 1]
    num_stages = len(stage_indices)
    if not 0 <= trainable_layers <= num_stages:
        raise ValueError(f"Trainable layers should be in the range [0, {num_stages}], got {trainable_layers}; "
                         f"pass trainable_layers between 0 and {num_stages}.")
    freeze_before = len(features) if trainable_layers == 0 else stage_indices[num_stages - trainable_layers]
    for block in features[:freeze_before]:
        for parameter in block.parameters():
            parameter.requires_grad_(False)

    out_channels = 256
    if fpn:
        if extra_blocks is None:
            extra_blocks = LastLevelMaxPool()
        if returned_layers is None:
            returned_layers = [num_stages - 2, num_stages - 1]
        if not returned_layers or min(returned_layers) < 0 or max(returned_layers) >= num_stages:
            raise ValueError(
                f"returned_layers should be a non-empty list of values in [0, {num_stages - 1}], got {returned_layers}"
            )
        return_layers = {f"{stage_indices[k]}": str(v) for v, k in enumerate(returned_layers)}
        in_channels_list = [features[stage_indices[k]].out_channels for k in returned_layers]
        return BackboneWithFPN(
            features, return_layers, in_channels_list, out_channels, extra_blocks=extra_blocks, norm_layer=norm_layer
        )
    m = nn.Sequential(features, nn.Conv2d(features[-1].out_channels, out_channels, 1))
    m.out_channels = out_channels  # type: ignore[assignment]
    return m


@_torchvision_calls
def mobilenet_backbone(
    *,
    backbone_name: str,
    weights: Any,
    fpn: bool,
    norm_layer: NormLayer = FrozenBatchNorm2d,
    trainable_layers: int = 2,
    returned_layers: Optional[List[int]] = None,
    extra_blocks: Optional[ExtraFPNBlock] = None,
) -> nn.Module:
    """A MobileNet backbone: ``backbone_name`` (e.g. "mobilenet_v3_large") built with ``norm_layer``,
    then ``_mobilenet_extractor``."""
    if backbone_name not in _MOBILENETS:
        raise ValueError(f"unknown MobileNet backbone_name {backbone_name!r}; choose one of {sorted(_MOBILENETS)}")
    backbone = _MOBILENETS[backbone_name](weights=weights, norm_layer=norm_layer)
    return _mobilenet_extractor(backbone, fpn, trainable_layers, returned_layers, extra_blocks)
