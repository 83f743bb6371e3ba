"""Detection backbones: state_dict keys against torchvision's (the oracle manifest), freezing rules
(written here from torchvision's rule, independently of the implementation), and output shapes."""
import warnings

import pytest
import torch
from torch import nn

from _oracle import golden_manifest
from oracle.fill import manifest
from torchdet.backbones.fpn import (
    BackboneWithFPN,
    _mobilenet_extractor,
    _resnet50_fpn_p3p7,
    _resnet_fpn_extractor,
    _validate_trainable_layers,
    mobilenet_backbone,
    resnet_fpn_backbone,
)
from torchdet.backbones.mobilenet_v3 import mobilenet_v3_large
from torchdet.backbones.resnet import resnet50
from torchdet.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7
from torchdet.ops.misc import FrozenBatchNorm2d


def _assert_backbone_keys(model: nn.Module, builder: str) -> None:
    ours = {f"backbone.{k}": v for k, v in manifest(model).items()}
    ref = {k: v for k, v in golden_manifest(builder).items() if k.startswith("backbone.")}
    missing, unexpected = sorted(set(ref) - set(ours)), sorted(set(ours) - set(ref))
    assert not missing and not unexpected, f"missing {missing[:5]}, unexpected {unexpected[:5]}"
    wrong = {k: (ours[k], ref[k]) for k in ref if ours[k] != ref[k]}
    assert not wrong, f"shape mismatches (ours, ref): {list(wrong.items())[:5]}"


@pytest.mark.parametrize(
    "builder, fpn_norm, returned_layers, extra",
    [
        ("fasterrcnn_resnet50_fpn", None, None, None),
        ("fasterrcnn_resnet50_fpn_v2", nn.BatchNorm2d, None, None),
        ("retinanet_resnet50_fpn", None, [2, 3, 4], (256, 256)),  # P6 from P5
        ("retinanet_resnet50_fpn_v2", None, [2, 3, 4], (2048, 256)),  # P6 from C5
    ],
)
def test_resnet_fpn_keys_match_torchvision(builder, fpn_norm, returned_layers, extra):
    extra_blocks = LastLevelP6P7(*extra) if extra else None
    backbone = _resnet_fpn_extractor(
        resnet50(norm_layer=nn.BatchNorm2d), 5, returned_layers, extra_blocks, norm_layer=fpn_norm
    )
    _assert_backbone_keys(backbone, builder)


@pytest.mark.parametrize("builder, p6_from_c5", [("retinanet_resnet50_fpn", False), ("retinanet_resnet50_fpn_v2", True)])
def test_resnet50_fpn_p3p7_keys_and_levels(builder, p6_from_c5):
    torch.manual_seed(0)
    backbone = _resnet50_fpn_p3p7(None, False, False, None, p6_from_c5=p6_from_c5).eval()
    _assert_backbone_keys(backbone, builder)
    assert backbone.fpn.extra_blocks.use_P5 is not p6_from_c5
    # No weights: plain BatchNorm2d and every stage trains.
    assert type(backbone.body.bn1) is nn.BatchNorm2d and all(p.requires_grad for p in backbone.parameters())
    with torch.no_grad():
        out = backbone(torch.randn(1, 3, 128, 128))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "0": (1, 256, 16, 16), "1": (1, 256, 8, 8), "2": (1, 256, 4, 4), "p6": (1, 256, 2, 2), "p7": (1, 256, 1, 1),
    }


def test_resnet50_fpn_p3p7_pretrained_defaults():
    # Detector weights given (so weights_backbone is None): frozen statistics, layer2..layer4 train.
    backbone = _resnet50_fpn_p3p7(None, False, True, None)
    assert isinstance(backbone.body.bn1, FrozenBatchNorm2d)
    assert {n.split(".")[0] for n, p in backbone.body.named_parameters() if p.requires_grad} == {
        "layer2", "layer3", "layer4"}
    assert all(p.requires_grad for p in backbone.fpn.parameters())
    v2 = _resnet50_fpn_p3p7(None, False, True, 5, norm_layer=nn.BatchNorm2d)
    assert type(v2.body.bn1) is nn.BatchNorm2d and all(p.requires_grad for p in v2.parameters())
    with pytest.warns(UserWarning, match="trainable_backbone_layers=5"):
        _resnet50_fpn_p3p7(None, False, False, 2)
    with pytest.raises(ValueError, match="got 6"):
        _resnet50_fpn_p3p7(None, False, True, 6)


@pytest.mark.parametrize("builder", ["fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_mobilenet_v3_large_320_fpn"])
def test_mobilenet_fpn_keys_match_torchvision(builder):
    backbone = _mobilenet_extractor(mobilenet_v3_large(norm_layer=nn.BatchNorm2d), True, 6)
    _assert_backbone_keys(backbone, builder)


# torchvision's rule, written out: trainable_layers=k trains these parameter-name prefixes.
RESNET_TRAINABLE_PREFIXES = {
    0: [],
    1: ["layer4"],
    2: ["layer4", "layer3"],
    3: ["layer4", "layer3", "layer2"],
    4: ["layer4", "layer3", "layer2", "layer1"],
    5: ["layer4", "layer3", "layer2", "layer1", "conv1", "bn1"],
}


@pytest.fixture(scope="module")
def r50():
    return resnet50(norm_layer=nn.BatchNorm2d)


@pytest.mark.parametrize("k", sorted(RESNET_TRAINABLE_PREFIXES))
def test_resnet_trainable_layers(r50, k):
    for p in r50.parameters():
        p.requires_grad_(True)
    backbone = _resnet_fpn_extractor(r50, k)
    body = {n for n, _ in backbone.body.named_parameters()}
    expected = {n for n in body if n.split(".")[0] in RESNET_TRAINABLE_PREFIXES[k]}
    assert {n for n, p in backbone.body.named_parameters() if p.requires_grad} == expected
    assert all(p.requires_grad for p in backbone.fpn.parameters())
    assert not r50.fc.weight.requires_grad  # no prefix names fc; it is dropped from the body anyway
    if k == 5:
        assert expected == body
    if k == 3:
        assert "layer2.0.conv1.weight" in expected and "layer1.0.conv1.weight" not in expected
        assert "conv1.weight" not in expected


# mobilenet_v3_large.features: stride-2 blocks at 2, 4, 7, 13, so the stages start at [0, 2, 4, 7, 13, 16].
# trainable_layers=k trains features[i] for i >= MOBILENET_FIRST_TRAINABLE[k] (None: nothing).
MOBILENET_FIRST_TRAINABLE = {0: None, 1: 16, 2: 13, 3: 7, 4: 4, 5: 2, 6: 0}


@pytest.fixture(scope="module")
def mnv3():
    return mobilenet_v3_large(norm_layer=nn.BatchNorm2d)


@pytest.mark.parametrize("k", sorted(MOBILENET_FIRST_TRAINABLE))
def test_mobilenet_trainable_layers(mnv3, k):
    for p in mnv3.parameters():
        p.requires_grad_(True)
    backbone = _mobilenet_extractor(mnv3, True, k)
    first = MOBILENET_FIRST_TRAINABLE[k]
    names = [n for n, _ in backbone.body.named_parameters()]
    expected = {n for n in names if first is not None and int(n.split(".")[0]) >= first}
    assert {n for n, p in backbone.body.named_parameters() if p.requires_grad} == expected
    assert all(p.requires_grad for p in backbone.fpn.parameters())


def test_trainable_layers_out_of_range(r50, mnv3):
    with pytest.raises(ValueError, match="0, 5"):
        _resnet_fpn_extractor(r50, 6)
    with pytest.raises(ValueError, match="0, 6"):
        _mobilenet_extractor(mnv3, True, 7)
    with pytest.raises(ValueError, match="returned_layers"):
        _resnet_fpn_extractor(r50, 3, returned_layers=[0, 1])
    with pytest.raises(ValueError, match="returned_layers"):
        _mobilenet_extractor(mnv3, True, 3, returned_layers=[6])


def test_validate_trainable_layers():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _validate_trainable_layers(False, None, 5, 3) == 5
        assert _validate_trainable_layers(True, None, 5, 3) == 3
        assert _validate_trainable_layers(True, 0, 6, 3) == 0
    with pytest.warns(UserWarning, match="trainable_backbone_layers=5"):
        assert _validate_trainable_layers(False, 2, 5, 3) == 5
    with pytest.raises(ValueError, match="got 6"):
        _validate_trainable_layers(True, 6, 5, 3)
    with pytest.raises(ValueError, match="got -1"):
        _validate_trainable_layers(True, -1, 5, 3)


def test_resnet_fpn_backbone_outputs():
    torch.manual_seed(0)
    backbone = resnet_fpn_backbone(backbone_name="resnet50", weights=None).eval()
    assert isinstance(backbone, BackboneWithFPN) and backbone.out_channels == 256
    assert isinstance(backbone.body.bn1, FrozenBatchNorm2d)
    assert isinstance(backbone.fpn.extra_blocks, LastLevelMaxPool)
    assert "fc" not in dict(backbone.body.named_children())
    # Default trainable_layers=3: layer2..layer4.
    assert not backbone.body.layer1[0].conv1.weight.requires_grad
    assert backbone.body.layer2[0].conv1.weight.requires_grad
    with torch.no_grad():
        out = backbone(torch.randn(1, 3, 64, 64))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "0": (1, 256, 16, 16), "1": (1, 256, 8, 8), "2": (1, 256, 4, 4), "3": (1, 256, 2, 2), "pool": (1, 256, 1, 1),
    }
    with pytest.raises(ValueError, match="resnet50"):
        resnet_fpn_backbone(backbone_name="resnet51", weights=None)


def test_mobilenet_backbone_outputs():
    torch.manual_seed(0)
    backbone = mobilenet_backbone(backbone_name="mobilenet_v3_large", weights=None, fpn=True).eval()
    assert backbone.out_channels == 256 and backbone.body.return_layers == {"13": "0", "16": "1"}
    assert [b[0].in_channels for b in backbone.fpn.inner_blocks] == [160, 960]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = backbone(x)
        # features[13] is the stride-2 C4 block, so both returned stages are at stride 32.
        assert {k: tuple(v.shape) for k, v in out.items()} == {
            "0": (1, 256, 2, 2), "1": (1, 256, 2, 2), "pool": (1, 256, 1, 1),
        }
        plain = mobilenet_backbone(backbone_name="mobilenet_v3_large", weights=None, fpn=False).eval()
        assert plain.out_channels == 256 and plain(x).shape == (1, 256, 2, 2)
        v2 = mobilenet_backbone(backbone_name="mobilenet_v2", weights=None, fpn=True, trainable_layers=0).eval()
        assert not any(p.requires_grad for p in v2.body.parameters())
        assert v2.body.return_layers == {"14": "0", "18": "1"}
        assert [tuple(v.shape) for v in v2(x).values()] == [(1, 256, 2, 2), (1, 256, 2, 2), (1, 256, 1, 1)]
    with pytest.raises(ValueError, match="mobilenet_v3_large"):
        mobilenet_backbone(backbone_name="mobilenet_v4", weights=None, fpn=True)


def test_channels_last_eval_path_matches_nchw_and_training_stays_nchw():
    torch.manual_seed(0)
    backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=5,
                                   norm_layer=nn.BatchNorm2d).eval()
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        backbone.channels_last = False
        nchw = backbone(x)
        backbone.channels_last = True
        fast = backbone(x)
        backbone.contiguous_outputs = True
        contiguous = backbone(x)
    assert list(fast) == list(nchw) == list(contiguous)
    for name in nchw:
        assert nchw[name].is_contiguous()
        assert fast[name].is_contiguous(memory_format=torch.channels_last), name
        assert contiguous[name].is_contiguous(), name
        torch.testing.assert_close(fast[name], nchw[name], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(contiguous[name], fast[name], rtol=0, atol=0)
    backbone.train()
    for name, feature in backbone(torch.rand(2, 3, 64, 96)).items():
        assert feature.is_contiguous(), name


# --- torchvision's older calls: positional arguments and pretrained= ----------------------------

def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_positional_arguments_warn_and_build_the_same_backbone():
    torch.manual_seed(0)
    by_keyword = resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=2)
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="Using 'backbone_name' and 'weights' as positional parameter"):
        by_position = resnet_fpn_backbone("resnet18", None, trainable_layers=2)
    assert _same_weights(by_keyword, by_position)
    assert [p.requires_grad for p in by_position.parameters()] == [p.requires_grad for p in by_keyword.parameters()]
    with pytest.warns(UserWarning, match="'backbone_name', 'weights', and 'fpn' as positional"):
        plain = mobilenet_backbone("mobilenet_v3_large", None, False)
    assert isinstance(plain, nn.Sequential)
    with pytest.raises(TypeError, match="multiple values"):
        resnet_fpn_backbone("resnet18", backbone_name="resnet18", weights=None)
    with pytest.raises(TypeError, match="at most 6 arguments"):
        resnet_fpn_backbone("resnet18", None, FrozenBatchNorm2d, 3, None, None, None)


@pytest.mark.filterwarnings("ignore:Using .* as positional parameter")
def test_pretrained_false_means_no_weights_with_torchvisions_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        backbone = resnet_fpn_backbone(backbone_name="resnet18", pretrained=False)
    messages = [str(w.message) for w in caught]
    assert any("The parameter 'pretrained' is deprecated since 0.13" in m for m in messages)
    assert any("equivalent to passing `weights=None`" in m for m in messages)
    assert isinstance(backbone, BackboneWithFPN)
    with pytest.warns(UserWarning, match="equivalent to passing `weights=None`"):
        mobilenet_backbone("mobilenet_v2", False, True)  # a bool as the (positional) weights


@pytest.mark.filterwarnings("ignore:The parameter 'pretrained' is deprecated")
def test_pretrained_true_asks_for_the_imagenet_weights():
    from torchdet.weights.hub import CheckpointDownloadError

    with pytest.warns(UserWarning, match=r"`weights=ResNet50_Weights.IMAGENET1K_V1`"):
        with pytest.raises(CheckpointDownloadError):  # the tests are offline: the download is refused
            resnet_fpn_backbone(backbone_name="resnet50", pretrained=True)
    with pytest.warns(UserWarning), pytest.raises(NotImplementedError, match="IMAGENET1K_V1"):
        resnet_fpn_backbone(backbone_name="resnet18", pretrained=True)
