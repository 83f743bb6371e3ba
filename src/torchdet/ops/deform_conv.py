"""Deformable convolution v1/v2 (Dai et al., 2017; Zhu et al., 2019) in pure PyTorch.

Output pixel ``(oy, ox)`` of kernel tap ``(i, j)`` reads the input at
``y = oy * stride_h - pad_h + i * dil_h + dy`` and ``x = ox * stride_w - pad_w + j * dil_w + dx``
with bilinear interpolation that treats everything outside the map as 0, scaled by the
modulation ``mask`` when one is given (DCNv2). ``offset`` holds ``(dy, dx)`` per tap and
offset group: channel ``2 * (g * kh * kw + i * kw + j)`` is ``dy`` and the next ``dx``; the input
channels are split into ``offset_groups`` consecutive groups that share offsets. This is
torchvision's layout.

How it runs (im2col with a bilinear gather): the input becomes a table of channel vectors, one
row per (image, offset group, pixel). For a chunk of output rows, every (output pixel, tap,
offset group) is one ``F.embedding_bag`` bag of its four bilinear corners, weighted by the
bilinear weights times the mask (0 for corners outside the map), which fills a column tensor
``[B, L, kh * kw * C_in]`` in one fused gather; one matmul per weight group gives the output.
``embedding_bag`` differentiates with respect to the table (the input) and the per-corner
weights (hence the offsets and the mask), so autograd needs nothing custom.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn import init

from torchdet.errors import InvalidOpInputError
from torchdet.ops._fx import fx_leaf

__all__ = ["deform_conv2d", "DeformConv2d"]

_IntOrPair = Union[int, Tuple[int, int]]
_COLUMN_ELEMENTS = 1 << 24  # sampled values per chunk (64 MiB of float32)


def _pair(value: _IntOrPair) -> Tuple[int, int]:
    if isinstance(value, int):
        return value, value
    first, second = tuple(value)
    return int(first), int(second)


def _check_shapes(
    input: Tensor,
    offset: Tensor,
    weight: Tensor,
    bias: Optional[Tensor],
    mask: Optional[Tensor],
    stride: Tuple[int, int],
    padding: Tuple[int, int],
    dilation: Tuple[int, int],
) -> Tuple[int, int, int, int]:
    """``(offset_groups, weight_groups, out_h, out_w)``, refusing what torchvision's kernel refuses."""
    for name, t in (("input", input), ("offset", offset), ("weight", weight)):
        if t.dim() != 4:
            raise InvalidOpInputError(f"deform_conv2d: {name} must be 4-D, got shape {list(t.shape)}")
    if mask is not None and mask.dim() != 4:
        raise InvalidOpInputError(f"deform_conv2d: mask must be 4-D, got shape {list(mask.shape)}")
    if min(stride) <= 0 or min(dilation) <= 0 or min(padding) < 0:
        raise InvalidOpInputError(
            f"deform_conv2d: stride {stride} and dilation {dilation} must be positive and padding {padding} "
            "non-negative"
        )
    batch, in_channels, height, width = input.shape
    out_channels, group_channels, kh, kw = weight.shape
    taps = kh * kw
    if offset.shape[1] % (2 * taps) != 0 or offset.shape[1] == 0:
        raise InvalidOpInputError(
            "deform_conv2d: the shape of the offset tensor at dimension 1 is not valid. It should be a multiple of "
            f"2 * weight.size[2] * weight.size[3].\nGot offset.shape[1]={offset.shape[1]}, while "
            f"2 * weight.size[2] * weight.size[3]={2 * taps}"
        )
    offset_groups = offset.shape[1] // (2 * taps)
    if offset.shape[0] != batch:
        raise InvalidOpInputError(f"deform_conv2d: invalid batch size of offset: {offset.shape[0]}, input has {batch}")
    if in_channels % offset_groups != 0:
        raise InvalidOpInputError(
            f"deform_conv2d: input channels {in_channels} must be divisible by the offset groups {offset_groups}"
        )
    if group_channels == 0 or in_channels % group_channels != 0:
        raise InvalidOpInputError(
            f"deform_conv2d: input channels {in_channels} must be a multiple of weight.shape[1] = {group_channels}"
        )
    weight_groups = in_channels // group_channels
    if out_channels % weight_groups != 0:
        raise InvalidOpInputError(
            f"deform_conv2d: weight.shape[0] = {out_channels} must be divisible by the groups {weight_groups}"
        )
    out_h = (height + 2 * padding[0] - (dilation[0] * (kh - 1) + 1)) // stride[0] + 1
    out_w = (width + 2 * padding[1] - (dilation[1] * (kw - 1) + 1)) // stride[1] + 1
    if out_h <= 0 or out_w <= 0:
        raise InvalidOpInputError(
            f"deform_conv2d: calculated output size too small: ({out_h}, {out_w}) for input {height}x{width}, "
            f"kernel {kh}x{kw}, padding {padding}, dilation {dilation}, stride {stride}"
        )
    if tuple(offset.shape[2:]) != (out_h, out_w):
        raise InvalidOpInputError(
            f"deform_conv2d: offset must be [B, {2 * offset_groups * taps}, {out_h}, {out_w}] (the output size), "
            f"got {list(offset.shape)}"
        )
    if mask is not None and tuple(mask.shape) != (batch, offset_groups * taps, out_h, out_w):
        raise InvalidOpInputError(
            f"deform_conv2d: mask must be [{batch}, {offset_groups * taps}, {out_h}, {out_w}] "
            f"(offset groups * kh * kw channels), got {list(mask.shape)}"
        )
    if bias is not None and tuple(bias.shape) != (out_channels,):
        raise InvalidOpInputError(f"deform_conv2d: bias must be [{out_channels}], got {list(bias.shape)}")
    return offset_groups, weight_groups, out_h, out_w


def _sampled_columns(
    table: Tensor,
    offset: Tensor,
    mask: Optional[Tensor],
    size: Tuple[int, int],
    kernel: Tuple[int, int],
    stride: Tuple[int, int],
    padding: Tuple[int, int],
    dilation: Tuple[int, int],
    rows: Tuple[int, int],
    out_w: int,
) -> Tensor:
    """``[B, R * out_w, kh * kw * C_in]`` columns of output rows ``rows[0]:rows[1]`` (R of them).

    ``table`` is the input as ``[B * og * H * W, C_in / og]`` (one row per image, offset group
    and pixel); each (pixel, tap, offset group) is one ``embedding_bag`` bag of four corners.
    """
    height, width = size
    kh, kw = kernel
    taps = kh * kw
    batch, offset_groups = offset.shape[0], offset.shape[1] // (2 * taps)
    first, last = rows
    count = last - first
    dtype, device = offset.dtype, offset.device
    oy = torch.arange(first, last, device=device, dtype=dtype) * stride[0] - padding[0]  # [R]
    ox = torch.arange(out_w, device=device, dtype=dtype) * stride[1] - padding[1]  # [out_w]
    ky = torch.arange(kh, device=device, dtype=dtype).repeat_interleave(kw) * dilation[0]  # [taps]
    kx = torch.arange(kw, device=device, dtype=dtype).repeat(kh) * dilation[1]  # [taps]
    # Bag order (b, r, x, tap, g), so the bags of one output pixel form one column row.
    off = offset[:, :, first:last].reshape(batch, offset_groups, taps, 2, count, out_w)
    off = off.permute(3, 0, 4, 5, 2, 1).contiguous()  # [2, B, R, out_w, taps, og]
    y = off[0] + (oy[:, None, None, None] + ky[None, None, :, None])  # [B, R, out_w, taps, og]
    x = off[1] + (ox[None, :, None, None] + kx[None, None, :, None])
    y0, x0 = y.floor(), x.floor()
    ly, lx = y - y0, x - x0
    # Per-axis weights of the low and high corner, 0 where that corner is off the map.
    wy0 = (1 - ly) * ((y0 >= 0) & (y0 < height)).to(dtype)
    wy1 = ly * ((y0 >= -1) & (y0 < height - 1)).to(dtype)
    wx0 = (1 - lx) * ((x0 >= 0) & (x0 < width)).to(dtype)
    wx1 = lx * ((x0 >= -1) & (x0 < width - 1)).to(dtype)
    if mask is not None:
        m = mask[:, :, first:last].reshape(batch, offset_groups, taps, count, out_w).permute(0, 3, 4, 2, 1)
        wy0, wy1 = wy0 * m, wy1 * m
    weights = torch.stack((wy0 * wx0, wy0 * wx1, wy1 * wx0, wy1 * wx1), dim=-1)  # [B, R, out_w, taps, og, 4]
    plane = torch.arange(batch * offset_groups, device=device).reshape(batch, 1, 1, 1, offset_groups)
    low = (plane * height + y0.long()) * width + x0.long()  # row of the (y0, x0) corner
    corner_step = torch.tensor([0, 1, width, width + 1], device=device)
    # Off-map corners have weight 0; clamping only keeps their row inside the table.
    entries = (low[..., None] + corner_step).clamp_(0, table.shape[0] - 1).reshape(-1)
    # 1-D entries with explicit bag offsets take embedding_bag's fastest CPU path.
    bag_starts = torch.arange(0, entries.shape[0], 4, device=device)
    sampled = F.embedding_bag(
        entries, table, bag_starts, mode="sum", per_sample_weights=weights.reshape(-1).to(table.dtype)
    )
    return sampled.reshape(batch, count * out_w, taps * table.shape[1] * offset_groups)


@fx_leaf
def deform_conv2d(
    input: Tensor,
    offset: Tensor,
    weight: Tensor,
    bias: Optional[Tensor] = None,
    stride: _IntOrPair = (1, 1),
    padding: _IntOrPair = (0, 0),
    dilation: _IntOrPair = (1, 1),
    mask: Optional[Tensor] = None,
) -> Tensor:
    """Deformable 2-D convolution; with ``mask``, modulated deformable convolution (DCNv2).

    Args:
        input: ``[B, C_in, H, W]``.
        offset: ``[B, 2 * offset_groups * kh * kw, out_h, out_w]`` sampling offsets ``(dy, dx)``.
        weight: ``[C_out, C_in / groups, kh, kw]``; ``groups = C_in / weight.shape[1]``.
        bias: ``[C_out]`` or None.
        stride, padding, dilation: int or ``(h, w)``, as in ``F.conv2d``.
        mask: ``[B, offset_groups * kh * kw, out_h, out_w]`` modulation scalars, or None.

    Returns:
        ``[B, C_out, out_h, out_w]``.
    """
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    offset_groups, weight_groups, out_h, out_w = _check_shapes(
        input, offset, weight, bias, mask, stride, padding, dilation
    )
    batch, in_channels, height, width = input.shape
    out_channels, group_channels, kh, kw = weight.shape
    taps = kh * kw
    table = input.reshape(batch, offset_groups, in_channels // offset_groups, height, width)
    table = table.permute(0, 1, 3, 4, 2).contiguous().reshape(batch * offset_groups * height * width, -1)
    # Columns are (tap, channel) per output pixel; the weight matches them as [G, (tap, c), C_out / G].
    group_weight = weight.reshape(weight_groups, out_channels // weight_groups, group_channels, taps)
    group_weight = group_weight.permute(0, 3, 2, 1).reshape(weight_groups, taps * group_channels, -1)
    rows_per_chunk = max(1, _COLUMN_ELEMENTS // max(1, batch * in_channels * taps * out_w))
    outputs = []
    for first in range(0, out_h, rows_per_chunk):
        last = min(out_h, first + rows_per_chunk)
        columns = _sampled_columns(
            table, offset, mask, (height, width), (kh, kw), stride, padding, dilation, (first, last), out_w
        )  # [B, L, taps * C_in]
        if weight_groups == 1:
            out = torch.matmul(columns, group_weight[0])  # [B, L, C_out]
        else:
            grouped = columns.reshape(batch, -1, taps, weight_groups, group_channels).permute(3, 0, 1, 2, 4)
            grouped = grouped.reshape(weight_groups, -1, taps * group_channels)  # [G, B * L, taps * cpg]
            out = torch.bmm(grouped, group_weight)  # [G, B * L, C_out / G]
            out = out.reshape(weight_groups, batch, -1, out_channels // weight_groups).permute(1, 2, 0, 3)
            out = out.reshape(batch, -1, out_channels)
        outputs.append(out)
    out = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=1)  # [B, out_h * out_w, C_out]
    if bias is not None:
        out = out + bias
    return out.permute(0, 2, 1).reshape(batch, out_channels, out_h, out_w)


class DeformConv2d(nn.Module):
    """``deform_conv2d`` with its own ``weight`` ``[C_out, C_in / groups, kh, kw]`` and ``bias``.

    ``forward(input, offset, mask=None)``; parameters are initialised as ``nn.Conv2d``'s
    (Kaiming-uniform weight, uniform bias), in the same order as torchvision.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: _IntOrPair,
        stride: _IntOrPair = 1,
        padding: _IntOrPair = 0,
        dilation: _IntOrPair = 1,
        groups: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if in_channels % groups != 0:
            raise ValueError(f"in_channels must be divisible by groups, got in_channels={in_channels}, groups={groups}")
        if out_channels % groups != 0:
            raise ValueError(
                f"out_channels must be divisible by groups, got out_channels={out_channels}, groups={groups}"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        self.dilation = _pair(dilation)
        self.groups = groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        if bias:
            self.bias: Optional[nn.Parameter] = nn.Parameter(torch.empty(out_channels))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in)
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input: Tensor, offset: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """input: [B, C_in, H, W]; offset: [B, 2*og*kh*kw, oh, ow]; mask: [B, og*kh*kw, oh, ow] or None.

        Returns [B, C_out, oh, ow].
        """
        return deform_conv2d(
            input, offset, self.weight, self.bias, stride=self.stride, padding=self.padding,
            dilation=self.dilation, mask=mask,
        )

    def __repr__(self) -> str:
        s = (
            f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        )
        s += f", padding={self.padding}" if self.padding != (0, 0) else ""
        s += f", dilation={self.dilation}" if self.dilation != (1, 1) else ""
        s += f", groups={self.groups}" if self.groups != 1 else ""
        s += ", bias=False" if self.bias is None else ""
        return s + ")"
