"""FLOPs of a forward (or a training step) counted by `torch.utils.flop_counter.FlopCounterMode`.

FlopCounterMode counts the matmul-like ops (convolutions, linear layers, bmm, their backward)
as 2 x multiply-adds, the same convention as `REFERENCE_CONV_GFLOP` (16.04 for the reference
conv); elementwise ops, nms, roi_align and the like count zero, so achieved GFLOP/s is a
lower bound on how busy the matmul kernels are. FLOPs dispatched inside torchdet's profiled ops
(`torchdet.ops._profiling.profiled`: nms, roi_align) are left out too: roi_align is written
with matmuls and embedding_bag whose dense FLOPs are an implementation detail, not the model's
(torchvision's compiled roi_align counts zero), and would inflate the R-CNN figures.

torch's own formula for `convolution_backward` drops the ``groups`` factor of the weight
gradient (a depthwise conv's backward counts ~C times too much), which would inflate the
training FLOPs of the MobileNet builders; `count_call_flops` replaces it with one that counts
each requested gradient (input, weight) as one forward conv's FLOPs.
"""
from __future__ import annotations

from typing import Any, Callable, List, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from torchdet.ops import _profiling


def conv_backward_flops(grad_out_shape: Sequence[int], x_shape: Sequence[int], w_shape: Sequence[int],
                        _bias: Any, _stride: Any, _padding: Any, _dilation: Any, transposed: bool,
                        _output_padding: Any, _groups: int, output_mask: Sequence[bool],
                        out_shape: Any = None, **kwargs: Any) -> int:
    """FLOPs of `aten.convolution_backward`: one forward conv per gradient asked for (input, weight).

    ``w_shape`` is ``[C_out, C_in / groups, k...]`` (``[C_in, C_out / groups, k...]`` when
    transposed), so the forward count already carries the groups; ``grad_out_shape`` is the
    forward's output shape.
    """
    forward = conv_flop_count(list(x_shape), list(w_shape), list(grad_out_shape), transposed)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


class ModelFlopCounter(FlopCounterMode):
    """FlopCounterMode that skips the ops dispatched inside a profiled torchdet op.

    Use it inside `torchdet.ops._profiling.op_timer()`, which is what marks those ops as running.
    """

    def _count_flops(self, func_packet: Any, out: Any, args: Any, kwargs: Any) -> Any:
        if any(_profiling._active.values()):
            return out
        return super()._count_flops(func_packet, out, args, kwargs)


def count_call_flops(fn: Callable[[], object]) -> int:
    """FLOPs of the ops that ``fn()`` dispatches outside nms / roi_align (autograd as the caller set it)."""
    mapping = {torch.ops.aten.convolution_backward: conv_backward_flops}
    with _profiling.op_timer(), ModelFlopCounter(display=False, custom_mapping=mapping) as counter:
        fn()
    return int(counter.get_total_flops())


def count_flops(model: torch.nn.Module, images: List[torch.Tensor]) -> int:
    """FLOPs of one no-grad forward of ``model`` on ``images`` (a list of [3, H, W] tensors)."""
    with torch.no_grad():
        return count_call_flops(lambda: model(images))
