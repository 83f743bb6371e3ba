"""MobileNetV2: names, channel counts and shapes."""
import torch
from torch import nn

from torchdet.backbones.mobilenet_v2 import InvertedResidual, _make_divisible, mobilenet_v2


def test_mobilenet_v2_layout_and_shapes():
    torch.manual_seed(0)
    m = mobilenet_v2().eval()
    assert len(m.features) == 19
    assert m.features[-1].out_channels == 1280 and m.last_channel == 1280
    assert sum(p.numel() for p in m.parameters()) == 3_504_872  # torchvision's mobilenet_v2
    sd = m.state_dict()
    assert sd["features.1.conv.0.0.weight"].shape == (32, 1, 3, 3)  # expand_ratio 1: no expansion conv
    assert sd["features.1.conv.1.weight"].shape == (16, 32, 1, 1)
    assert sd["features.2.conv.0.0.weight"].shape == (96, 16, 1, 1)
    assert sd["features.18.0.weight"].shape == (1280, 320, 1, 1)
    assert sd["classifier.1.weight"].shape == (1000, 1280)
    assert isinstance(m.features[0][2], nn.ReLU6)
    assert [i for i, b in enumerate(m.features) if getattr(b, "_is_cn", False)] == [2, 4, 7, 14]
    assert all(isinstance(b, InvertedResidual) for b in m.features[1:18])
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert m.features(x).shape == (1, 1280, 2, 2)
        assert m(x).shape == (1, 1000)


def test_make_divisible():
    assert _make_divisible(32 * 0.5, 8) == 16
    assert _make_divisible(1280 * 1.0, 8) == 1280
    assert _make_divisible(10, 8) == 16  # never more than 10% below the request
    assert _make_divisible(672 // 4, 8) == 168
