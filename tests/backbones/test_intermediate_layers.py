"""IntermediateLayerGetter: keeps children up to the last returned one, returns an OrderedDict."""
from collections import OrderedDict

import pytest
import torch
from torch import nn

from torchdet.backbones.intermediate_layers import IntermediateLayerGetter


def _net():
    return nn.Sequential(OrderedDict([
        ("stem", nn.Conv2d(3, 4, 3, stride=2, padding=1)),
        ("act", nn.ReLU()),
        ("stage1", nn.Conv2d(4, 8, 3, stride=2, padding=1)),
        ("stage2", nn.Conv2d(8, 16, 3, stride=2, padding=1)),
        ("head", nn.Linear(16, 2)),
    ]))


def test_truncates_after_last_returned_layer_and_keeps_names():
    net = _net()
    getter = IntermediateLayerGetter(net, {"stem": "a", "stage2": "b"})
    assert list(getter.keys()) == ["stem", "act", "stage1", "stage2"]
    assert "head.weight" not in getter.state_dict() and "stage1.weight" in getter.state_dict()
    out = getter(torch.randn(1, 3, 16, 16))
    assert isinstance(out, OrderedDict) and list(out) == ["a", "b"]
    assert out["a"].shape == (1, 4, 8, 8) and out["b"].shape == (1, 16, 2, 2)
    assert getter.return_layers == {"stem": "a", "stage2": "b"}


def test_output_order_follows_the_model():
    out = IntermediateLayerGetter(_net(), {"stage1": "x", "stem": "y"})(torch.randn(1, 3, 8, 8))
    assert list(out) == ["y", "x"]


def test_unknown_layer_is_an_error():
    with pytest.raises(ValueError, match="layer9"):
        IntermediateLayerGetter(_net(), {"layer9": "0"})
