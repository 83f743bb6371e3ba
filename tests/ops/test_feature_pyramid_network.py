"""FeaturePyramidNetwork, LastLevelMaxPool and LastLevelP6P7: keys, init, shapes, and the top-down sum."""
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torchdet.ops.feature_pyramid_network import (
    ExtraFPNBlock,
    FeaturePyramidNetwork,
    LastLevelMaxPool,
    LastLevelP6P7,
)


def _features(channels, sizes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return OrderedDict(
        (f"feat{i}", torch.randn(2, c, h, w, generator=g)) for i, (c, (h, w)) in enumerate(zip(channels, sizes))
    )


def test_state_dict_keys_and_init():
    fpn = FeaturePyramidNetwork([8, 16, 32], 12)
    assert sorted(fpn.state_dict()) == sorted(
        f"{kind}.{i}.0.{p}" for kind in ("inner_blocks", "layer_blocks") for i in range(3) for p in ("weight", "bias")
    )
    assert fpn.inner_blocks[1][0].weight.shape == (12, 16, 1, 1)
    assert fpn.layer_blocks[2][0].weight.shape == (12, 12, 3, 3)
    for m in fpn.modules():
        if isinstance(m, nn.Conv2d):
            assert torch.count_nonzero(m.bias) == 0
            # kaiming_uniform_(a=1): U(-b, b) with b = sqrt(3 / fan_in)
            fan_in = m.weight[0].numel()
            assert m.weight.abs().max() <= (3.0 / fan_in) ** 0.5


def test_norm_layer_keys():
    fpn = FeaturePyramidNetwork([8, 16], 12, norm_layer=nn.BatchNorm2d)
    keys = set(fpn.state_dict())
    assert "inner_blocks.0.0.weight" in keys and "inner_blocks.0.0.bias" not in keys
    assert {"inner_blocks.0.1.weight", "inner_blocks.0.1.running_var", "layer_blocks.1.1.bias"} <= keys


def test_top_down_pathway_by_hand():
    fpn = FeaturePyramidNetwork([3, 5, 7], 4).eval()
    x = _features([3, 5, 7], [(9, 11), (5, 6), (3, 3)])
    out = fpn(x)
    assert list(out) == ["feat0", "feat1", "feat2"]

    c = list(x.values())
    lat = [F.conv2d(c[i], fpn.inner_blocks[i][0].weight, fpn.inner_blocks[i][0].bias) for i in range(3)]
    m2 = lat[2]
    m1 = lat[1] + F.interpolate(m2, size=(5, 6), mode="nearest")
    m0 = lat[0] + F.interpolate(m1, size=(9, 11), mode="nearest")
    for i, m in enumerate([m0, m1, m2]):
        conv = fpn.layer_blocks[i][0]
        torch.testing.assert_close(out[f"feat{i}"], F.conv2d(m, conv.weight, conv.bias, padding=1))


def test_last_level_max_pool():
    fpn = FeaturePyramidNetwork([8, 16, 32], 16, extra_blocks=LastLevelMaxPool())
    out = fpn(_features([8, 16, 32], [(16, 16), (8, 8), (5, 5)]))
    assert list(out) == ["feat0", "feat1", "feat2", "pool"]
    assert [tuple(v.shape) for v in out.values()] == [(2, 16, 16, 16), (2, 16, 8, 8), (2, 16, 5, 5), (2, 16, 3, 3)]
    torch.testing.assert_close(out["pool"], out["feat2"][:, :, ::2, ::2])


def test_last_level_p6p7_from_p5():
    extra = LastLevelP6P7(16, 16)
    assert extra.use_P5
    fpn = FeaturePyramidNetwork([8, 16, 32], 16, extra_blocks=extra)
    x = _features([8, 16, 32], [(16, 16), (8, 8), (4, 4)])
    out = fpn(x)
    assert list(out) == ["feat0", "feat1", "feat2", "p6", "p7"]
    assert out["p6"].shape == (2, 16, 2, 2) and out["p7"].shape == (2, 16, 1, 1)
    torch.testing.assert_close(out["p6"], extra.p6(out["feat2"]))
    torch.testing.assert_close(out["p7"], extra.p7(F.relu(out["p6"])))
    assert sorted(k for k in fpn.state_dict() if k.startswith("extra_blocks")) == [
        "extra_blocks.p6.bias", "extra_blocks.p6.weight", "extra_blocks.p7.bias", "extra_blocks.p7.weight",
    ]


def test_last_level_p6p7_from_c5():
    extra = LastLevelP6P7(32, 16)
    assert not extra.use_P5
    assert extra.p6.weight.shape == (16, 32, 3, 3) and extra.p7.weight.shape == (16, 16, 3, 3)
    assert torch.count_nonzero(extra.p6.bias) == 0 and torch.count_nonzero(extra.p7.bias) == 0
    fpn = FeaturePyramidNetwork([8, 16, 32], 16, extra_blocks=extra)
    x = _features([8, 16, 32], [(16, 16), (8, 8), (4, 4)])
    out = fpn(x)
    torch.testing.assert_close(out["p6"], extra.p6(x["feat2"]))


def test_invalid_arguments():
    with pytest.raises(ValueError, match="in_channels_list\\[1\\]"):
        FeaturePyramidNetwork([8, 0], 16)
    with pytest.raises(TypeError, match="ExtraFPNBlock"):
        FeaturePyramidNetwork([8], 16, extra_blocks=nn.Identity())
    fpn = FeaturePyramidNetwork([8, 16], 16)
    with pytest.raises(ValueError, match="2 levels"):
        fpn(_features([8], [(4, 4)]))
    with pytest.raises(NotImplementedError):
        ExtraFPNBlock()([], [], [])


def test_loads_pre_v2_checkpoint_keys():
    src = FeaturePyramidNetwork([8, 16], 4)
    old = OrderedDict((k.replace(".0.", ".", 1), v) for k, v in src.state_dict().items())
    assert "inner_blocks.0.weight" in old
    old._metadata = {"": {"version": 1}}
    dst = FeaturePyramidNetwork([8, 16], 4)
    dst.load_state_dict(old)
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v)
