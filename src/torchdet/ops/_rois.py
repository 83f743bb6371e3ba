"""What the RoI pooling ops share: the RoI argument, input checks and the chunking rule.

RoIs come as torchvision takes them: a ``[K, 5]`` tensor of ``(batch_index, x1, y1, x2, y2)``
or a list with one ``[L_i, 4]`` box tensor per image (``xyxy``).
"""
from __future__ import annotations

from typing import Any, Callable, List, Sequence, Tuple, Union

import torch
from torch import Tensor

from torchdet.errors import InvalidInputError, InvalidOpInputError

BoxesArg = Union[Tensor, List[Tensor]]

_CHUNK_ELEMENTS = 1 << 24  # gathered values per chunk (64 MiB of float32)


def pair(size: Union[int, Sequence[int]], name: str, op: str) -> Tuple[int, int]:
    """``(h, w)`` from an int or a pair."""
    if isinstance(size, int):
        return size, size
    if isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(s, int) for s in size):
        return int(size[0]), int(size[1])
    if isinstance(size, (list, tuple)) and len(size) == 1 and isinstance(size[0], int):
        return int(size[0]), int(size[0])
    raise InvalidInputError(f"{op}: {name} must be an int or a pair of ints (height, width), got {size!r}")


def to_rois(boxes: BoxesArg, op: str) -> Tensor:
    """``[K, 5]`` RoIs ``(batch_index, x1, y1, x2, y2)`` from either form of the boxes argument."""
    if isinstance(boxes, Tensor):
        if boxes.dim() != 2 or boxes.shape[1] != 5:
            raise InvalidInputError(
                f"{op}: a boxes tensor must be Tensor[K, 5] (batch_index, x1, y1, x2, y2), got shape "
                f"{list(boxes.shape)}; pass a list of Tensor[L, 4] (one per image) for per-image boxes"
            )
        return boxes
    if not isinstance(boxes, (list, tuple)) or not all(isinstance(b, Tensor) for b in boxes):
        raise InvalidInputError(
            f"{op}: boxes must be a Tensor[K, 5] or a list of Tensor[L, 4], got {type(boxes).__name__}"
        )
    for i, b in enumerate(boxes):
        if b.dim() != 2 or b.shape[1] != 4:
            raise InvalidInputError(f"{op}: boxes[{i}] must have shape [L, 4] (xyxy), got {list(b.shape)}")
    if len(boxes) == 0:
        raise InvalidInputError(f"{op}: boxes is an empty list; give one Tensor[L, 4] per image")
    concatenated = torch.cat(list(boxes), dim=0)
    ids = torch.cat([torch.full_like(b[:, :1], i) for i, b in enumerate(boxes)], dim=0)
    return torch.cat([ids, concatenated], dim=1)


def check_input(input: Tensor, rois: Tensor, op: str) -> None:
    """The checks torchvision's kernels make (``RuntimeError`` there)."""
    if input.dim() != 4:
        raise InvalidOpInputError(f"{op}: input must be [B, C, H, W], got shape {list(input.shape)}")
    if not input.is_floating_point():
        raise InvalidOpInputError(f"{op}: input must be a floating-point tensor, got {input.dtype}")
    if input.dtype != rois.dtype:
        raise InvalidOpInputError(
            f"{op}: input ({input.dtype}) and boxes ({rois.dtype}) must have the same dtype; convert the boxes "
            f"with boxes.to(input.dtype)"
        )


def check_position_sensitive(channels: int, pooled: Tuple[int, int], op: str) -> int:
    """``C_out = C / (PH * PW)``, refusing channel counts that are not a multiple."""
    bins = pooled[0] * pooled[1]
    if channels % bins != 0:
        raise InvalidOpInputError(
            f"{op}: input channels must be a multiple of pooling height * pooling width ({pooled[0]} * {pooled[1]} "
            f"= {bins}), got {channels} channels"
        )
    return channels // bins


def position_sensitive_arguments(input: Tensor, boxes: Any, output_size: Any, op: str
                                 ) -> Tuple[Tuple[int, int], Tensor, int]:
    """``(pooled (PH, PW), rois [K, 5] detached, C_out)`` of a position-sensitive pool, checked."""
    pooled = pair(output_size, "output_size", op)
    rois = to_rois(boxes, op)
    check_input(input, rois, op)
    return pooled, rois.detach(), check_position_sensitive(input.shape[1], pooled, op)


def c_round(x: Tensor) -> Tensor:
    """Round half away from zero, as C's ``round`` (``torch.round`` rounds half to even)."""
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def is_exporting() -> bool:
    """True while ``torch.export`` / ``torch.compile`` run the op on fake tensors."""
    return bool(torch.compiler.is_compiling())


def window_bound(extents: Tensor, static_bound: int) -> int:
    """The padded size of a window or grid: the largest of ``extents`` (at least 1) in eager
    calls; under export ``static_bound``, or with ``static_bound <= 0`` (no static bound exists)
    a data-dependent size that the exported program computes from its inputs."""
    if extents.numel() == 0:
        return max(static_bound, 1)
    if is_exporting():
        if static_bound > 0:
            return static_bound
        bound = extents.max().clamp(min=1).item()
        torch._check(bound >= 1)
        return bound
    return max(int(extents.max()), 1)


def run_in_chunks(sizes: Tensor, per_unit: int, fn: Callable[[Tensor], Tensor]) -> Tensor:
    """Apply ``fn(indices)`` to groups of RoIs and return the results in RoI order.

    ``sizes`` (``[K]``, int) is each RoI's padded work (e.g. its window area); ``fn`` returns
    ``[len(indices), ...]``, padding each group to its own largest window (``window_bound``).
    Eager calls sort the RoIs by size and cut chunks of about ``_CHUNK_ELEMENTS / per_unit`` units
    of work, so little is padded and memory stays bounded; under export one call covers all RoIs.
    """
    count = sizes.shape[0]
    if is_exporting() or count == 0:
        return fn(torch.arange(count, device=sizes.device))
    order = torch.argsort(sizes, stable=True)
    sorted_sizes = sizes[order].tolist()
    pieces: List[Tensor] = []
    start = 0
    while start < count:
        end = start + 1
        while end < count and (end + 1 - start) * max(int(sorted_sizes[end]), 1) * per_unit <= _CHUNK_ELEMENTS:
            end += 1
        pieces.append(fn(order[start:end]))
        start = end
    out = torch.cat(pieces, dim=0)
    return out[torch.argsort(order)]


def integer_bins(start: Tensor, size: Tensor, pooled: int, limit: int) -> Tuple[Tensor, Tensor]:
    """Bin edges of the max/average RoI pools along one axis.

    Bin ``p`` of a RoI covering ``size`` pixels from ``start`` spans
    ``[floor(p * size / pooled), ceil((p + 1) * size / pooled))`` shifted by ``start`` and
    clipped to ``[0, limit]``; ``size / pooled`` is computed in ``size``'s dtype.

    Args:
        start: ``[K]`` integer-valued first pixel of each RoI (floating dtype).
        size: ``[K]`` integer-valued extent (floating dtype).
        pooled: number of bins.
        limit: the feature map's size along the axis.

    Returns:
        ``(lo, hi)``, both ``[K, pooled]`` int64; a bin is empty when ``hi <= lo``.
    """
    bin_size = size / pooled  # [K]
    p = torch.arange(pooled, device=size.device, dtype=size.dtype)
    lo = torch.floor(p[None, :] * bin_size[:, None]).long() + start.long()[:, None]
    hi = torch.ceil((p[None, :] + 1) * bin_size[:, None]).long() + start.long()[:, None]
    return lo.clamp(0, limit), hi.clamp(0, limit)


def window_indices(lo: Tensor, hi: Tensor, bound: int, limit: int) -> Tuple[Tensor, Tensor]:
    """``[K, P, bound]`` pixel indices ``lo + j`` (clamped into the map) and their validity ``< hi``."""
    j = torch.arange(bound, device=lo.device)
    index = lo[:, :, None] + j  # [K, P, bound]
    valid = index < hi[:, :, None]
    return index.clamp(max=max(limit - 1, 0)), valid
