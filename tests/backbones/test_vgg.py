"""VGG-16: config D layout, and the key layout SSD300 builds from its features."""
import pytest
import torch
from torch import nn

from _oracle import golden_manifest
from torchdet.backbones.vgg import vgg16, vgg16_bn
from torchdet.weights.backbone import VGG16_Weights
from torchdet.weights.hub import CheckpointDownloadError

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


def test_weights_errors(offline_hub):
    # Offline with an empty cache: the error names the file to fetch, where to put it, and weights=None.
    for member in ("DEFAULT", "IMAGENET1K_FEATURES"):
        with pytest.raises(CheckpointDownloadError, match="weights=None") as info:
            vgg16(weights=member)
        assert str(offline_hub / VGG16_Weights[member].file_name) in str(info.value)
    with pytest.raises(ValueError, match="IMAGENET1K_FEATURES"):
        vgg16(weights="FEATURES")
    with pytest.raises(ValueError, match="num_classes=10"):
        vgg16(weights="IMAGENET1K_V1", num_classes=10)
    with pytest.raises(NotImplementedError, match="weights=None"):  # only SSD's backbone has weights
        vgg16_bn(weights="DEFAULT")
