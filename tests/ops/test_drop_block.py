"""DropBlock: identity when inactive, square zeroed blocks, kept fraction and rescaling, errors, tracing."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torchdet.ops import DropBlock2d, DropBlock3d, drop_block2d, drop_block3d


@settings(max_examples=15, deadline=None, derandomize=True)
@given(st.floats(0.0, 1.0), st.sampled_from([1, 3, 5]))
def test_inactive_is_identity(p: float, block_size: int) -> None:
    x = torch.randn(2, 3, 9, 9)
    assert drop_block2d(x, p, block_size, training=False) is x
    assert drop_block2d(x, 0.0, block_size) is x
    module = DropBlock2d(p, block_size).eval()
    assert module(x) is x
    assert DropBlock3d(p, block_size).eval()(x[:, :, None]) is not None


@pytest.mark.parametrize("p", [0.1, 0.3])
def test_training_drops_about_p_and_rescales(p: float) -> None:
    torch.manual_seed(0)
    x = torch.ones(4, 8, 40, 40)
    y = drop_block2d(x, p, 5)
    dropped = (y == 0).float().mean().item()
    # Overlapping blocks make the dropped fraction a little below p.
    assert 0.7 * p < dropped < 1.05 * p
    kept = y[y != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, x.numel() / (1e-6 + kept.numel())))
    torch.testing.assert_close(y.sum(), x.sum(), rtol=1e-4, atol=0)  # the rescaling keeps the total


def test_a_single_centre_zeroes_one_block() -> None:
    # p chosen so that gamma = 1: every centre is drawn and the whole 3x3 map goes.
    x = torch.ones(1, 1, 3, 3)
    assert drop_block2d(x, 1.0, 3).abs().sum().item() == 0.0
    # With a 1x1 block DropBlock is dropout of single pixels.
    torch.manual_seed(1)
    y = drop_block2d(torch.ones(1, 1, 50, 50), 0.5, 1)
    assert 0.4 < (y == 0).float().mean().item() < 0.6


def test_3d_drops_cubes() -> None:
    torch.manual_seed(0)
    y = drop_block3d(torch.ones(2, 4, 16, 16, 16), 0.2, 3)
    assert 0.7 * 0.2 < (y == 0).float().mean().item() < 1.05 * 0.2


def test_inplace_modifies_the_input() -> None:
    torch.manual_seed(0)
    x = torch.ones(1, 2, 12, 12)
    out = drop_block2d(x, 0.5, 3, inplace=True)
    assert out.data_ptr() == x.data_ptr() and bool((x == 0).any())


def test_errors_match_torchvision() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        drop_block2d(torch.ones(1, 1, 4, 4), 1.5, 3)
    with pytest.raises(ValueError, match="4 dimensional"):
        drop_block2d(torch.ones(1, 4, 4), 0.5, 3)
    with pytest.raises(ValueError, match="5 dimensional"):
        drop_block3d(torch.ones(1, 1, 4, 4), 0.5, 3)
    with pytest.raises(RuntimeError, match="must be odd"):
        drop_block2d(torch.ones(1, 1, 6, 6), 0.5, 2)


def test_repr() -> None:
    assert repr(DropBlock2d(0.1, 7)) == "DropBlock2d(p=0.1, block_size=7, inplace=False)"
    assert repr(DropBlock3d(0.2, 3, inplace=True)) == "DropBlock3d(p=0.2, block_size=3, inplace=True)"


def test_traces_and_exports_in_eval() -> None:
    module = DropBlock2d(0.3, 3).eval()
    x = torch.randn(1, 2, 6, 6)
    graph = torch.fx.symbolic_trace(module)
    assert [n.op for n in graph.graph.nodes] == ["placeholder", "call_function", "output"]
    torch.testing.assert_close(graph(x), x)
    torch.testing.assert_close(torch.export.export(module, (x,), strict=False).module()(x), x)
    train = DropBlock2d(0.3, 3).train()
    torch.manual_seed(0)
    expected = train(x)
    torch.manual_seed(0)
    torch.testing.assert_close(torch.fx.symbolic_trace(train)(x), expected)
