"""FLOP counting: the reference conv's 16.04 GFLOP, and grouped-conv backward counted right."""
import pytest
import torch

from torchdet.bench.flops import count_call_flops, count_flops
from torchdet.bench.latency import REFERENCE_CONV_GFLOP


def test_reference_conv_counts_its_gflop():
    x, w = torch.zeros(1, 256, 100, 136), torch.zeros(256, 256, 3, 3)
    flops = count_call_flops(lambda: torch.nn.functional.conv2d(x, w, padding=1))
    assert flops / 1e9 == pytest.approx(REFERENCE_CONV_GFLOP)


@pytest.mark.parametrize("groups", [1, 2, 8])
@pytest.mark.parametrize("transposed", [False, True])
def test_conv_backward_is_twice_the_forward_whatever_the_groups(groups, transposed):
    x = torch.randn(2, 16, 12, 10, requires_grad=True)
    if transposed:
        w = torch.randn(16, 8 // groups, 2, 2, requires_grad=True)  # [C_in, C_out / groups, k, k]
        conv = lambda: torch.nn.functional.conv_transpose2d(x, w, stride=2, groups=groups)  # noqa: E731
    else:
        w = torch.randn(8, 16 // groups, 3, 3, requires_grad=True)
        conv = lambda: torch.nn.functional.conv2d(x, w, padding=1, groups=groups)  # noqa: E731
    forward = count_call_flops(conv)
    y = conv()
    backward = count_call_flops(lambda: y.sum().backward())
    assert forward > 0 and backward == 2 * forward


def test_weight_gradient_only_counts_once():
    x = torch.randn(1, 8, 10, 10)  # no grad wanted for the input
    w = torch.randn(8, 1, 3, 3, requires_grad=True)
    forward = count_call_flops(lambda: torch.nn.functional.conv2d(x, w, groups=8))
    y = torch.nn.functional.conv2d(x, w, groups=8)
    assert count_call_flops(lambda: y.sum().backward()) == forward


def test_count_flops_of_a_model_forward():
    model = torch.nn.Sequential(torch.nn.Flatten(0), torch.nn.Linear(12, 5))
    assert count_flops(lambda images: model(images[0]), [torch.zeros(3, 2, 2)]) == 2 * 12 * 5


def test_flops_inside_profiled_ops_are_left_out():
    from torchdet.ops._profiling import profiled

    a = torch.randn(4, 6)

    @profiled("roi_align")
    def pooled_with_a_matmul(x):
        return x @ a.T

    x = torch.randn(5, 6)
    assert count_call_flops(lambda: pooled_with_a_matmul(x)) == 0
    assert count_call_flops(lambda: x @ a.T) == 2 * 5 * 6 * 4
    assert count_call_flops(lambda: pooled_with_a_matmul(x) @ a) == 2 * 5 * 4 * 6
