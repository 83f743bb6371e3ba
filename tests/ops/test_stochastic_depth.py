"""Stochastic depth: row and batch modes, survival rate and scaling, identity when inactive, errors, tracing."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torchdet.ops import StochasticDepth, stochastic_depth


@settings(max_examples=20, deadline=None, derandomize=True)
@given(st.floats(0.0, 0.95), st.integers(0, 1000))
def test_row_mode_keeps_or_zeroes_whole_samples(p: float, seed: int) -> None:
    torch.manual_seed(seed)
    x = torch.rand(16, 3, 4) + 1
    y = stochastic_depth(x, p, "row")
    for row_in, row_out in zip(x, y):
        kept = bool(row_out.abs().sum() > 0)
        expected = row_in / (1 - p) if kept else torch.zeros_like(row_in)
        torch.testing.assert_close(row_out, expected)


def test_batch_mode_is_all_or_nothing() -> None:
    outcomes = set()
    for seed in range(20):
        torch.manual_seed(seed)
        x = torch.rand(8, 5) + 1
        y = stochastic_depth(x, 0.5, "batch")
        zero = bool((y == 0).all())
        assert zero or torch.allclose(y, x * 2)
        outcomes.add(zero)
    assert outcomes == {True, False}


def test_survival_fraction_is_one_minus_p() -> None:
    torch.manual_seed(0)
    y = stochastic_depth(torch.ones(20000, 1), 0.3, "row")
    assert abs((y != 0).float().mean().item() - 0.7) < 0.02


def test_inactive_and_extreme_probabilities() -> None:
    x = torch.randn(4, 3)
    assert stochastic_depth(x, 0.5, "row", training=False) is x
    assert stochastic_depth(x, 0.0, "batch") is x
    assert stochastic_depth(x, 1.0, "row").abs().sum().item() == 0.0
    assert StochasticDepth(0.5, "row").eval()(x) is x


def test_errors() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        stochastic_depth(torch.ones(2), -0.1, "row")
    with pytest.raises(ValueError, match="'batch' or 'row'"):
        stochastic_depth(torch.ones(2), 0.1, "column")


def test_repr() -> None:
    assert repr(StochasticDepth(0.2, "row")) == "StochasticDepth(p=0.2, mode=row)"


def test_traces_and_exports() -> None:
    module = StochasticDepth(0.4, "row")
    x = torch.rand(6, 3) + 1
    graph = torch.fx.symbolic_trace(module)
    torch.manual_seed(0)
    expected = module(x)
    torch.manual_seed(0)
    torch.testing.assert_close(graph(x), expected)
    module.eval()
    torch.testing.assert_close(torch.export.export(module, (x,), strict=False).module()(x), x)
