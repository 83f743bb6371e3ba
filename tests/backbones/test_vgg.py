"""VGG-16: config D layout, and the key layout SSD300 builds from its features."""
import pytest
import torch
from torch import nn

from _oracle import golden_manifest
from torchdet.backbones.vgg import vgg16

CONVS = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
POOLS = [4, 9, 16, 23, 30]


def test_vgg16_layout_shapes_and_ssd300_keys():
    torch.manual_seed(0)
    m = vgg16().eval()
    f = m.features
    assert len(f) == 31
    assert [i for i, l in enumerate(f) if isinstance(l, nn.Conv2d)] == CONVS
    assert [i for i, l in enumerate(f) if isinstance(l, nn.MaxPool2d)] == POOLS
    assert [m.classifier[i].weight.shape for i in (0, 3, 6)] == [(4096, 25088), (4096, 4096), (1000, 4096)]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert f(x).shape == (1, 512, 2, 2)
        assert m(x).shape == (1, 1000)

    # SSD300 keeps features[:23] as `features` and features[23:30] as `extra.0` (then its own fc layers).
    ours = {}
    for k, v in f.state_dict().items():
        i, rest = k.split(".", 1)
        i = int(i)
        key = f"backbone.features.{i}.{rest}" if i < 23 else f"backbone.extra.0.{i - 23}.{rest}"
        ours[key] = list(v.shape)
    ref = {k: v for k, v in golden_manifest("ssd300_vgg16").items()
           if k.startswith("backbone.features.") or (k.startswith("backbone.extra.0.") and not k.startswith("backbone.extra.0.7."))}
    assert ours == ref


def test_weights_not_available_yet():
    with pytest.raises(NotImplementedError, match="weights=None"):
        vgg16(weights="DEFAULT")
