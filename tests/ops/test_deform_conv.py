"""deform_conv2d / DeformConv2d: conv2d agreement, hand-worked offsets and masks, gradients, errors, tracing."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from _trace_check import assert_traces_and_exports
from torchdet.ops import DeformConv2d, deform_conv2d


def _out_size(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    st.integers(1, 3), st.integers(1, 3), st.integers(1, 2), st.integers(0, 2), st.integers(1, 2),
    st.sampled_from([1, 2]), st.sampled_from([1, 2]), st.booleans(),
)
def test_zero_offsets_and_unit_mask_equal_conv2d(
    kh: int, kw: int, stride: int, padding: int, dilation: int, groups: int, offset_groups: int, bias: bool
) -> None:
    g = torch.Generator().manual_seed(kh * 100 + kw * 10 + stride)
    x = torch.randn(2, 4, 7, 8, dtype=torch.float64, generator=g)
    w = torch.randn(6, 4 // groups, kh, kw, dtype=torch.float64, generator=g)
    b = torch.randn(6, dtype=torch.float64, generator=g) if bias else None
    oh, ow = _out_size(7, kh, stride, padding, dilation), _out_size(8, kw, stride, padding, dilation)
    offset = torch.zeros(2, 2 * offset_groups * kh * kw, oh, ow, dtype=torch.float64)
    mask = torch.ones(2, offset_groups * kh * kw, oh, ow, dtype=torch.float64)
    expected = F.conv2d(x, w, b, stride, padding, dilation, groups)
    torch.testing.assert_close(deform_conv2d(x, offset, w, b, stride, padding, dilation), expected)
    torch.testing.assert_close(deform_conv2d(x, offset, w, b, stride, padding, dilation, mask), expected)


def test_hand_worked_offsets_and_mask() -> None:
    x = torch.tensor([[[[1.0, 3.0, 5.0]]]])
    w = torch.ones(1, 1, 1, 1)
    offset = torch.zeros(1, 2, 1, 3)
    offset[:, 1] = 0.5  # half a pixel right: the mean of each pixel and its right neighbour (0 past the edge)
    torch.testing.assert_close(deform_conv2d(x, offset, w), torch.tensor([[[[2.0, 4.0, 2.5]]]]))
    offset[:, 0] = -1.0  # and a row up, off the map: everything reads 0
    assert deform_conv2d(x, offset, w).abs().sum().item() == 0.0
    mask = torch.tensor([[[[0.5, 0.0, 2.0]]]])
    torch.testing.assert_close(deform_conv2d(x, torch.zeros(1, 2, 1, 3), w, mask=mask), torch.tensor([[[[0.5, 0.0, 10.0]]]]))


def test_integer_offsets_shift_the_input() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 3, 6, 7, generator=g)
    w = torch.randn(2, 3, 3, 3, generator=g)
    offset = torch.zeros(1, 18, 6, 7)
    offset[:, 0::2] = 1.0  # every tap reads one row lower: a valid conv of the padded input shifted up a row
    padded = F.pad(x, (1, 1, 1, 1))
    shifted = torch.cat([padded[:, :, 1:], torch.zeros(1, 3, 1, 9)], dim=2)
    torch.testing.assert_close(deform_conv2d(x, offset, w, padding=1), F.conv2d(shifted, w))


def test_offset_groups_use_their_own_offsets() -> None:
    x = torch.randn(1, 2, 5, 5, generator=torch.Generator().manual_seed(4))
    w = torch.ones(2, 1, 1, 1)
    offset = torch.zeros(1, 4, 5, 5)
    offset[:, 3] = 1.0  # group 1 (channel 1) reads one column right, group 0 stays put
    out = deform_conv2d(x, offset, w)  # groups = 2: output c reads input channel c
    torch.testing.assert_close(out[0, 0], x[0, 0])
    torch.testing.assert_close(out[0, 1, :, :4], x[0, 1, :, 1:])
    assert out[0, 1, :, 4].abs().sum().item() == 0.0


def test_gradcheck_input_offset_weight_bias_mask() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 4, 5, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(2, 2, 3, 3, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, generator=g, requires_grad=True)
    # Offsets away from integers, where the bilinear interpolant is smooth.
    offset = (torch.rand(1, 2 * 2 * 9, 4, 5, dtype=torch.float64, generator=g) * 0.8 + 0.1 - 1).requires_grad_()
    mask = torch.rand(1, 2 * 9, 4, 5, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda xi, oi, wi, bi, mi: deform_conv2d(xi, oi, wi, bi, 1, 1, 1, mi), (x, offset, w, b, mask)
    )


def test_errors_name_the_shapes() -> None:
    x, w = torch.randn(1, 4, 5, 5), torch.randn(2, 4, 3, 3)
    with pytest.raises(RuntimeError, match="multiple of 2 \\* weight.size"):
        deform_conv2d(x, torch.zeros(1, 17, 3, 3), w)
    with pytest.raises(RuntimeError, match=r"offset must be \[B, 18, 3, 3\]"):
        deform_conv2d(x, torch.zeros(1, 18, 5, 5), w)
    with pytest.raises(RuntimeError, match="mask must be"):
        deform_conv2d(x, torch.zeros(1, 18, 3, 3), w, mask=torch.ones(1, 8, 3, 3))
    with pytest.raises(ValueError, match="divisible by groups"):
        DeformConv2d(3, 4, 3, groups=2)


def test_module_repr_and_init() -> None:
    assert repr(DeformConv2d(8, 4, 3)) == "DeformConv2d(8, 4, kernel_size=(3, 3), stride=(1, 1))"
    text = repr(DeformConv2d(8, 4, (3, 1), stride=2, padding=1, dilation=2, groups=2, bias=False))
    assert text == "DeformConv2d(8, 4, kernel_size=(3, 1), stride=(2, 2), padding=(1, 1), dilation=(2, 2), groups=2, bias=False)"
    torch.manual_seed(0)
    module = DeformConv2d(8, 4, 3)
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 4, 3)  # same initialisers in the same order
    torch.testing.assert_close(module.weight, conv.weight)
    torch.testing.assert_close(module.bias, conv.bias)


def test_traces_and_exports() -> None:
    torch.manual_seed(0)
    module = DeformConv2d(4, 3, 3, padding=1)

    class WithMask(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = module

        def forward(self, x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return self.conv(x, offset, mask)

    args = (torch.randn(2, 4, 6, 7), torch.randn(2, 18, 6, 7), torch.rand(2, 9, 6, 7))
    other = (torch.randn(2, 4, 6, 7), torch.randn(2, 18, 6, 7) * 3, torch.rand(2, 9, 6, 7))
    assert_traces_and_exports(WithMask(), args, other)
