"""roi_pool / RoIPool: hand-worked bins, adaptive max-pool property, gradient, errors, tracing."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from _trace_check import assert_traces_and_exports
from torchdet.errors import InvalidInputError, InvalidOpInputError
from torchdet.ops import RoIPool, roi_pool
from torchdet.ops.dispatch import forced


def test_hand_worked_bins() -> None:
    # Image 0 holds 0..35 row-major in a 6x6 map, image 1 holds 36..71.
    x = torch.arange(72, dtype=torch.float64).reshape(2, 1, 6, 6)
    # RoI 0 spans columns/rows 0..3 (4 pixels, +1 rule): 2x2 bins of 2x2 pixels, max at each bin's
    # bottom-right. RoI 1 on image 1 spans columns 1..4 and rows 1..2: bins are one row high.
    rois = torch.tensor([[0, 0, 0, 3, 3], [1, 1, 1, 4, 2]], dtype=torch.float64)
    out = roi_pool(x, rois, 2)
    assert out.shape == (2, 1, 2, 2)
    torch.testing.assert_close(out[0, 0], torch.tensor([[7.0, 9.0], [19.0, 21.0]], dtype=torch.float64))
    torch.testing.assert_close(out[1, 0], torch.tensor([[36 + 8.0, 36 + 10.0], [36 + 14.0, 36 + 16.0]], dtype=torch.float64))


def test_rounding_is_half_away_from_zero_and_empty_bins_are_zero() -> None:
    x = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4) + 1
    # 0.5 * 1 rounds to 1 (not to 0 as torch.round would): the RoI is the single pixel (1, 1).
    out = roi_pool(x, torch.tensor([[0, 0.5, 0.5, 0.5, 0.5]]), 1)
    assert out.item() == x[0, 0, 1, 1].item()
    # A RoI entirely right of the map has only empty (clipped) bins.
    assert roi_pool(x, torch.tensor([[0, 10.0, 0, 12, 3]]), 2).abs().sum().item() == 0.0


def test_list_of_boxes_and_spatial_scale() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 9)
    boxes = [torch.tensor([[0.0, 0.0, 8.0, 8.0]]), torch.tensor([[2.0, 4.0, 12.0, 14.0], [0, 0, 2, 2]])]
    rois = torch.tensor([[0, 0.0, 0.0, 8.0, 8.0], [1, 2.0, 4.0, 12.0, 14.0], [1, 0, 0, 2, 2]])
    torch.testing.assert_close(roi_pool(x, boxes, (3, 2), 0.5), roi_pool(x, rois, (3, 2), 0.5))
    torch.testing.assert_close(RoIPool((3, 2), 0.5)(x, boxes), roi_pool(x, rois, [3, 2], 0.5))


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    st.integers(0, 6), st.integers(0, 6), st.integers(0, 5), st.integers(0, 5),
    st.integers(1, 4), st.integers(1, 4), st.integers(0, 1),
)
def test_integer_boxes_inside_equal_adaptive_max_pool_of_the_crop(
    x1: int, y1: int, w: int, h: int, ph: int, pw: int, image: int
) -> None:
    x = torch.randn(2, 3, 12, 13, generator=torch.Generator().manual_seed(x1 * 7 + y1))
    x2, y2 = x1 + w, y1 + h
    rois = torch.tensor([[image, x1, y1, x2, y2]], dtype=torch.float32)
    crop = x[image : image + 1, :, y1 : y2 + 1, x1 : x2 + 1]
    for form in ("reference", "crop_loop"):
        with forced("roi_pool", form):
            torch.testing.assert_close(roi_pool(x, rois, (ph, pw)), F.adaptive_max_pool2d(crop, (ph, pw)))


def test_gradient_goes_to_the_maxima() -> None:
    x = torch.randn(1, 2, 10, 12, dtype=torch.float64, requires_grad=True, generator=torch.Generator().manual_seed(1))
    rois = torch.tensor([[0, 0.3, 1.2, 7.8, 6.1], [0, -3, -2, 4, 5], [0, 20, 20, 30, 30]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: roi_pool(t, rois, (3, 2), 0.9), (x,))
    roi_pool(x, rois[:1], 1).sum().backward()
    grad = x.grad[0]
    assert int((grad != 0).sum()) == 2  # one maximum per channel
    assert float(grad.sum()) == 2.0


def test_empty_rois() -> None:
    out = roi_pool(torch.randn(1, 4, 5, 5), torch.zeros(0, 5), 3)
    assert out.shape == (0, 4, 3, 3)


def test_bad_input_is_refused_with_torchvision_compatible_types() -> None:
    x = torch.randn(1, 1, 5, 5)
    with pytest.raises(AssertionError, match=r"Tensor\[K, 5\]"):
        roi_pool(x, torch.zeros(3, 4), 2)
    with pytest.raises(InvalidInputError, match=r"boxes\[0\]"):
        roi_pool(x, [torch.zeros(3, 5)], 2)
    with pytest.raises(RuntimeError, match="same dtype"):
        roi_pool(x, torch.zeros(1, 5, dtype=torch.float64), 2)
    with pytest.raises(InvalidOpInputError, match=r"\[B, C, H, W\]"):
        roi_pool(x[0], torch.zeros(1, 5), 2)


def test_repr() -> None:
    assert repr(RoIPool((7, 7), 0.0625)) == "RoIPool(output_size=(7, 7), spatial_scale=0.0625)"


def test_traces_and_exports() -> None:
    x = torch.randn(2, 3, 10, 12, generator=torch.Generator().manual_seed(0))
    rois = torch.tensor([[0, 0.3, 1.2, 7.8, 6.1], [1, -3, -2, 4, 5], [0, 2, 2, 11, 9.5]])
    other = torch.tensor([[1, 0.0, 0.0, 11.0, 9.0], [0, 5, 5, 6, 6], [0, -20, -20, 30, 40]])
    assert_traces_and_exports(RoIPool((3, 2), 0.9), (x, rois), (x, other))


def test_every_form_matches_the_reference() -> None:
    import importlib

    module = importlib.import_module("torchdet.ops.roi_pool")
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 4, 13, 17, dtype=torch.float64, generator=g, requires_grad=True)
    corner = torch.rand(40, 2, dtype=torch.float64, generator=g) * 260 - 30
    size = torch.rand(40, 2, dtype=torch.float64, generator=g) * 120
    batch = torch.randint(0, 2, (40, 1), generator=g).double()
    rois = torch.cat([batch, corner, corner + size], dim=1)  # inside, across the borders and outside
    with forced("roi_pool", "reference"):
        expected = roi_pool(x, rois, (3, 4), 1 / 16)
        expected_grad = torch.autograd.grad((expected * expected).sum(), x)[0]
    assert module.roi_pool_dispatch.names() == ["reference", "crop_loop"]
    for name in module.roi_pool_dispatch.names():
        with forced("roi_pool", name):
            out = roi_pool(x, rois, (3, 4), 1 / 16)
            torch.testing.assert_close(out, expected)
            torch.testing.assert_close(torch.autograd.grad((out * out).sum(), x)[0], expected_grad)
            with torch.no_grad():
                torch.testing.assert_close(roi_pool(x, rois, (3, 4), 1 / 16), expected.detach())
