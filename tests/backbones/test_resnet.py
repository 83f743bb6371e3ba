"""ResNet: torchvision's module names, init options and output shapes."""
import pytest
import torch
from torch import nn

from torchdet.backbones.resnet import BasicBlock, Bottleneck, ResNet, resnet18, resnet50
from torchdet.ops.misc import FrozenBatchNorm2d
from torchdet.weights.backbone import ResNet50_Weights
from torchdet.weights.hub import CheckpointDownloadError


@pytest.fixture(scope="module")
def r50():
    torch.manual_seed(0)
    return resnet50().eval()


def test_resnet50_keys_and_counts(r50):
    sd = r50.state_dict()
    assert sum(p.numel() for p in r50.parameters()) == 25_557_032  # torchvision's resnet50
    assert sd["conv1.weight"].shape == (64, 3, 7, 7)
    assert sd["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert sd["layer1.0.downsample.1.running_var"].shape == (256,)
    assert sd["layer2.0.conv2.weight"].shape == (128, 128, 3, 3)
    assert sd["layer4.2.bn3.weight"].shape == (2048,)
    assert sd["fc.weight"].shape == (1000, 2048)
    assert [len(getattr(r50, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]
    assert r50.inplanes == 2048
    # v1.5: the stride sits on the 3x3 conv.
    assert r50.layer2[0].conv1.stride == (1, 1) and r50.layer2[0].conv2.stride == (2, 2)


def test_resnet50_forward_shapes(r50):
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert r50(x).shape == (1, 1000)
        h = r50.maxpool(r50.relu(r50.bn1(r50.conv1(x))))
        shapes = []
        for name in ("layer1", "layer2", "layer3", "layer4"):
            h = getattr(r50, name)(h)
            shapes.append(tuple(h.shape))
    assert shapes == [(1, 256, 16, 16), (1, 512, 8, 8), (1, 1024, 4, 4), (1, 2048, 2, 2)]


def test_init(r50):
    for m in r50.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
    # kaiming_normal_(fan_out, relu): std = sqrt(2 / (out_channels * k * k))
    w = r50.layer3[0].conv2.weight
    assert abs(w.std().item() / (2.0 / (256 * 9)) ** 0.5 - 1) < 0.05


def test_zero_init_residual_and_norm_layer():
    m = resnet18(zero_init_residual=True, norm_layer=FrozenBatchNorm2d)
    assert isinstance(m.bn1, FrozenBatchNorm2d) and isinstance(m.layer1[0].bn2, FrozenBatchNorm2d)
    assert all(torch.all(b.bn2.weight == 0) for layer in (m.layer1, m.layer4) for b in layer)
    assert torch.all(m.layer1[0].bn1.weight == 1)
    assert "bn1.num_batches_tracked" not in m.state_dict()
    m50 = ResNet(Bottleneck, [1, 1, 1, 1], zero_init_residual=True)
    assert torch.all(m50.layer2[0].bn3.weight == 0)


def test_dilation_and_resnet18_shapes():
    m = ResNet(Bottleneck, [1, 1, 1, 2], replace_stride_with_dilation=[False, False, True], num_classes=5).eval()
    # The first block of a dilated stage keeps the previous dilation; the stride becomes 1.
    assert m.layer4[0].conv2.dilation == (1, 1) and m.layer4[0].conv2.stride == (1, 1)
    assert m.layer4[1].conv2.dilation == (2, 2) and m.layer4[1].conv2.padding == (2, 2)
    r18 = resnet18(num_classes=7).eval()
    assert isinstance(r18.layer1[0], BasicBlock) and r18.inplanes == 512
    with torch.no_grad():
        assert r18(torch.randn(1, 3, 64, 64)).shape == (1, 7)
        assert m(torch.randn(1, 3, 64, 64)).shape == (1, 5)
        h = m.layer3(m.layer2(m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(torch.randn(1, 3, 64, 64))))))))
        assert m.layer4(h).shape == (1, 2048, 4, 4)


def test_weights_errors(offline_hub):
    # Offline with an empty cache: the error names the file to fetch, where to put it, and weights=None.
    with pytest.raises(CheckpointDownloadError, match="weights=None") as info:
        resnet50(weights="DEFAULT")
    assert str(offline_hub / ResNet50_Weights.IMAGENET1K_V2.file_name) in str(info.value)  # DEFAULT is V2
    with pytest.raises(ValueError, match="IMAGENET1K_V1, IMAGENET1K_V2"):
        resnet50(weights="IMAGENET")
    with pytest.raises(ValueError, match="num_classes=10"):  # checked before anything is read
        resnet50(weights="DEFAULT", num_classes=10)
    with pytest.raises(NotImplementedError, match="weights=None"):  # only the detectors' backbone has weights
        resnet18(weights="DEFAULT")


def test_errors():
    with pytest.raises(ValueError, match="replace_stride_with_dilation"):
        ResNet(Bottleneck, [1, 1, 1, 1], replace_stride_with_dilation=[True])
