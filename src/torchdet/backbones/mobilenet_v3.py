"""MobileNetV3 (Howard et al., 2019): inverted residuals with squeeze-excitation and hard-swish.

Module names and state_dict keys follow torchvision's ``torchvision.models.mobilenetv3``
(``features.i.block.j.*``, ``avgpool``, ``classifier.0`` / ``classifier.3``).
Options used by the detectors: ``dilated`` (C5 at stride 16 via dilation 2) and
``reduced_tail`` (halve the channels of the last stage, as SSDlite does).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, List, Optional, Tuple

import torch
from torch import Tensor, nn

from torchdet.backbones._weights_pending import require_no_weights
from torchdet.backbones.mobilenet_v2 import _make_divisible
from torchdet.ops.misc import Conv2dNormActivation, SqueezeExcitation
from torchdet.weights.backbone import MobileNet_V3_Large_Weights
from torchdet.weights.builder_support import load_weights, resolve_backbone_weights
from torchdet.weights.registry import register_model

__all__ = ["InvertedResidualConfig", "InvertedResidual", "MobileNetV3", "mobilenet_v3_large", "mobilenet_v3_small"]

NormLayer = Callable[..., nn.Module]


@dataclass(frozen=True)
class InvertedResidualConfig:
    """One bottleneck row of the paper's table, with channels already scaled by ``width_mult``."""

    input_channels: int
    kernel: int
    expanded_channels: int
    out_channels: int
    use_se: bool
    use_hs: bool  # hard-swish ("HS") rather than ReLU ("RE")
    stride: int
    dilation: int

    @staticmethod
    def adjust_channels(channels: int, width_mult: float) -> int:
        return _make_divisible(channels * width_mult, 8)

    @classmethod
    def scaled(
        cls, input_channels: int, kernel: int, expanded_channels: int, out_channels: int,
        use_se: bool, activation: str, stride: int, dilation: int, width_mult: float,
    ) -> "InvertedResidualConfig":
        if activation not in ("RE", "HS"):
            raise ValueError(f"activation must be 'RE' (ReLU) or 'HS' (hard-swish), got {activation!r}")
        adjust = partial(cls.adjust_channels, width_mult=width_mult)
        return cls(
            adjust(input_channels), kernel, adjust(expanded_channels), adjust(out_channels),
            use_se, activation == "HS", stride, dilation,
        )


class InvertedResidual(nn.Module):
    """Expand 1x1 (if needed), depthwise kxk, optional SE (hard-sigmoid gate), linear project 1x1.

    ``[N, C_in, H, W] -> [N, C_out, H/s, W/s]`` (s = 1 when dilated), residual when stride 1 and C_in == C_out.
    ``_is_cn`` marks the blocks that start a new stage (configured stride 2, even when dilated).
    """

    def __init__(
        self,
        cnf: InvertedResidualConfig,
        norm_layer: NormLayer,
        se_layer: Callable[..., nn.Module] = partial(SqueezeExcitation, scale_activation=nn.Hardsigmoid),
    ) -> None:
        super().__init__()
        if cnf.stride not in (1, 2):
            raise ValueError(f"InvertedResidual stride must be 1 or 2, got {cnf.stride}")
        self.use_res_connect = cnf.stride == 1 and cnf.input_channels == cnf.out_channels
        activation_layer = nn.Hardswish if cnf.use_hs else nn.ReLU

        layers: List[nn.Module] = []
        if cnf.expanded_channels != cnf.input_channels:
            layers.append(
                Conv2dNormActivation(
                    cnf.input_channels, cnf.expanded_channels, kernel_size=1,
                    norm_layer=norm_layer, activation_layer=activation_layer,
                )
            )
        layers.append(
            Conv2dNormActivation(
                cnf.expanded_channels, cnf.expanded_channels, kernel_size=cnf.kernel,
                stride=1 if cnf.dilation > 1 else cnf.stride, dilation=cnf.dilation,
                groups=cnf.expanded_channels, norm_layer=norm_layer, activation_layer=activation_layer,
            )
        )
        if cnf.use_se:
            layers.append(se_layer(cnf.expanded_channels, _make_divisible(cnf.expanded_channels // 4, 8)))
        layers.append(
            Conv2dNormActivation(
                cnf.expanded_channels, cnf.out_channels, kernel_size=1, norm_layer=norm_layer, activation_layer=None
            )
        )
        self.block = nn.Sequential(*layers)
        self.out_channels = cnf.out_channels
        self._is_cn = cnf.stride > 1

    def forward(self, x: Tensor) -> Tensor:
        out = self.block(x)
        return out + x if self.use_res_connect else out


class MobileNetV3(nn.Module):
    """Stem (3x3/2, hard-swish), the bottlenecks, a 1x1 conv to 6x the last width (``features``),
    ``avgpool`` and ``classifier`` (Linear, Hardswish, Dropout, Linear).

    Input ``[N, 3, H, W]``; ``features`` gives ``[N, 6 * C_last, H/32, W/32]``; output ``[N, num_classes]``.
    """

    def __init__(
        self,
        inverted_residual_setting: List[InvertedResidualConfig],
        last_channel: int,
        num_classes: int = 1000,
        block: Optional[Callable[..., nn.Module]] = None,
        norm_layer: Optional[NormLayer] = None,
        dropout: float = 0.2,
        **kwargs: Any,
    ) -> None:
        # Extra kwargs are ignored, as torchvision does: detection builders forward theirs here.
        super().__init__()
        if not inverted_residual_setting:
            raise ValueError("inverted_residual_setting should not be empty")
        if not all(isinstance(c, InvertedResidualConfig) for c in inverted_residual_setting):
            raise TypeError("inverted_residual_setting should be a list of InvertedResidualConfig")
        if block is None:
            block = InvertedResidual
        if norm_layer is None:
            norm_layer = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)

        first_channels = inverted_residual_setting[0].input_channels
        layers: List[nn.Module] = [
            Conv2dNormActivation(3, first_channels, kernel_size=3, stride=2, norm_layer=norm_layer,
                                 activation_layer=nn.Hardswish)
        ]
        layers += [block(cnf, norm_layer) for cnf in inverted_residual_setting]
        last_in = inverted_residual_setting[-1].out_channels
        last_out = 6 * last_in
        layers.append(
            Conv2dNormActivation(last_in, last_out, kernel_size=1, norm_layer=norm_layer, activation_layer=nn.Hardswish)
        )
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(last_out, last_channel),
            nn.Hardswish(inplace=True),
            nn.Dropout(p=dropout, inplace=True),
            nn.Linear(last_channel, num_classes),
        )

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def _mobilenet_v3_conf(
    arch: str, width_mult: float = 1.0, reduced_tail: bool = False, dilated: bool = False
) -> Tuple[List[InvertedResidualConfig], int]:
    """The bottleneck rows and the classifier width of ``arch`` ("mobilenet_v3_large" or "_small")."""
    d = 2 if reduced_tail else 1  # channel divider of the last stage
    dil = 2 if dilated else 1  # dilation of the last stage
    row = partial(InvertedResidualConfig.scaled, width_mult=width_mult)
    if arch == "mobilenet_v3_large":
        setting = [
            row(16, 3, 16, 16, False, "RE", 1, 1),
            row(16, 3, 64, 24, False, "RE", 2, 1),  # C1
            row(24, 3, 72, 24, False, "RE", 1, 1),
            row(24, 5, 72, 40, True, "RE", 2, 1),  # C2
            row(40, 5, 120, 40, True, "RE", 1, 1),
            row(40, 5, 120, 40, True, "RE", 1, 1),
            row(40, 3, 240, 80, False, "HS", 2, 1),  # C3
            row(80, 3, 200, 80, False, "HS", 1, 1),
            row(80, 3, 184, 80, False, "HS", 1, 1),
            row(80, 3, 184, 80, False, "HS", 1, 1),
            row(80, 3, 480, 112, True, "HS", 1, 1),
            row(112, 3, 672, 112, True, "HS", 1, 1),
            row(112, 5, 672, 160 // d, True, "HS", 2, dil),  # C4
            row(160 // d, 5, 960 // d, 160 // d, True, "HS", 1, dil),
            row(160 // d, 5, 960 // d, 160 // d, True, "HS", 1, dil),
        ]
        last_channel = InvertedResidualConfig.adjust_channels(1280 // d, width_mult)  # C5
    elif arch == "mobilenet_v3_small":
        setting = [
            row(16, 3, 16, 16, True, "RE", 2, 1),  # C1
            row(16, 3, 72, 24, False, "RE", 2, 1),  # C2
            row(24, 3, 88, 24, False, "RE", 1, 1),
            row(24, 5, 96, 40, True, "HS", 2, 1),  # C3
            row(40, 5, 240, 40, True, "HS", 1, 1),
            row(40, 5, 240, 40, True, "HS", 1, 1),
            row(40, 5, 120, 48, True, "HS", 1, 1),
            row(48, 5, 144, 48, True, "HS", 1, 1),
            row(48, 5, 288, 96 // d, True, "HS", 2, dil),  # C4
            row(96 // d, 5, 576 // d, 96 // d, True, "HS", 1, dil),
            row(96 // d, 5, 576 // d, 96 // d, True, "HS", 1, dil),
        ]
        last_channel = InvertedResidualConfig.adjust_channels(1024 // d, width_mult)  # C5
    else:
        raise ValueError(f"unsupported MobileNetV3 architecture {arch!r}; "
                         "use 'mobilenet_v3_large' or 'mobilenet_v3_small'")
    return setting, last_channel


def _build(arch: str, weights: Any, kwargs: dict) -> MobileNetV3:
    require_no_weights(arch, weights)
    # torchvision's SSDlite passes `_reduced_tail`; accept both spellings.
    if "_reduced_tail" in kwargs:
        if "reduced_tail" in kwargs and bool(kwargs["reduced_tail"]) != bool(kwargs["_reduced_tail"]):
            raise ValueError(
                f"{arch}: reduced_tail={kwargs['reduced_tail']!r} and _reduced_tail={kwargs['_reduced_tail']!r} "
                "disagree; pass only one"
            )
        kwargs["reduced_tail"] = kwargs.pop("_reduced_tail")
    if "_width_mult" in kwargs:
        kwargs.setdefault("width_mult", kwargs.pop("_width_mult"))
    conf = {k: kwargs.pop(k) for k in ("width_mult", "reduced_tail", "dilated") if k in kwargs}
    setting, last_channel = _mobilenet_v3_conf(arch, **conf)
    return MobileNetV3(setting, last_channel, **kwargs)


@register_model(task="classification", pretrained=MobileNet_V3_Large_Weights.IMAGENET1K_V1)
def mobilenet_v3_large(*, weights: Any = None, progress: bool = True, **kwargs: Any) -> MobileNetV3:
    """MobileNetV3-Large. kwargs: dilated, reduced_tail (or _reduced_tail), width_mult, and
    MobileNetV3's (norm_layer, num_classes, dropout, ...).

    ``weights``: a ``MobileNet_V3_Large_Weights`` member, its name, a checkpoint path, or None (random init).
    """
    kwargs = dict(kwargs)
    weights = resolve_backbone_weights(weights, MobileNet_V3_Large_Weights, kwargs)
    model = _build("mobilenet_v3_large", None, kwargs)
    return model if weights is None else load_weights(model, weights, progress=progress)


def mobilenet_v3_small(*, weights: Any = None, progress: bool = True, **kwargs: Any) -> MobileNetV3:
    """MobileNetV3-Small. kwargs as for mobilenet_v3_large."""
    return _build("mobilenet_v3_small", weights, dict(kwargs))
