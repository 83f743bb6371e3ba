"""Issue 7: every backbone the 12 builders use compiles under torch.jit.script and computes what eager does."""
from __future__ import annotations

import warnings
from typing import Dict, Tuple

import pytest
import torch
from torch import Tensor, nn

from torchdet.backbones.fpn import resnet_fpn_backbone
from torchdet.ops import fusion
from torchdet.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool, LastLevelP6P7
from torchdet.ops.misc import Conv2dNormActivation, FrozenBatchNorm2d, SqueezeExcitation
from torchdet.models.registry import get_model_builder, list_models

# SSD's VGG needs enough pixels to survive its extra stride-2 layers; the others take a small image.
_INPUT_HW: Dict[str, Tuple[int, int]] = {"ssd300_vgg16": (300, 300), "ssdlite320_mobilenet_v3_large": (160, 160)}


def _as_dict(out: object) -> Dict[str, Tensor]:
    return {"0": out} if isinstance(out, Tensor) else dict(out)  # type: ignore[arg-type]


def _randomise_norm_stats(model: nn.Module, seed: int) -> None:
    """Non-trivial running statistics, so a norm layer scripted wrongly shows in the outputs."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)


def _assert_script_matches_eager(module: nn.Module, x: Tensor) -> None:
    """Scripted (never folds) against eager without folding: the same computation, up to layout rounding.
    Against eager with folding: the same up to rounding relative to each level's magnitude."""
    module.eval()
    scripted = torch.jit.script(module)
    with torch.no_grad():
        script = _as_dict(scripted(x))
        with fusion.folding(False):
            unfolded = _as_dict(module(x))
        folded = _as_dict(module(x))
    assert list(unfolded) == list(script) == list(folded)
    for name in script:
        assert unfolded[name].shape == script[name].shape == folded[name].shape, name
        torch.testing.assert_close(script[name], unfolded[name], rtol=1e-4, atol=1e-4, msg=f"level {name}")
        scale = float(unfolded[name].abs().max()) + 1e-6
        diff = float((folded[name] - unfolded[name]).abs().max())
        assert diff <= 1e-5 * scale, f"level {name}: folded differs by {diff} at magnitude {scale}"


# One builder per distinct backbone structure (scripting a ResNet-50 takes seconds on 2 cores):
# maskrcnn/keypointrcnn share fasterrcnn_resnet50_fpn's, maskrcnn v2 shares fasterrcnn v2's, fcos shares
# retinanet v1's (P6 from P5), the 320 MobileNet shares the full-size one's. The set must cover the zoo.
_DISTINCT_BACKBONES = {
    "fasterrcnn_resnet50_fpn": ["maskrcnn_resnet50_fpn", "keypointrcnn_resnet50_fpn"],
    "fasterrcnn_resnet50_fpn_v2": ["maskrcnn_resnet50_fpn_v2"],
    "fasterrcnn_mobilenet_v3_large_fpn": ["fasterrcnn_mobilenet_v3_large_320_fpn"],
    "retinanet_resnet50_fpn": ["fcos_resnet50_fpn"],
    "retinanet_resnet50_fpn_v2": [],
    "ssd300_vgg16": [],
    "ssdlite320_mobilenet_v3_large": [],
}


def test_distinct_backbones_cover_the_zoo() -> None:
    covered = set(_DISTINCT_BACKBONES) | {b for same in _DISTINCT_BACKBONES.values() for b in same}
    assert covered == set(list_models(module="torchdet.models"))


@pytest.mark.parametrize("builder", list(_DISTINCT_BACKBONES))
def test_builder_backbone_scripts(builder: str) -> None:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = get_model_builder(builder)(weights=None, weights_backbone=None)
    _randomise_norm_stats(model.backbone, 1)
    h, w = _INPUT_HW.get(builder, (96, 128))
    _assert_script_matches_eager(model.backbone, torch.rand(1, 3, h, w))


def test_frozen_bn_resnet_fpn_backbone_scripts() -> None:
    """The pretrained configuration: FrozenBatchNorm2d in the body."""
    torch.manual_seed(0)
    backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=3)
    _randomise_norm_stats(backbone, 2)
    _assert_script_matches_eager(backbone, torch.rand(2, 3, 64, 96))


@pytest.mark.parametrize(
    "module, channels",
    [
        (FrozenBatchNorm2d(8), 8),
        (Conv2dNormActivation(8, 16, norm_layer=FrozenBatchNorm2d), 8),
        (Conv2dNormActivation(8, 16, stride=2, activation_layer=nn.Hardswish), 8),
        (SqueezeExcitation(8, 4, scale_activation=nn.Hardsigmoid), 8),
    ],
)
def test_blocks_script(module: nn.Module, channels: int) -> None:
    torch.manual_seed(0)
    _randomise_norm_stats(module, 3)
    _assert_script_matches_eager(module, torch.randn(2, channels, 12, 10))


@pytest.mark.parametrize("extra", [None, LastLevelMaxPool(), LastLevelP6P7(16, 16), LastLevelP6P7(32, 16)])
def test_fpn_scripts(extra: object) -> None:
    torch.manual_seed(0)
    fpn = FeaturePyramidNetwork([8, 16, 32], 16, extra_blocks=extra)  # type: ignore[arg-type]
    fpn.eval()
    x = {"a": torch.randn(1, 8, 20, 24), "b": torch.randn(1, 16, 10, 12), "c": torch.randn(1, 32, 5, 6)}
    scripted = torch.jit.script(fpn)
    with torch.no_grad():
        eager, script = fpn(x), scripted(x)
    assert list(eager) == list(script)
    for name in eager:
        torch.testing.assert_close(script[name], eager[name])
