"""ps_roi_pool / PSRoIPool: hand-worked bins, adaptive average-pool property, gradient, errors, tracing."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from _trace_check import assert_traces_and_exports
from torchdet.errors import InvalidOpInputError
from torchdet.ops import PSRoIPool, ps_roi_pool


def test_hand_worked_bins_read_their_own_channel() -> None:
    # Four 4x4 channels holding 0..63; one output channel, 2x2 bins over the whole map
    # (x2 - x1 = 4 pixels, no +1): bin (ph, pw) averages a 2x2 block of channel 2 * ph + pw.
    x = torch.arange(64, dtype=torch.float64).reshape(1, 4, 4, 4)
    out = ps_roi_pool(x, torch.tensor([[0, 0, 0, 4, 4]], dtype=torch.float64), 2)
    # Channel 0 top-left {0, 1, 4, 5}: 2.5; channel 1 top-right {2, 3, 6, 7} + 16: 20.5;
    # channel 2 bottom-left {8, 9, 12, 13} + 32: 42.5; channel 3 bottom-right {10, 11, 14, 15} + 48: 60.5.
    torch.testing.assert_close(out, torch.tensor([[[[2.5, 20.5], [42.5, 60.5]]]], dtype=torch.float64))


@settings(max_examples=30, deadline=None, derandomize=True)
@given(st.integers(0, 6), st.integers(0, 6), st.integers(1, 5), st.integers(1, 5), st.integers(1, 3), st.integers(1, 3))
def test_integer_boxes_inside_equal_adaptive_avg_pool_per_bin(x1: int, y1: int, w: int, h: int, ph: int, pw: int) -> None:
    c_out = 2
    x = torch.randn(1, c_out * ph * pw, 12, 13, dtype=torch.float64, generator=torch.Generator().manual_seed(x1 + 13 * y1))
    rois = torch.tensor([[0, x1, y1, x1 + w, y1 + h]], dtype=torch.float64)
    out = ps_roi_pool(x, rois, (ph, pw))
    pooled = F.adaptive_avg_pool2d(x[:, :, y1 : y1 + h, x1 : x1 + w], (ph, pw)).reshape(c_out, ph, pw, ph, pw)
    for i in range(ph):
        for j in range(pw):
            torch.testing.assert_close(out[0, :, i, j], pooled[:, i, j, i, j])


def test_gradcheck() -> None:
    x = torch.randn(2, 8, 10, 12, dtype=torch.float64, requires_grad=True, generator=torch.Generator().manual_seed(0))
    rois = torch.tensor([[0, 0.3, 1.2, 7.8, 6.1], [1, -3, -2, 4, 5], [0, 20, 20, 30, 30]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: ps_roi_pool(t, rois, (2, 2), 0.9), (x,))


def test_channels_must_be_a_multiple_of_the_bins() -> None:
    with pytest.raises(RuntimeError, match="multiple of pooling height"):
        ps_roi_pool(torch.randn(1, 6, 5, 5), torch.zeros(1, 5), 2)
    with pytest.raises(InvalidOpInputError):
        ps_roi_pool(torch.randn(1, 6, 5, 5), torch.zeros(1, 5), 2)
    with pytest.raises(AssertionError):
        ps_roi_pool(torch.randn(1, 4, 5, 5), torch.zeros(1, 4), 2)


def test_repr_and_module() -> None:
    module = PSRoIPool(2, 0.5)
    assert repr(module) == "PSRoIPool(output_size=2, spatial_scale=0.5)"
    x = torch.randn(1, 8, 6, 6)
    boxes = [torch.tensor([[0.0, 0.0, 10.0, 10.0]])]
    torch.testing.assert_close(module(x, boxes), ps_roi_pool(x, torch.tensor([[0, 0.0, 0.0, 10.0, 10.0]]), 2, 0.5))
    assert module(x, boxes).shape == (1, 2, 2, 2)


def test_traces_and_exports() -> None:
    x = torch.randn(2, 8, 10, 12, generator=torch.Generator().manual_seed(0))
    rois = torch.tensor([[0, 0.3, 1.2, 7.8, 6.1], [1, -3, -2, 4, 5], [0, 2, 2, 11, 9.5]])
    other = torch.tensor([[1, 0.0, 0.0, 11.0, 9.0], [0, 5, 5, 6, 6], [0, -20, -20, 30, 40]])
    assert_traces_and_exports(PSRoIPool(2, 0.9), (x, rois), (x, other))
