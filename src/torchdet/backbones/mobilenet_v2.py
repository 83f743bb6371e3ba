"""MobileNetV2 (Sandler et al., 2018): inverted residuals with linear bottlenecks.

Module names and state_dict keys follow torchvision's ``torchvision.models.mobilenetv2``
(``features.i.conv.*``, ``classifier.1``); ``features`` ends with 1280 channels at stride 32.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional

import torch.nn.functional as F
from torch import Tensor, nn

from torchdet.backbones._weights_pending import require_no_weights
from torchdet.ops.misc import Conv2dNormActivation

__all__ = ["InvertedResidual", "MobileNetV2", "mobilenet_v2"]

NormLayer = Callable[..., nn.Module]


def _make_divisible(v: float, divisor: int, min_value: Optional[int] = None) -> int:
    """Round a channel count to a multiple of ``divisor``, never dropping more than 10% below ``v``."""
    if min_value is None:
        min_value = divisor
    rounded = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * v:
        rounded += divisor
    return rounded


class InvertedResidual(nn.Module):
    """1x1 expand (ReLU6, skipped when expand_ratio == 1), 3x3 depthwise (ReLU6), 1x1 linear project.

    ``[N, inp, H, W] -> [N, oup, H/stride, W/stride]``, residual when stride 1 and inp == oup.
    ``_is_cn`` marks the blocks that start a new stage (stride 2); the detection extractors use it.
    """

    def __init__(
        self, inp: int, oup: int, stride: int, expand_ratio: int, norm_layer: Optional[NormLayer] = None
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual stride must be 1 or 2, got {stride}")
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        self.stride = stride
        hidden_dim = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: List[nn.Module] = []
        if expand_ratio != 1:
            layers.append(
                Conv2dNormActivation(inp, hidden_dim, kernel_size=1, norm_layer=norm_layer, activation_layer=nn.ReLU6)
            )
        layers += [
            Conv2dNormActivation(
                hidden_dim, hidden_dim, stride=stride, groups=hidden_dim,
                norm_layer=norm_layer, activation_layer=nn.ReLU6,
            ),
            nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),
            norm_layer(oup),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup
        self._is_cn = stride > 1

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        return x + out if self.use_res_connect else out


# t (expansion), c (channels), n (repeats), s (stride of the first repeat)
_DEFAULT_SETTING = [
    [1, 16, 1, 1],
    [6, 24, 2, 2],
    [6, 32, 3, 2],
    [6, 64, 4, 2],
    [6, 96, 3, 1],
    [6, 160, 3, 2],
    [6, 320, 1, 1],
]


class MobileNetV2(nn.Module):
    """``features`` (stride 32, ``last_channel`` = 1280 at width 1), global pool, ``classifier``.

    Input ``[N, 3, H, W]``; ``features`` gives ``[N, 1280, H/32, W/32]``; output ``[N, num_classes]``.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        inverted_residual_setting: Optional[List[List[int]]] = None,
        round_nearest: int = 8,
        block: Optional[Callable[..., nn.Module]] = None,
        norm_layer: Optional[NormLayer] = None,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if block is None:
            block = InvertedResidual
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        if inverted_residual_setting is None:
            inverted_residual_setting = _DEFAULT_SETTING
        if len(inverted_residual_setting) == 0 or any(len(row) != 4 for row in inverted_residual_setting):
            raise ValueError(
                "inverted_residual_setting should be a non-empty list of [t, c, n, s] rows, "
                f"got {inverted_residual_setting}"
            )
        input_channel = _make_divisible(32 * width_mult, round_nearest)
        self.last_channel = _make_divisible(1280 * max(1.0, width_mult), round_nearest)

        features: List[nn.Module] = [
            Conv2dNormActivation(3, input_channel, stride=2, norm_layer=norm_layer, activation_layer=nn.ReLU6)
        ]
        for t, c, n, s in inverted_residual_setting:
            output_channel = _make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                features.append(block(input_channel, output_channel, s if i == 0 else 1, expand_ratio=t, norm_layer=norm_layer))
                input_channel = output_channel
        features.append(
            Conv2dNormActivation(input_channel, self.last_channel, kernel_size=1, norm_layer=norm_layer, activation_layer=nn.ReLU6)
        )
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(self.last_channel, num_classes))

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
        x = self.features(x)
        x = F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)
        return self.classifier(x)


def mobilenet_v2(*, weights: Any = None, progress: bool = True, **kwargs: Any) -> MobileNetV2:
    """MobileNetV2. kwargs go to MobileNetV2 (norm_layer, width_mult, num_classes, ...)."""
    require_no_weights("mobilenet_v2", weights)
    return MobileNetV2(**kwargs)
