"""ps_roi_align / PSRoIAlign: hand-worked samples, agreement with roi_align per bin, gradient, errors, tracing."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from _trace_check import assert_traces_and_exports
from torchdet.ops import PSRoIAlign, ps_roi_align, roi_align


def test_hand_worked_single_sample() -> None:
    # A ramp f(y, x) = 10 y + x is reproduced exactly by bilinear sampling inside the map.
    ys, xs = torch.meshgrid(torch.arange(6.0), torch.arange(6.0), indexing="ij")
    x = (10 * ys + xs).reshape(1, 1, 6, 6)
    # Box (1, 1)-(3, 4) becomes (0.5, 0.5)-(2.5, 3.5) after the half-pixel shift; one sample at
    # its centre (y 2.0, x 1.5) reads 21.5.
    out = ps_roi_align(x, torch.tensor([[0, 1.0, 1.0, 3.0, 4.0]]), 1, 1.0, 1)
    assert out.item() == pytest.approx(21.5)
    # Box (1, 1)-(5, 4): x spans 0.5..4.5 and y 0.5..3.5; 2x2 samples at x {1.5, 3.5} and y {1.25, 2.75}
    # average to the ramp at the centre (y 2.0, x 2.5).
    assert ps_roi_align(x, torch.tensor([[0, 1.0, 1.0, 5.0, 4.0]]), 1, 1.0, 2).item() == pytest.approx(10 * 2.0 + 2.5)
    # A sample left of x = -1 reads 0.
    assert ps_roi_align(x, torch.tensor([[0, -4.0, 0.0, -3.0, 1.0]]), 1, 1.0, 1).item() == 0.0


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    st.lists(st.floats(-4, 16), min_size=4, max_size=4), st.integers(-1, 3), st.floats(0.5, 1.5),
    st.integers(1, 3), st.integers(1, 3),
)
def test_each_bin_equals_aligned_roi_align_on_its_channels(
    coords: list, sampling_ratio: int, scale: float, ph: int, pw: int
) -> None:
    x1, x2 = sorted(coords[:2])
    y1, y2 = sorted(coords[2:])
    c_out = 2
    x = torch.randn(2, c_out * ph * pw, 9, 11, dtype=torch.float64, generator=torch.Generator().manual_seed(ph * 3 + pw))
    rois = torch.tensor([[1, x1, y1, x2, y2], [0, 1.0, 2.0, 8.0, 7.0]], dtype=torch.float64)
    out = ps_roi_align(x, rois, (ph, pw), scale, sampling_ratio)  # [2, c_out, ph, pw]
    full = roi_align(x, rois, (ph, pw), scale, sampling_ratio, aligned=True).reshape(2, c_out, ph, pw, ph, pw)
    for i in range(ph):
        for j in range(pw):
            torch.testing.assert_close(out[:, :, i, j], full[:, :, i, j, i, j])


def test_gradcheck() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 6, 7, dtype=torch.float64, requires_grad=True, generator=g)
    rois = torch.tensor([[0, 0.3, 1.2, 5.8, 4.1], [1, -3, -2, 4, 5], [1, 2, 2, 9, 7.5]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: ps_roi_align(t, rois, (2, 2), 0.9, -1), (x,))
    x3 = torch.randn(1, 3, 5, 6, dtype=torch.float64, requires_grad=True, generator=g)
    assert torch.autograd.gradcheck(lambda t: ps_roi_align(t, rois[:1], (1, 3), 0.9, 2), (x3,))


def test_channels_must_be_a_multiple_of_the_bins() -> None:
    with pytest.raises(RuntimeError, match="multiple of pooling height"):
        ps_roi_align(torch.randn(1, 5, 5, 5), torch.zeros(1, 5), 2)


def test_repr() -> None:
    assert repr(PSRoIAlign(7, 0.25, 2)) == "PSRoIAlign(output_size=7, spatial_scale=0.25, sampling_ratio=2)"


@pytest.mark.parametrize("sampling_ratio", [2, -1])
def test_traces_and_exports(sampling_ratio: int) -> None:
    x = torch.randn(2, 8, 10, 12, generator=torch.Generator().manual_seed(0))
    rois = torch.tensor([[0, 0.3, 1.2, 7.8, 6.1], [1, -3, -2, 4, 5], [0, 2, 2, 11, 9.5]])
    other = torch.tensor([[1, 0.0, 0.0, 11.0, 9.0], [0, 5, 5, 6, 6], [0, -20, -20, 30, 40]])
    assert_traces_and_exports(PSRoIAlign(2, 0.9, sampling_ratio), (x, rois), (x, other))
