"""MobileNetV3-Large: torchvision's channel table, names, options, and the SSDlite key layout."""
from functools import partial

import pytest
import torch
from torch import nn

from _oracle import golden_manifest
from torchdet.backbones.mobilenet_v3 import InvertedResidual, mobilenet_v3_large, mobilenet_v3_small
from torchdet.ops.misc import Conv2dNormActivation, SqueezeExcitation
from torchdet.weights.backbone import MobileNet_V3_Large_Weights
from torchdet.weights.hub import CheckpointDownloadError

# (kernel, expanded, out, use_se, hard-swish, stride) per bottleneck of the paper's Table 1.
LARGE = [
    (3, 16, 16, False, False, 1), (3, 64, 24, False, False, 2), (3, 72, 24, False, False, 1),
    (5, 72, 40, True, False, 2), (5, 120, 40, True, False, 1), (5, 120, 40, True, False, 1),
    (3, 240, 80, False, True, 2), (3, 200, 80, False, True, 1), (3, 184, 80, False, True, 1),
    (3, 184, 80, False, True, 1), (3, 480, 112, True, True, 1), (3, 672, 112, True, True, 1),
    (5, 672, 160, True, True, 2), (5, 960, 160, True, True, 1), (5, 960, 160, True, True, 1),
]


@pytest.fixture(scope="module")
def mnv3():
    torch.manual_seed(0)
    return mobilenet_v3_large().eval()


def test_layout_matches_the_paper(mnv3):
    f = mnv3.features
    assert len(f) == 17
    assert isinstance(f[0], Conv2dNormActivation) and f[0][0].weight.shape == (16, 3, 3, 3)
    assert isinstance(f[0][2], nn.Hardswish)
    for i, (k, exp, out, se, hs, stride) in enumerate(LARGE, start=1):
        block = f[i]
        assert isinstance(block, InvertedResidual)
        assert block.out_channels == out and block._is_cn == (stride > 1)
        dw = [m for m in block.block if isinstance(m, Conv2dNormActivation) and m[0].groups > 1][0]
        assert dw[0].weight.shape == (exp, 1, k, k) and dw[0].stride == (stride, stride)
        assert isinstance(dw[2], nn.Hardswish if hs else nn.ReLU)
        assert any(isinstance(m, SqueezeExcitation) for m in block.block) == se
    assert [i for i, b in enumerate(f) if getattr(b, "_is_cn", False)] == [2, 4, 7, 13]
    assert f[16].out_channels == 960
    sd = mnv3.state_dict()
    assert sd["features.1.block.0.0.weight"].shape == (16, 1, 3, 3)  # no expansion in block 1
    assert sd["features.4.block.2.fc1.weight"].shape == (24, 72, 1, 1)
    assert sd["classifier.0.weight"].shape == (1280, 960)
    assert sd["classifier.3.weight"].shape == (1000, 1280)
    assert isinstance(mnv3.avgpool, nn.AdaptiveAvgPool2d)
    bn = f[0][1]
    assert bn.eps == 0.001 and bn.momentum == 0.01
    assert sum(p.numel() for p in mnv3.parameters()) == 5_483_032  # torchvision's mobilenet_v3_large


def test_forward_shapes(mnv3):
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert mnv3.features(x).shape == (1, 960, 2, 2)
        assert mnv3(x).shape == (1, 1000)
        dilated = mobilenet_v3_large(dilated=True).eval()
        assert dilated.features[13].block[1][0].dilation == (2, 2)
        assert dilated.features[13]._is_cn
        assert dilated.features(x).shape == (1, 960, 4, 4)
        small = mobilenet_v3_small(num_classes=3).eval()
        assert small.features(x).shape == (1, 576, 2, 2) and small(x).shape == (1, 3)


@pytest.mark.parametrize("spelling", ["reduced_tail", "_reduced_tail"])
def test_reduced_tail_gives_ssdlite_backbone_keys(spelling):
    """SSDlite splits features at C4 (index 13): features[:13] + C4's expansion, then the rest."""
    m = mobilenet_v3_large(**{spelling: True}, norm_layer=partial(nn.BatchNorm2d, eps=0.001, momentum=0.03))
    assert m.features[16].out_channels == 480 and m.classifier[0].weight.shape == (640, 480)
    assert m.features[0][1].momentum == 0.03

    def ssdlite_key(k: str) -> str:
        idx, rest = k.split(".", 1)
        i = int(idx)
        if i < 13:
            return f"backbone.features.0.{i}.{rest}"
        if i == 13 and rest.startswith("block.0."):
            return f"backbone.features.0.13.{rest[len('block.0.'):]}"
        if i == 13:
            return f"backbone.features.1.0.{rest[len('block.'):]}"
        return f"backbone.features.1.{i - 13}.{rest}"

    ours = {ssdlite_key(k): list(v.shape) for k, v in m.features.state_dict().items()}
    ref = {k: v for k, v in golden_manifest("ssdlite320_mobilenet_v3_large").items() if k.startswith("backbone.features.")}
    assert ours == ref


def test_errors(offline_hub):
    # Offline with an empty cache: the error names the file to fetch, where to put it, and weights=None.
    with pytest.raises(CheckpointDownloadError, match="weights=None") as info:
        mobilenet_v3_large(weights="DEFAULT")
    assert str(offline_hub / MobileNet_V3_Large_Weights.IMAGENET1K_V2.file_name) in str(info.value)
    with pytest.raises(ValueError, match="IMAGENET1K_V1, IMAGENET1K_V2"):
        mobilenet_v3_large(weights="IMAGENET")
    with pytest.raises(ValueError, match="num_classes=10"):
        mobilenet_v3_large(weights="DEFAULT", num_classes=10)
    with pytest.raises(NotImplementedError, match="weights=None"):  # only the detectors' backbone has weights
        mobilenet_v3_small(weights="DEFAULT")
    with pytest.raises(ValueError, match="disagree"):
        mobilenet_v3_large(reduced_tail=True, _reduced_tail=False)
