"""Batch-norm folding (torchdet.ops.fusion): same outputs as conv -> norm, invisible in the state_dict,
recomputed after every change of the weights, and never used where autograd or batch statistics need
the unfused graph."""
from __future__ import annotations

import copy
import pickle
from collections import OrderedDict

import pytest
import torch
from torch import nn

from torchdet.backbones.intermediate_layers import IntermediateLayerGetter
from torchdet.backbones.resnet import Bottleneck
from torchdet.ops import fusion
from torchdet.ops.dispatch import forced
from torchdet.ops.misc import Conv2dNormActivation, FrozenBatchNorm2d


def _random_stats(norm: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    c = norm.running_mean.shape[0]
    with torch.no_grad():
        norm.running_mean.copy_(torch.randn(c, generator=g))
        norm.running_var.copy_(torch.rand(c, generator=g) * 2 + 0.1)
        if norm.weight is not None:
            norm.weight.copy_(torch.randn(c, generator=g))
            norm.bias.copy_(torch.randn(c, generator=g))
    return norm


def _pair(norm_kind: str, bias: bool = False, groups: int = 1, stride: int = 1, dilation: int = 1):
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, 3, stride, padding=dilation, dilation=dilation, groups=groups, bias=bias)
    norm = {
        "frozen": lambda: FrozenBatchNorm2d(16),
        "bn": lambda: nn.BatchNorm2d(16),
        "bn_no_affine": lambda: nn.BatchNorm2d(16, affine=False),
    }[norm_kind]()
    _random_stats(norm, 1)
    norm.eval()
    return conv, norm


@pytest.mark.parametrize("norm_kind", ["frozen", "bn", "bn_no_affine"])
@pytest.mark.parametrize("bias, groups, stride, dilation", [(False, 1, 1, 1), (True, 2, 2, 1), (False, 8, 1, 2)])
def test_every_form_matches_the_reference(norm_kind, bias, groups, stride, dilation):
    conv, norm = _pair(norm_kind, bias, groups, stride, dilation)
    x = torch.randn(2, 8, 11, 13)
    forms = fusion.conv_norm_dispatch.implementations()
    assert set(forms) == {"reference", "folded"}
    with torch.no_grad():
        assert fusion.can_fold(conv, norm)
        expected = norm(conv(x))
        torch.testing.assert_close(forms["reference"](x, conv, norm), expected, rtol=0, atol=0)
        for name, form in forms.items():
            torch.testing.assert_close(form(x, conv, norm), expected, rtol=1e-5, atol=1e-5, msg=lambda m: f"{name}: {m}")
        assert "_torchdet_folded" in vars(conv)  # the folded form ran folded


def test_state_dict_unchanged_and_the_cache_stays_private_to_the_conv():
    block = Conv2dNormActivation(8, 16, norm_layer=nn.BatchNorm2d).eval()
    keys_before = list(block.state_dict())
    attrs_before = {k: set(vars(m)) for k, m in block.named_modules()}
    with torch.no_grad():
        block(torch.randn(1, 8, 6, 6))
    assert list(block.state_dict()) == keys_before
    attrs_before["0"].add("_torchdet_folded")  # the conv holds its folded weights, nothing else changes
    assert {k: set(vars(m)) for k, m in block.named_modules()} == attrs_before
    assert block[0]._torchdet_folded.entry is not None
    # Copies and pickles start without the folded tensors (recomputed on their next forward).
    assert copy.deepcopy(block)[0]._torchdet_folded.entry is None
    assert pickle.loads(pickle.dumps(block))[0]._torchdet_folded.entry is None
    fusion.clear_cache(block)
    assert "_torchdet_folded" not in vars(block[0])


def test_folding_false_is_forcing_the_reference_form():
    conv, norm = _pair("frozen")
    x = torch.randn(1, 8, 5, 5)
    assert fusion.conv_norm_dispatch.names() == ["reference", "folded"]
    with torch.no_grad():
        with forced("conv_norm", "reference"):
            assert not fusion.can_fold(conv, norm)
        with fusion.folding(False):
            assert not fusion.can_fold(conv, norm)
            fusion.conv_norm(x, conv, norm)
        assert "_torchdet_folded" not in vars(conv)


def test_recomputed_after_load_state_dict_and_in_place_edit():
    block = Conv2dNormActivation(8, 16, norm_layer=FrozenBatchNorm2d).eval()
    other = Conv2dNormActivation(8, 16, norm_layer=FrozenBatchNorm2d).eval()
    _random_stats(other[1], 5)
    x = torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        block(x)  # fills the cache
        block.load_state_dict(other.state_dict())
        with fusion.folding(False):
            expected = other(x)
        torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)
        block[1].running_var.mul_(4)  # an in-place edit bumps the version counter
        block[0].weight.add_(1)
        with fusion.folding(False):
            expected = block(x)
        torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)


def test_batchnorm_in_training_is_not_folded():
    conv, norm = _pair("bn")
    norm.train()
    x = torch.randn(4, 8, 7, 7)
    with torch.no_grad():
        assert not fusion.can_fold(conv, norm)
        mean_before = norm.running_mean.clone()
        out = fusion.conv_norm(x, conv, norm)
    # batch statistics: every channel of the output has mean ~beta
    torch.testing.assert_close(out.mean(dim=(0, 2, 3)), norm.bias, rtol=1e-4, atol=1e-4)
    assert not torch.equal(norm.running_mean, mean_before)


def test_not_folded_when_autograd_needs_the_parameters():
    conv, norm = _pair("bn")
    x = torch.randn(1, 8, 5, 5)
    assert not fusion.can_fold(conv, norm)  # grad enabled, conv.weight requires grad
    out = fusion.conv_norm(x, conv, norm)
    out.sum().backward()
    assert conv.weight.grad is not None and norm.weight.grad is not None


def test_frozen_layers_fold_and_pass_gradients_to_the_input():
    conv, norm = _pair("frozen")
    conv.weight.requires_grad_(False)
    x = torch.randn(1, 8, 5, 5, requires_grad=True)
    with torch.inference_mode():
        fusion.conv_norm(x.detach(), conv, norm)  # the cache must not hold inference tensors
    assert fusion.can_fold(conv, norm)
    out = fusion.conv_norm(x, conv, norm)
    out.sum().backward()
    x2 = x.detach().requires_grad_(True)
    norm(conv(x2)).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-5, atol=1e-5)


def test_switch_and_hooks_turn_folding_off():
    conv, norm = _pair("frozen")
    with torch.no_grad():
        with fusion.folding(False):
            assert not fusion.can_fold(conv, norm)
        assert fusion.can_fold(conv, norm)
        seen = []
        handle = norm.register_forward_hook(lambda m, i, o: seen.append(o.shape))
        assert not fusion.can_fold(conv, norm)
        fusion.conv_norm(torch.randn(1, 8, 4, 4), conv, norm)
        handle.remove()
    assert seen == [torch.Size([1, 16, 4, 4])]


def test_bottleneck_eager_fold_matches_unfused():
    torch.manual_seed(0)
    down = nn.Sequential(nn.Conv2d(16, 32, 1, 2, bias=False), nn.BatchNorm2d(32))
    block = Bottleneck(16, 8, stride=2, downsample=down).eval()
    for m in block.modules():
        if isinstance(m, nn.BatchNorm2d):
            _random_stats(m, 7)
    x = torch.randn(2, 16, 10, 12)
    with torch.no_grad():
        with fusion.folding(False):
            expected = block(x)
        got = block(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_intermediate_layer_getter_folds_the_stem_unless_the_conv_is_returned():
    torch.manual_seed(0)
    bn = _random_stats(nn.BatchNorm2d(4), 3).eval()
    model = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 4, 3, padding=1, bias=False), bn=bn, relu=nn.ReLU()))
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        for returned in ({"bn": "a", "relu": "b"}, {"conv": "a", "relu": "b"}):
            getter = IntermediateLayerGetter(model, returned)
            got = getter(x)
            with fusion.folding(False):
                expected = getter(x)
            assert list(got) == list(expected) == ["a", "b"]
            for k in got:
                torch.testing.assert_close(got[k], expected[k], rtol=1e-5, atol=1e-5)


def test_tracing_keeps_the_parameters_in_the_graph():
    conv, norm = _pair("frozen")
    block = nn.Sequential(conv, norm).eval()
    conv_norm_block = Conv2dNormActivation(8, 16, norm_layer=FrozenBatchNorm2d, activation_layer=None).eval()
    conv_norm_block.load_state_dict(block.state_dict())
    x = torch.randn(1, 8, 6, 6)
    traced = torch.jit.trace(conv_norm_block, x)
    with torch.no_grad():
        conv_norm_block[0].weight.mul_(2)
        traced.state_dict()["0.weight"].mul_(2)
        torch.testing.assert_close(traced(x), conv_norm_block(x), rtol=1e-5, atol=1e-5)
