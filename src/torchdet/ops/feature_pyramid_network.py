"""Feature Pyramid Network (Lin et al., 2017) over an ordered dict of backbone feature maps.

Lateral 1x1 convs (``inner_blocks``) bring every input level to ``out_channels``; a top-down
pathway adds each coarser merged map, upsampled (nearest) to the finer lateral's size; a 3x3
conv (``layer_blocks``) smooths each merged map. An optional ``ExtraFPNBlock`` appends levels
(``LastLevelMaxPool`` -> "pool", ``LastLevelP6P7`` -> "p6", "p7").

Module names, init and state_dict keys follow torchvision's ``torchvision.ops.feature_pyramid_network``.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Dict, List, Optional, Tuple

import torch.nn.functional as F
from torch import Tensor, nn

from torchdet.ops.misc import Conv2dNormActivation

__all__ = ["ExtraFPNBlock", "FeaturePyramidNetwork", "LastLevelMaxPool", "LastLevelP6P7"]


class ExtraFPNBlock(nn.Module):
    """Base class for blocks that add pyramid levels after the FPN.

    forward(results, x, names):
        results: the FPN outputs, finest first (each ``[N, out_channels, H_i, W_i]``);
        x: the FPN inputs (backbone features), finest first;
        names: the names of ``results``.
    Returns the extended ``(results, names)``.
    """

    def forward(
        self, results: List[Tensor], x: List[Tensor], names: List[str]
    ) -> Tuple[List[Tensor], List[str]]:
        raise NotImplementedError(f"{type(self).__name__} must implement forward(results, x, names)")


class LastLevelMaxPool(ExtraFPNBlock):
    """Adds level "pool": max_pool2d(kernel 1, stride 2) of the last FPN output (``[N, C, ceil(H/2), ceil(W/2)]``)."""

    def forward(
        self, results: List[Tensor], x: List[Tensor], names: List[str]
    ) -> Tuple[List[Tensor], List[str]]:
        names.append("pool")
        results.append(F.max_pool2d(results[-1], kernel_size=1, stride=2, padding=0))
        return results, names


class LastLevelP6P7(ExtraFPNBlock):
    """Adds RetinaNet's levels "p6" (3x3 stride-2 conv) and "p7" (3x3 stride-2 conv after ReLU).

    P6 is computed from the last FPN output (P5) when ``in_channels == out_channels``,
    otherwise from the last backbone feature (C5).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.p6 = nn.Conv2d(in_channels, out_channels, 3, 2, 1)
        self.p7 = nn.Conv2d(out_channels, out_channels, 3, 2, 1)
        for conv in (self.p6, self.p7):
            nn.init.kaiming_uniform_(conv.weight, a=1)
            nn.init.constant_(conv.bias, 0)
        self.use_P5 = in_channels == out_channels

    def forward(
        self, results: List[Tensor], x: List[Tensor], names: List[str]
    ) -> Tuple[List[Tensor], List[str]]:
        source = results[-1] if self.use_P5 else x[-1]
        p6 = self.p6(source)
        p7 = self.p7(F.relu(p6))
        results.extend([p6, p7])
        names.extend(["p6", "p7"])
        return results, names


class FeaturePyramidNetwork(nn.Module):
    """FPN on top of a set of feature maps.

    Args:
        in_channels_list: channels of each input level, finest first (all > 0).
        out_channels: channels of every output level.
        extra_blocks: optional ExtraFPNBlock appending levels.
        norm_layer: optional norm after each conv (keys ``inner_blocks.i.1.*``).

    forward(x: OrderedDict[str, Tensor]) with ``x[name]: [N, C_i, H_i, W_i]``, finest first ->
    OrderedDict[str, Tensor] with the same names (plus the extra blocks'), each ``[N, out_channels, H_i, W_i]``.
    """

    _version = 2

    def __init__(
        self,
        in_channels_list: List[int],
        out_channels: int,
        extra_blocks: Optional[ExtraFPNBlock] = None,
        norm_layer: Optional[Callable[..., nn.Module]] = None,
    ) -> None:
        super().__init__()
        if len(in_channels_list) == 0:
            raise ValueError("FeaturePyramidNetwork needs at least one input level; got in_channels_list=[]")
        self.inner_blocks = nn.ModuleList()
        self.layer_blocks = nn.ModuleList()
        for level, in_channels in enumerate(in_channels_list):
            if in_channels <= 0:
                raise ValueError(
                    f"FeaturePyramidNetwork: in_channels_list[{level}] is {in_channels}; every level needs "
                    "a positive channel count (drop unused levels from in_channels_list and the backbone's "
                    "returned layers instead)"
                )
            self.inner_blocks.append(
                Conv2dNormActivation(
                    in_channels, out_channels, kernel_size=1, padding=0, norm_layer=norm_layer, activation_layer=None
                )
            )
            self.layer_blocks.append(
                Conv2dNormActivation(
                    out_channels, out_channels, kernel_size=3, norm_layer=norm_layer, activation_layer=None
                )
            )
        # Initialise before attaching extra_blocks, which keep their own init.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
        if extra_blocks is not None and not isinstance(extra_blocks, ExtraFPNBlock):
            raise TypeError(
                f"extra_blocks must be an ExtraFPNBlock (e.g. LastLevelMaxPool()), got {type(extra_blocks).__name__}"
            )
        self.extra_blocks = extra_blocks

    def _load_from_state_dict(
        self,
        state_dict: Dict[str, Tensor],
        prefix: str,
        local_metadata: dict,
        strict: bool,
        missing_keys: List[str],
        unexpected_keys: List[str],
        error_msgs: List[str],
    ) -> None:
        # Checkpoints from before version 2 stored the blocks as bare convs: `inner_blocks.0.weight`.
        version = local_metadata.get("version", None)
        if version is None or version < 2:
            for block in ("inner_blocks", "layer_blocks"):
                for i in range(len(self.inner_blocks)):
                    for kind in ("weight", "bias"):
                        old_key = f"{prefix}{block}.{i}.{kind}"
                        if old_key in state_dict:
                            state_dict[f"{prefix}{block}.{i}.0.{kind}"] = state_dict.pop(old_key)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def forward(self, x: Dict[str, Tensor]) -> Dict[str, Tensor]:
        names = list(x.keys())
        features = list(x.values())
        if len(features) != len(self.inner_blocks):
            raise ValueError(
                f"FeaturePyramidNetwork was built for {len(self.inner_blocks)} levels but got "
                f"{len(features)} feature maps ({names}); pass one map per entry of in_channels_list"
            )
        # ModuleLists are walked with enumerate (TorchScript cannot index them with a loop variable).
        laterals: List[Tensor] = []
        for idx, inner_block in enumerate(self.inner_blocks):
            laterals.append(inner_block(features[idx]))

        # Top-down: each lateral plus the coarser merged map upsampled to its size, finest first.
        last_inner = laterals[-1]
        merged: List[Tensor] = [last_inner]
        for idx in range(len(laterals) - 2, -1, -1):
            lateral = laterals[idx]
            top_down = F.interpolate(last_inner, size=lateral.shape[-2:], mode="nearest")
            last_inner = lateral + top_down
            merged.insert(0, last_inner)
        results: List[Tensor] = []
        for idx, layer_block in enumerate(self.layer_blocks):
            results.append(layer_block(merged[idx]))

        if self.extra_blocks is not None:
            results, names = self.extra_blocks(results, features, names)
        out: Dict[str, Tensor] = OrderedDict()
        for idx, name in enumerate(names):
            out[name] = results[idx]
        return out
