"""The small layers of ops.misc (FrozenBatchNorm2d, the conv blocks, SqueezeExcitation, MLP, Permute), hand-checked."""
import pytest
import torch
from torch import nn

from torchdet.ops.misc import Conv2dNormActivation, FrozenBatchNorm2d, SqueezeExcitation


def _random_bn(c: int, seed: int = 0) -> nn.BatchNorm2d:
    g = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(c)
    with torch.no_grad():
        bn.weight.copy_(torch.randn(c, generator=g))
        bn.bias.copy_(torch.randn(c, generator=g))
        bn.running_mean.copy_(torch.randn(c, generator=g))
        bn.running_var.copy_(torch.rand(c, generator=g) + 0.5)
    bn.num_batches_tracked.fill_(7)
    return bn.eval()


def test_frozen_bn_has_buffers_only():
    fbn = FrozenBatchNorm2d(4)
    assert list(fbn.parameters()) == []
    assert sorted(fbn.state_dict()) == ["bias", "running_mean", "running_var", "weight"]
    assert torch.equal(fbn.weight, torch.ones(4)) and torch.equal(fbn.bias, torch.zeros(4))
    assert torch.equal(fbn.running_mean, torch.zeros(4)) and torch.equal(fbn.running_var, torch.ones(4))
    assert fbn.eps == 1e-5
    assert "4, eps=1e-05" in repr(fbn)


@pytest.mark.parametrize("eps", [1e-5, 1e-3])
def test_frozen_bn_matches_batchnorm_eval_and_loads_its_state_dict(eps):
    bn = _random_bn(6)
    bn.eps = eps
    fbn = FrozenBatchNorm2d(6, eps=eps)
    fbn.load_state_dict(bn.state_dict())  # strict, with num_batches_tracked present
    x = torch.randn(2, 6, 5, 3, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(fbn(x), bn(x), rtol=1e-5, atol=1e-5)
    # Stays frozen in train mode.
    fbn.train()
    torch.testing.assert_close(fbn(x), bn(x), rtol=1e-5, atol=1e-5)


def test_frozen_bn_inside_a_container_drops_num_batches_tracked():
    src = nn.Sequential(nn.Conv2d(3, 4, 1), _random_bn(4))
    dst = nn.Sequential(nn.Conv2d(3, 4, 1), FrozenBatchNorm2d(4))
    result = dst.load_state_dict(src.state_dict())
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(dst[1].running_var, src[1].running_var)


def test_frozen_bn_hand_checked_value():
    fbn = FrozenBatchNorm2d(1, eps=0.0)
    fbn.weight.fill_(2.0)
    fbn.bias.fill_(1.0)
    fbn.running_mean.fill_(3.0)
    fbn.running_var.fill_(4.0)
    x = torch.tensor([[[[5.0, 3.0]]]])
    # (x - 3) / 2 * 2 + 1
    assert torch.equal(fbn(x), torch.tensor([[[[3.0, 1.0]]]]))


def test_conv_norm_activation_keys_and_defaults():
    m = Conv2dNormActivation(3, 8)
    assert isinstance(m, nn.Sequential) and m.out_channels == 8
    assert sorted(m.state_dict()) == [
        "0.weight", "1.bias", "1.num_batches_tracked", "1.running_mean", "1.running_var", "1.weight",
    ]
    conv, bn, act = m
    assert conv.bias is None and conv.padding == (1, 1) and conv.kernel_size == (3, 3)
    assert isinstance(bn, nn.BatchNorm2d) and isinstance(act, nn.ReLU) and act.inplace


def test_conv_norm_activation_without_norm_has_bias_and_no_activation():
    m = Conv2dNormActivation(4, 6, kernel_size=1, padding=0, norm_layer=None, activation_layer=None)
    assert sorted(m.state_dict()) == ["0.bias", "0.weight"]
    assert len(m) == 1
    assert Conv2dNormActivation(4, 6, norm_layer=None, bias=False)[0].bias is None
    assert Conv2dNormActivation(4, 6, bias=True)[0].bias is not None


@pytest.mark.parametrize("k,d,stride,expected_pad", [(3, 1, 1, 1), (5, 1, 2, 2), (5, 2, 1, 4), (1, 1, 1, 0), (3, 2, 1, 2)])
def test_conv_norm_activation_padding(k, d, stride, expected_pad):
    m = Conv2dNormActivation(2, 4, kernel_size=k, stride=stride, dilation=d, activation_layer=nn.Hardswish)
    assert m[0].padding == (expected_pad, expected_pad) and m[0].dilation == (d, d)
    y = m.eval()(torch.randn(1, 2, 9, 9))
    assert y.shape == (1, 4, (9 - 1) // stride + 1, (9 - 1) // stride + 1)


def test_conv_norm_activation_groups_and_inplace_none():
    m = Conv2dNormActivation(8, 8, groups=8, activation_layer=nn.Sigmoid, inplace=None)
    assert m[0].weight.shape == (8, 1, 3, 3)
    assert isinstance(m[2], nn.Sigmoid)


def test_squeeze_excitation_shapes_and_gating():
    se = SqueezeExcitation(16, 4, scale_activation=nn.Hardsigmoid)
    assert se.fc1.weight.shape == (4, 16, 1, 1) and se.fc1.bias.shape == (4,)
    assert se.fc2.weight.shape == (16, 4, 1, 1) and se.fc2.bias.shape == (16,)
    assert sorted(se.state_dict()) == ["fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"]
    x = torch.randn(2, 16, 5, 7, generator=torch.Generator().manual_seed(0))
    y = se(x)
    assert y.shape == x.shape
    pooled = x.mean(dim=(2, 3))  # [2, 16]
    hidden = torch.relu(pooled @ se.fc1.weight[:, :, 0, 0].T + se.fc1.bias)
    gate = nn.functional.hardsigmoid(hidden @ se.fc2.weight[:, :, 0, 0].T + se.fc2.bias)  # [2, 16]
    torch.testing.assert_close(y, x * gate[:, :, None, None], rtol=1e-5, atol=1e-6)


# --- MLP, Permute, Conv3dNormActivation ----------------------------------------------------------

from torchdet.ops.misc import MLP, Conv3dNormActivation, Permute  # noqa: E402


def test_mlp_layers_and_keys() -> None:
    mlp = MLP(4, [8, 6, 2], norm_layer=torch.nn.LayerNorm, inplace=False, dropout=0.1)
    kinds = [type(m).__name__ for m in mlp]
    assert kinds == ["Linear", "LayerNorm", "ReLU", "Dropout", "Linear", "LayerNorm", "ReLU", "Dropout", "Linear", "Dropout"]
    assert mlp[2].inplace is False and mlp[3].inplace is False and mlp[3].p == 0.1
    assert "8.weight" in mlp.state_dict() and "1.weight" in mlp.state_dict()
    assert mlp.eval()(torch.randn(3, 5, 4)).shape == (3, 5, 2)
    assert [type(m).__name__ for m in MLP(3, [5], bias=False)] == ["Linear", "Dropout"]
    assert MLP(3, [5], bias=False)[0].bias is None


def test_mlp_same_seed_same_weights_as_plain_layers() -> None:
    torch.manual_seed(0)
    mlp = MLP(4, [8, 2])
    torch.manual_seed(0)
    first, last = torch.nn.Linear(4, 8), torch.nn.Linear(8, 2)
    torch.testing.assert_close(mlp[0].weight, first.weight)
    torch.testing.assert_close(mlp[3].bias, last.bias)


def test_permute() -> None:
    x = torch.randn(2, 3, 4, 5)
    out = Permute([0, 2, 3, 1])(x)
    assert out.shape == (2, 4, 5, 3)
    torch.testing.assert_close(out[1, 2, 3], x[1, :, 2, 3])


def test_conv3d_norm_activation() -> None:
    block = Conv3dNormActivation(3, 4, (1, 3, 3), dilation=(1, 2, 2))
    conv = block[0]
    assert isinstance(conv, torch.nn.Conv3d) and conv.padding == (0, 2, 2) and conv.bias is None
    assert isinstance(block[1], torch.nn.BatchNorm3d) and block[2].inplace
    assert block(torch.randn(1, 3, 2, 8, 8)).shape == (1, 4, 2, 8, 8)
    plain = Conv3dNormActivation(2, 2, 3, norm_layer=None, activation_layer=None)
    assert len(plain) == 1 and plain[0].bias is not None and plain[0].padding == (1, 1, 1)
    assert plain.out_channels == 2


def test_new_layers_trace_and_export() -> None:
    for module, x in [
        (MLP(4, [8, 2]).eval(), torch.randn(3, 4)),
        (Permute([0, 2, 1]), torch.randn(2, 3, 4)),
        (Conv3dNormActivation(2, 3, 3).eval(), torch.randn(1, 2, 4, 5, 5)),
    ]:
        expected = module(x)
        torch.testing.assert_close(torch.fx.symbolic_trace(module)(x), expected)
        torch.testing.assert_close(torch.export.export(module, (x,), strict=False).module()(x), expected)
