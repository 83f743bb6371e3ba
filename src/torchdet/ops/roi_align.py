"""RoIAlign (He et al., Mask R-CNN), pure PyTorch, numerically matching torchvision's kernel.

For each RoI the output bin ``(ph, pw)`` averages ``grid_h * grid_w`` bilinear samples taken on a
regular grid inside the bin. The sampling rules follow the reference kernel exactly:

- ``aligned=False``: RoI corners are ``box * spatial_scale`` and the RoI size is clamped to at
  least 1; ``aligned=True``: half a pixel is subtracted from the corners and nothing is clamped;
- ``sampling_ratio > 0`` gives a fixed grid; otherwise each RoI uses ``ceil(roi_size / output)``
  samples per bin in each direction, so the grid varies from RoI to RoI;
- a sample with ``y < -1``, ``y > H``, ``x < -1`` or ``x > W`` contributes 0; otherwise negative
  coordinates are raised to 0 and coordinates past the last row/column read that row/column;
- the sum is divided by ``max(grid_h * grid_w, 1)``.

How it runs: every sample reads four pixels, so each output bin is a weighted sum of
``4 * grid_h * grid_w`` pixel vectors. The feature map is viewed as a table of ``C``-vectors
(``[B*H*W, C]``, channels last) and ``F.embedding_bag(mode="sum", per_sample_weights=...)``
gathers and sums them in one fused kernel, without materialising the samples. The (pixel,
weight) entries are built per group of RoIs sharing a grid size (no padding) and laid out as one
ragged list in RoI order, so the bags come out in RoI order; RoIs are processed in chunks that
bound the entry list's memory. The table may hold several feature levels (see
``torchdet.ops.poolers``), which is how all FPN levels are pooled in one pass. The result is
differentiable with respect to ``input`` (not the boxes, as in torchvision).

Measured on CPU (``tests/ops/bench_ops.py``), this beat a sample-point gather, a window gather
followed by two batched matmuls, a separable two-stage embedding_bag and a sparse-matrix product.

With few channels and large RoIs (mask targets: one channel, 28 x 28 bins over whole objects) the
per-entry overhead dominates, and a second strategy is used instead: sum the weighted image rows
of each (RoI, channel, output row) with ``embedding_bag`` over the ``[B*C*H, W]`` rows, then apply
the x weights with one batched matmul. A rough cost model picks the strategy per call.

The op's forms (``roi_align_dispatch``, see ``torchdet.ops.dispatch``):

- reference (TorchScript, and any device or mode nothing else serves): the definition above
  on a grid padded to the largest RoI's, one ``embedding_bag`` per chunk of RoIs;
- ``"grouped"`` (eager): the ragged entry lists and the row strategy described above, with a
  faster backward;
- ``"onnx"`` (trace: ``torch.jit.trace``, the legacy ONNX exporter): ``_RoIAlignOp``, one graph
  node whose ONNX symbolic is ``RoiAlign`` (``mode="avg"``; adaptive ``sampling_ratio <= 0``
  becomes 0; ``aligned`` maps to ``coordinate_transformation_mode`` from opset 16, and before
  that to a half-pixel shift of the boxes);
- ``"custom_op"`` (compile: ``torch.export``, ``torch.compile``): ``torch.ops.torchdet.roi_align``,
  an opaque op with a fake implementation (``[K, C, h, w]`` for ``K`` rois, ``K`` may be
  unbacked) and a backward, so no data-dependent Python is traced. ``torch.fx`` symbolic
  tracing records ``roi_align`` itself as one call (``torch.fx.wrap``).
"""
from __future__ import annotations

from typing import List, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.jit.annotations import BroadcastingList2

from torchdet.errors import InvalidInputError
from torchdet.ops._profiling import profiled
from torchdet.ops.dispatch import OpDispatcher

__all__ = ["roi_align", "RoIAlign", "roi_align_dispatch"]

BoxesArg = Union[Tensor, List[Tensor]]
Geometry = Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]  # start_y, start_x, bin_h, bin_w, grid_h, grid_w

_MAX_ENTRIES_PER_CHUNK = 1 << 22  # gathered (pixel, weight) pairs per embedding_bag call


def _pair(size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(size, int):
        return size, size
    size = tuple(int(s) for s in size)
    if len(size) == 1:
        return size[0], size[0]
    if len(size) != 2:
        raise ValueError(f"output_size must be an int or a pair (height, width), got {size}")
    return size  # type: ignore[return-value]


def _boxes_to_rois(boxes: List[Tensor]) -> Tensor:
    """List of per-image ``[L_i, 4]`` boxes -> ``[sum L_i, 5]`` rows ``(image index, x1, y1, x2, y2)``."""
    ids: List[Tensor] = []
    for i, b in enumerate(boxes):
        if b.dim() != 2 or b.shape[-1] != 4:
            raise InvalidInputError(f"roi_align: boxes[{i}] must have shape [L, 4], got {list(b.shape)}")
        ids.append(torch.full_like(b[:, :1], i))
    if len(boxes) == 0:
        return torch.zeros((0, 5))
    return torch.cat([torch.cat(ids, dim=0), torch.cat(boxes, dim=0)], dim=1)


def _check_rois(rois: Tensor) -> None:
    if rois.dim() != 2 or rois.shape[1] != 5:
        raise InvalidInputError(
            f"roi_align: boxes must be a Tensor[K, 5] of (batch index, x1, y1, x2, y2) or a list of "
            f"Tensor[L, 4], got a tensor of shape {list(rois.shape)}"
        )


def _axis_samples(
    start: Tensor, bin_size: Tensor, grid: Tensor, max_grid: int, pooled: int, length: Tensor
) -> Tuple[Tensor, Tensor]:
    """Bilinear taps along one axis for every (RoI, bin, sample).

    Args:
        start: ``[K]`` RoI start coordinate (feature-map pixels).
        bin_size: ``[K]`` bin size along the axis.
        grid: ``[K]`` int samples per bin along the axis (0 allowed).
        max_grid: at least ``grid.max()``; samples past a RoI's own grid get zero weight.
        pooled: number of output bins along the axis.
        length: ``[K]`` int feature-map size along the axis.

    Returns:
        ``(index, weight)``, both ``[K, pooled, max_grid, 2]``: the low and high pixel of each
        sample and their interpolation weights (zero for samples that contribute nothing).
    """
    dtype = start.dtype
    bins = torch.arange(pooled, dtype=dtype, device=start.device)[None, :, None]  # [1, P, 1]
    steps = torch.arange(max_grid, device=start.device)  # [G]
    start, bin_size = start[:, None, None], bin_size[:, None, None]  # [K, 1, 1]
    grid, length = grid[:, None, None], length[:, None, None]  # [K, 1, 1]
    # Same operation order as the reference kernel, so positions agree to the last bit.
    pos = start + bins * bin_size + (steps.to(dtype) + 0.5) * bin_size / grid.clamp(min=1).to(dtype)  # [K, P, G]
    valid = (steps < grid) & (pos >= -1.0) & (pos <= length.to(dtype))
    pos = torch.where(valid, pos.clamp(min=0.0), torch.zeros((), dtype=dtype, device=pos.device))
    low = pos.long()  # truncation == floor, pos >= 0
    at_end = low >= length - 1
    low = torch.where(at_end, length - 1, low)
    high = torch.where(at_end, low, low + 1)
    frac = torch.where(at_end, torch.zeros_like(pos), pos - low.to(dtype))
    zero = torch.zeros_like(pos)
    index = torch.stack((low, high), dim=-1)  # [K, P, G, 2]
    weight = torch.stack((torch.where(valid, 1.0 - frac, zero), torch.where(valid, frac, zero)), dim=-1)
    return index, weight


def _roi_geometry(
    rois: Tensor, pooled_h: int, pooled_w: int, spatial_scale: Tensor, sampling_ratio: int, aligned: bool
) -> Geometry:
    """Start, bin size and samples per bin of every RoI, in both directions.

    Args:
        rois: ``[K, 5]`` ``(batch index, x1, y1, x2, y2)`` in the compute dtype.
        spatial_scale: ``[K]`` or scalar tensor, same dtype.

    Returns:
        ``(start_y, start_x, bin_h, bin_w, grid_h, grid_w)``, each ``[K]``.
    """
    offset = torch.tensor(0.5 if aligned else 0.0, dtype=rois.dtype, device=rois.device)
    start_x = rois[:, 1] * spatial_scale - offset
    start_y = rois[:, 2] * spatial_scale - offset
    roi_w = rois[:, 3] * spatial_scale - offset - start_x
    roi_h = rois[:, 4] * spatial_scale - offset - start_y
    if not aligned:
        roi_w = roi_w.clamp(min=1.0)
        roi_h = roi_h.clamp(min=1.0)
    bin_h = roi_h / pooled_h
    bin_w = roi_w / pooled_w
    if sampling_ratio > 0:
        grid_h = torch.full_like(rois[:, 0], sampling_ratio, dtype=torch.long)
        grid_w = grid_h
    else:
        grid_h = torch.ceil(roi_h / pooled_h).long()
        grid_w = torch.ceil(roi_w / pooled_w).long()
    return start_y, start_x, bin_h, bin_w, grid_h, grid_w


def _chunk_bounds(entries_per_roi: Tensor, budget: int) -> List[Tuple[int, int]]:
    """Consecutive RoI ranges whose total gathered entries stay within ``budget`` (at least one RoI each)."""
    ends: List[int] = torch.cumsum(entries_per_roi, 0).tolist()
    ranges: List[Tuple[int, int]] = []
    begin, used = 0, 0
    for i, total in enumerate(ends):
        if i > begin and total - used > budget:
            ranges.append((begin, i))
            begin, used = i, ends[i - 1]
    ranges.append((begin, len(ends)))
    return ranges


def _pool_chunk(
    table: Tensor,
    base: Tensor,
    height: Tensor,
    width: Tensor,
    geometry: Geometry,
    pooled_h: int,
    pooled_w: int,
) -> Tensor:
    """RoIAlign for one chunk of ``k`` RoIs: ``[k * ph * pw, C]`` bins in RoI order.

    Every output bin is a bag of ``4 * grid_h * grid_w`` (table row, weight) entries. RoIs with
    the same grid are built together (no padding) and written into one ragged entry list in RoI
    order, then a single ``embedding_bag`` sums all bags.
    """
    start_y, start_x, bin_h, bin_w, grid_h, grid_w = geometry
    device, dtype = table.device, table.dtype
    k = base.numel()
    bins = pooled_h * pooled_w
    taps = 4 * grid_h * grid_w  # [k] entries per bin
    roi_entries = taps * bins
    roi_offset = torch.cumsum(roi_entries, 0) - roi_entries  # [k] first entry of each RoI
    total = int(roi_entries.sum())
    entries = torch.zeros(total, dtype=torch.int64, device=device)
    weights = torch.zeros(total, dtype=dtype, device=device)
    inv_count = 1.0 / (grid_h * grid_w).clamp(min=1).to(dtype)  # [k]
    group_key = grid_h * (int(grid_w.max()) + 1) + grid_w
    keys: List[int] = torch.unique(group_key).tolist()
    for key in keys:
        members = torch.nonzero(group_key == key).flatten()
        gh, gw = int(grid_h[members[0]]), int(grid_w[members[0]])
        if gh * gw == 0:
            continue  # empty grid: the bins stay zero
        m = members.numel()
        y_index, y_weight = _axis_samples(
            start_y[members], bin_h[members], grid_h[members], gh, pooled_h, height[members]
        )
        x_index, x_weight = _axis_samples(
            start_x[members], bin_w[members], grid_w[members], gw, pooled_w, width[members]
        )
        row_start = base[members].view(m, 1, 1) + y_index.view(m, pooled_h, -1) * width[members].view(m, 1, 1)
        y_weight = y_weight.view(m, pooled_h, -1) * inv_count[members].view(m, 1, 1)  # [m, ph, 2*gh]
        # [m, ph, pw, 2*gh, 2*gw]: all taps of every bin, bin-major as embedding_bag expects.
        group_entries = row_start.view(m, pooled_h, 1, -1, 1) + x_index.view(m, 1, pooled_w, 1, -1)
        group_weights = y_weight.view(m, pooled_h, 1, -1, 1) * x_weight.view(m, 1, pooled_w, 1, -1)
        where = (roi_offset[members].view(m, 1) + torch.arange(bins * 4 * gh * gw, device=device)).flatten()
        entries[where] = group_entries.flatten()
        weights[where] = group_weights.flatten()
    bag_offsets = (roi_offset.view(k, 1) + torch.arange(bins, device=device) * taps.view(k, 1)).flatten()
    return _weighted_bag_sum(entries, table, bag_offsets, weights)


def _weighted_bag_sum(entries: Tensor, table: Tensor, offsets: Tensor, weights: Tensor) -> Tensor:
    """``embedding_bag(mode="sum", per_sample_weights=weights)``, with a faster backward."""
    if not table.requires_grad:
        return F.embedding_bag(entries, table, offsets, mode="sum", per_sample_weights=weights)
    return _WeightedBagSum.apply(entries, table, offsets, weights)


class _WeightedBagSum(torch.autograd.Function):
    """Weighted bag sums whose backward is itself one weighted bag sum.

    ``out[bag] = sum_e weights[e] * table[entries[e]]`` over the bag's entries, so
    ``grad_table[row] = sum_e weights[e] * grad_out[bag(e)]`` over the entries reading ``row``:
    the same operation with the roles of rows and bags swapped. Sorting the entries by table
    row once gives every row's bag (empty bags sum to zero), and ``embedding_bag`` writes the
    dense gradient directly. Autograd's embedding_bag backward sorts too, but then zero-fills
    and scatters row by row, which is several times slower for RoIAlign's ~10^6 entries.
    """

    @staticmethod
    def forward(ctx, entries: Tensor, table: Tensor, offsets: Tensor, weights: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(entries, offsets, weights)
        ctx.rows = table.shape[0]
        return F.embedding_bag(entries, table, offsets, mode="sum", per_sample_weights=weights)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        entries, offsets, weights = ctx.saved_tensors
        sizes = torch.diff(offsets, append=offsets.new_full((1,), entries.numel()))
        bag = torch.repeat_interleave(torch.arange(offsets.numel(), device=offsets.device), sizes)  # [E]
        rows, order = torch.sort(entries)
        row_offsets = torch.searchsorted(rows, torch.arange(ctx.rows, device=rows.device))
        grad_table = F.embedding_bag(
            bag[order], grad_out.contiguous(), row_offsets, mode="sum", per_sample_weights=weights[order]
        )
        return None, grad_table, None, None


def _pool_bins(
    table: Tensor,
    base: Tensor,
    height: Tensor,
    width: Tensor,
    geometry: Geometry,
    output_size: Tuple[int, int],
) -> Tensor:
    """RoIAlign over a pixel table that may hold several images and feature levels.

    Args:
        table: ``[R, C]`` pixel vectors; RoI ``i`` reads the ``height[i] x width[i]`` map whose
            row-major pixels start at table row ``base[i]``.
        base, height, width: ``[K]`` int64.
        geometry: from ``_roi_geometry``, in the table's dtype.
        output_size: ``(ph, pw)``.

    Returns:
        ``[K, ph, pw, C]`` pooled bins (channels last).
    """
    pooled_h, pooled_w = output_size
    grid_h, grid_w = geometry[4], geometry[5]
    entries_per_roi = 4 * grid_h * grid_w * (pooled_h * pooled_w)
    pooled: List[Tensor] = []
    for a, b in _chunk_bounds(entries_per_roi, _MAX_ENTRIES_PER_CHUNK):
        pooled.append(_pool_chunk(table, base[a:b], height[a:b], width[a:b], _slice(geometry, a, b), pooled_h, pooled_w))
    bins = pooled[0] if len(pooled) == 1 else torch.cat(pooled, dim=0)  # [K * ph * pw, C]
    return bins.view(base.shape[0], pooled_h, pooled_w, table.shape[1])


def _pool_rows_chunk(
    rows: Tensor,
    batch_index: Tensor,
    shape: Tuple[int, int, int],
    geometry: Geometry,
    pooled_h: int,
    pooled_w: int,
) -> Tensor:
    """RoIAlign for one chunk of ``k`` RoIs from image rows: ``[k, C, ph, pw]``.

    Stage 1 sums the ``2 * grid_h`` weighted image rows of every (RoI, channel, output row) with one
    ``embedding_bag`` over the ``[B*C*H, W]`` row table; stage 2 applies the x weights as a dense
    ``[W, pw]`` matrix per RoI in one batched matmul.
    """
    channels, height, width = shape
    start_y, start_x, bin_h, bin_w, grid_h, grid_w = geometry
    device, dtype = rows.device, rows.dtype
    k = batch_index.numel()
    row_taps = 2 * grid_h  # [k] entries per bag
    roi_entries = row_taps * (channels * pooled_h)
    roi_offset = torch.cumsum(roi_entries, 0) - roi_entries
    entries = torch.zeros(int(roi_entries.sum()), dtype=torch.int64, device=device)
    weights = torch.zeros(entries.shape, dtype=dtype, device=device)
    inv_count = 1.0 / (grid_h * grid_w).clamp(min=1).to(dtype)
    channel = torch.arange(channels, device=device).view(1, channels, 1, 1)
    grids: List[int] = torch.unique(grid_h).tolist()
    for gh in grids:
        if gh == 0:
            continue
        members = torch.nonzero(grid_h == gh).flatten()
        m = members.numel()
        y_index, y_weight = _axis_samples(
            start_y[members], bin_h[members], grid_h[members], gh, pooled_h, torch.full_like(members, height)
        )
        row = (batch_index[members].view(m, 1, 1, 1) * channels + channel) * height + y_index.view(m, 1, pooled_h, -1)
        weight = (y_weight.view(m, 1, pooled_h, -1) * inv_count[members].view(m, 1, 1, 1)).expand_as(row)
        where = (roi_offset[members].view(m, 1) + torch.arange(channels * pooled_h * 2 * gh, device=device)).flatten()
        entries[where] = row.flatten()
        weights[where] = weight.flatten()
    bag_offsets = roi_offset.view(k, 1) + torch.arange(channels * pooled_h, device=device) * row_taps.view(k, 1)
    summed_rows = F.embedding_bag(entries, rows, bag_offsets.flatten(), mode="sum", per_sample_weights=weights)
    x_index, x_weight = _axis_samples(
        start_x, bin_w, grid_w, max(int(grid_w.max()), 1), pooled_w, torch.full_like(grid_w, width)
    )
    x_matrix = torch.zeros(k, pooled_w, width, dtype=dtype, device=device)
    x_matrix.scatter_add_(2, x_index.view(k, pooled_w, -1), x_weight.view(k, pooled_w, -1))  # [k, pw, W]
    pooled = torch.bmm(summed_rows.view(k, channels * pooled_h, width), x_matrix.transpose(1, 2))
    return pooled.view(k, channels, pooled_h, pooled_w)


def _rows_path_is_cheaper(
    geometry: Geometry, shape: Tuple[int, int, int, int], output_size: Tuple[int, int]
) -> bool:
    """Rough cost model (in float multiply-adds) of the two strategies.

    The pixel path gathers ``4 * grid_h * grid_w`` C-vectors per bin and transposes input and
    output; the row path gathers ``2 * grid_h`` W-rows per (channel, output row) and runs a matmul
    over the full width. Rows win for few channels and large RoIs (e.g. mask targets, C = 1).
    """
    batch, channels, height, width = shape
    pooled_h, pooled_w = output_size
    grid_h, grid_w = geometry[4].double(), geometry[5].double()
    num_rois = grid_h.numel()
    per_entry = 32.0  # fixed cost of one gathered entry, in multiply-adds
    pixel = float((4 * grid_h * grid_w).sum()) * pooled_h * pooled_w * (channels + per_entry)
    pixel += 2.0 * (batch * height * width + num_rois * pooled_h * pooled_w) * channels
    rows = float((2 * grid_h).sum()) * channels * pooled_h * (width + per_entry)
    rows += num_rois * channels * pooled_h * width * (1.0 + 0.25 * pooled_w)
    return rows < pixel


def _pool_rows(input: Tensor, rois: Tensor, geometry: Geometry, output_size: Tuple[int, int]) -> Tensor:
    """RoIAlign through image rows (see ``_pool_rows_chunk``). ``[K, C, ph, pw]``."""
    batch, channels, height, width = input.shape
    pooled_h, pooled_w = output_size
    rows = input.contiguous().view(batch * channels * height, width)
    batch_index = rois[:, 0].long()
    per_roi = (2 * geometry[4] + width) * (channels * pooled_h)
    pooled: List[Tensor] = []
    for a, b in _chunk_bounds(per_roi, _MAX_ENTRIES_PER_CHUNK):
        pooled.append(
            _pool_rows_chunk(rows, batch_index[a:b], (channels, height, width), _slice(geometry, a, b), pooled_h, pooled_w)
        )
    return torch.cat(pooled)


def _slice(geometry: Geometry, a: int, b: int) -> Geometry:
    """The geometry of RoIs ``a:b``."""
    start_y, start_x, bin_h, bin_w, grid_h, grid_w = geometry
    return start_y[a:b], start_x[a:b], bin_h[a:b], bin_w[a:b], grid_h[a:b], grid_w[a:b]


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype == torch.float32 or dtype == torch.float64 else torch.float32


def _pixel_table(feature: Tensor, dtype: torch.dtype) -> Tensor:
    """``[B, C, H, W]`` -> ``[B*H*W, C]`` (a free view when ``feature`` is channels_last)."""
    batch, channels, height, width = feature.shape
    return feature.to(dtype).permute(0, 2, 3, 1).contiguous().view(batch * height * width, channels)


def _pixel_tables(features: List[Tensor], dtype: torch.dtype) -> Tensor:
    """Several ``[B, C, H_l, W_l]`` maps -> one ``[sum B*H_l*W_l, C]`` table, levels in order.

    Same as concatenating ``_pixel_table`` of each level, but each level is transposed straight
    into its rows (one copy of the maps, not two); in eager mode the backward hands each level
    its rows of the gradient as a view, without the clone autograd's slice copies would make.
    """
    if not any(f.requires_grad for f in features):
        return _fill_pixel_table(features, dtype)
    return _PixelTables.apply(dtype, *features)


def _fill_pixel_table(features: List[Tensor], dtype: torch.dtype) -> Tensor:
    first = features[0]
    channels = first.shape[1]
    rows = 0
    for f in features:
        rows += f.shape[0] * f.shape[2] * f.shape[3]
    table = torch.empty((rows, channels), dtype=dtype, device=first.device)
    start = 0
    for f in features:
        batch, _, height, width = f.shape
        stop = start + batch * height * width
        table[start:stop].view(batch, height, width, channels).copy_(f.detach().permute(0, 2, 3, 1))
        start = stop
    return table


class _PixelTables(torch.autograd.Function):
    """``_pixel_tables`` with a backward that returns each level's gradient rows as a view
    (channels-last strides, as autograd through ``permute`` would give)."""

    @staticmethod
    def forward(ctx, dtype: torch.dtype, *features: Tensor) -> Tensor:  # type: ignore[override]
        ctx.levels = [(f.shape, f.dtype) for f in features]
        return _fill_pixel_table(list(features), dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        grads, start = [], 0
        for (batch, channels, height, width), dtype in ctx.levels:
            stop = start + batch * height * width
            grads.append(grad[start:stop].view(batch, height, width, channels).permute(0, 3, 1, 2).to(dtype))
            start = stop
        return (None, *grads)


def _check_batch_index(rois: Tensor, batch: int) -> None:
    """Every RoI's image index lies in ``[0, batch)`` (reads the values: eager and TorchScript only)."""
    if rois.shape[0] == 0:
        return
    batch_index = rois[:, 0]
    if bool((batch_index < 0).any()) or bool((batch_index >= batch).any()):
        raise InvalidInputError(
            f"roi_align: box batch indices must lie in [0, {batch - 1}] for an input of {batch} images, "
            f"got values in [{float(batch_index.min())}, {float(batch_index.max())}]"
        )


def _reference_taps(
    rois: Tensor, geometry: Geometry, max_grid: Tuple[int, int], pooled: Tuple[int, int], shape: Tuple[int, int],
    a: int, b: int,
) -> Tuple[Tensor, Tensor]:
    """Pixel-table rows and weights of every tap of every bin of RoIs ``a:b``.

    Args:
        rois: ``[K, 5]`` in the compute dtype; geometry: from ``_roi_geometry``.
        max_grid: ``(gh, gw)`` at least every RoI's grid (extra samples get weight zero).
        pooled: ``(ph, pw)``; shape: the feature map's ``(H, W)``.

    Returns:
        ``(entries, weights)``, both ``[(b - a) * ph * pw, 4 * gh * gw]``, bins in RoI-major order.
    """
    start_y, start_x, bin_h, bin_w, grid_h, grid_w = geometry
    pooled_h, pooled_w = pooled
    height, width = shape
    k = b - a
    y_index, y_weight = _axis_samples(start_y[a:b], bin_h[a:b], grid_h[a:b], max_grid[0], pooled_h,
                                      torch.full_like(grid_h[a:b], height))
    x_index, x_weight = _axis_samples(start_x[a:b], bin_w[a:b], grid_w[a:b], max_grid[1], pooled_w,
                                      torch.full_like(grid_w[a:b], width))
    base = (rois[a:b, 0].long() * (height * width)).view(k, 1, 1, 1, 1)
    # [k, ph, pw, 2*gh, 2*gw]: table row and weight of every tap of every bin.
    entries = base + y_index.view(k, pooled_h, 1, -1, 1) * width + x_index.view(k, 1, pooled_w, 1, -1)
    inv_count = 1.0 / (grid_h[a:b] * grid_w[a:b]).clamp(min=1).to(y_weight.dtype)
    y_weight = y_weight.view(k, pooled_h, -1) * inv_count.view(k, 1, 1)
    weights = y_weight.view(k, pooled_h, 1, -1, 1) * x_weight.view(k, 1, pooled_w, 1, -1)
    taps = 4 * max_grid[0] * max_grid[1]
    return entries.reshape(-1, taps), weights.reshape(-1, taps)


def _reference_setup(
    rois: Tensor, pooled_h: int, pooled_w: int, spatial_scale: float, sampling_ratio: int, aligned: bool,
    dtype: torch.dtype, device: torch.device,
) -> Tuple[Tensor, Geometry, Tuple[int, int]]:
    """The reference's rois (compute dtype), geometry and padded grid ``(gh, gw)``."""
    rois = rois.detach().to(device=device, dtype=dtype)
    scale = torch.tensor(spatial_scale, dtype=dtype, device=device)
    geometry = _roi_geometry(rois, pooled_h, pooled_w, scale, sampling_ratio, aligned)
    return rois, geometry, (max(int(geometry[4].max()), 1), max(int(geometry[5].max()), 1))


def _roi_align_reference(
    input: Tensor, rois: Tensor, pooled_h: int, pooled_w: int, spatial_scale: float, sampling_ratio: int,
    aligned: bool,
) -> Tensor:
    """RoIAlign by its definition: every bin a weighted sum of its ``4 * grid_h * grid_w`` taps.

    Every RoI gets the largest RoI's grid; the extra samples have weight zero. The taps of all bins
    are one ``[bins, taps]`` index/weight pair for ``embedding_bag`` over the channels-last pixel
    table, in chunks of RoIs that bound the entry lists' memory. Scriptable, differentiable in
    ``input``, any device; a trace keeps it right at other RoI counts with a fixed
    ``sampling_ratio > 0`` (an adaptive grid's padded size is read as a Python int).

    Args:
        input: ``[B, C, H, W]``; rois: ``[K, 5]`` ``(batch index, x1, y1, x2, y2)``.

    Returns:
        ``[K, C, pooled_h, pooled_w]``, the dtype of ``input``.
    """
    _check_batch_index(rois, input.shape[0])
    batch, channels, height, width = input.shape
    num_rois = rois.shape[0]
    if num_rois == 0 or height == 0 or width == 0:
        return input.new_zeros((num_rois, channels, pooled_h, pooled_w))
    dtype = _compute_dtype(input.dtype)
    rois, geometry, grid = _reference_setup(rois, pooled_h, pooled_w, spatial_scale, sampling_ratio, aligned,
                                            dtype, input.device)
    table = _pixel_table(input, dtype)  # [B*H*W, C]
    step = max(1, (1 << 22) // (pooled_h * pooled_w * 4 * grid[0] * grid[1]))  # a literal for TorchScript
    pooled: List[Tensor] = []
    for a in range(0, num_rois, step):
        entries, weights = _reference_taps(rois, geometry, grid, (pooled_h, pooled_w), (height, width), a,
                                           min(a + step, num_rois))
        pooled.append(F.embedding_bag(entries, table, mode="sum", per_sample_weights=weights))
    bins = torch.cat(pooled).view(num_rois, pooled_h, pooled_w, channels)
    return bins.permute(0, 3, 1, 2).contiguous().to(input.dtype)


def _roi_align_input_grad(
    grad: Tensor, rois: Tensor, input_shape: List[int], pooled_h: int, pooled_w: int, spatial_scale: float,
    sampling_ratio: int, aligned: bool,
) -> Tensor:
    """Gradient of ``roi_align`` with respect to its input (it is linear in the input): every tap's
    weight times its bin's gradient, added to the tap's pixel. ``grad [K, C, ph, pw]`` -> ``[B, C, H, W]``."""
    batch, channels, height, width = input_shape[0], input_shape[1], input_shape[2], input_shape[3]
    num_rois = rois.shape[0]
    dtype = _compute_dtype(grad.dtype)
    table = torch.zeros((batch * height * width, channels), dtype=dtype, device=grad.device)
    if num_rois > 0 and height > 0 and width > 0:
        rois, geometry, grid = _reference_setup(rois, pooled_h, pooled_w, spatial_scale, sampling_ratio, aligned,
                                                dtype, grad.device)
        bins = pooled_h * pooled_w
        grad_bins = grad.to(dtype).permute(0, 2, 3, 1).reshape(num_rois * bins, channels)
        step = max(1, (1 << 22) // (bins * 4 * grid[0] * grid[1] * max(channels, 1)))
        for a in range(0, num_rois, step):
            b = min(a + step, num_rois)
            entries, weights = _reference_taps(rois, geometry, grid, (pooled_h, pooled_w), (height, width), a, b)
            contributions = weights[:, :, None] * grad_bins[a * bins:b * bins, None, :]  # [bins, taps, C]
            table.index_add_(0, entries.reshape(-1), contributions.reshape(-1, channels))
    return table.view(batch, height, width, channels).permute(0, 3, 1, 2).contiguous().to(grad.dtype)


roi_align_dispatch = OpDispatcher("roi_align", reference=_roi_align_reference)


@roi_align_dispatch.register("grouped", modes=("eager",))
def _roi_align_grouped(
    input: Tensor, rois: Tensor, pooled_h: int, pooled_w: int, spatial_scale: float, sampling_ratio: int,
    aligned: bool,
) -> Tensor:
    """The reference's values by the grouped pixel-table or the row strategy, whichever the cost
    model finds cheaper (see the module docstring). ``[K, C, pooled_h, pooled_w]``."""
    _check_batch_index(rois, input.shape[0])
    batch, channels, height, width = input.shape
    num_rois = rois.shape[0]
    if num_rois == 0 or height == 0 or width == 0:
        return input.new_zeros((num_rois, channels, pooled_h, pooled_w))
    dtype = _compute_dtype(input.dtype)
    rois = rois.detach().to(device=input.device, dtype=dtype)
    scale = torch.tensor(spatial_scale, dtype=dtype, device=input.device)
    geometry = _roi_geometry(rois, pooled_h, pooled_w, scale, sampling_ratio, aligned)
    if _rows_path_is_cheaper(geometry, (batch, channels, height, width), (pooled_h, pooled_w)):
        return _pool_rows(input.to(dtype), rois, geometry, (pooled_h, pooled_w)).to(input.dtype)
    table = _pixel_table(input, dtype)
    base = rois[:, 0].long() * (height * width)  # [K] first table row of each RoI's image
    bins = _pool_bins(
        table, base, torch.full_like(base, height), torch.full_like(base, width), geometry, (pooled_h, pooled_w)
    )
    return bins.permute(0, 3, 1, 2).contiguous().to(input.dtype)


class _RoIAlignOp(torch.autograd.Function):
    """``roi_align`` on ``[K, 5]`` rois as one traced node, ONNX ``RoiAlign`` symbolic."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, input: Tensor, rois: Tensor, pooled_h: int, pooled_w: int, spatial_scale: float,
        sampling_ratio: int, aligned: bool,
    ) -> Tensor:
        state = torch._C._get_tracing_state()  # the graph gets the symbolic only, not these ops
        torch._C._set_tracing_state(None)
        try:
            return _roi_align_grouped(input, rois, pooled_h, pooled_w, spatial_scale, sampling_ratio, aligned)
        finally:
            torch._C._set_tracing_state(state)

    @staticmethod
    def symbolic(  # type: ignore[no-untyped-def]
        g, input, rois, pooled_h: int, pooled_w: int, spatial_scale: float, sampling_ratio: int, aligned: bool
    ):
        def const(value: Tensor):  # type: ignore[no-untyped-def]
            return g.op("Constant", value_t=value)

        batch_indices = g.op("Gather", rois, const(torch.tensor(0, dtype=torch.int64)), axis_i=1)  # [K]
        batch_indices = g.op("Cast", batch_indices, to_i=7)  # int64
        boxes = g.op("Gather", rois, const(torch.tensor([1, 2, 3, 4], dtype=torch.int64)), axis_i=1)  # [K, 4]
        opset = int(getattr(g, "opset", 11))
        attrs = dict(
            mode_s="avg", output_height_i=int(pooled_h), output_width_i=int(pooled_w),
            spatial_scale_f=float(spatial_scale), sampling_ratio_i=max(int(sampling_ratio), 0),
        )
        if opset >= 16:
            attrs["coordinate_transformation_mode_s"] = "half_pixel" if aligned else "output_half_pixel"
        elif aligned:
            boxes = g.op("Sub", boxes, const(torch.tensor(0.5 / float(spatial_scale), dtype=torch.float32)))
        return g.op("RoiAlign", input, boxes, batch_indices, **attrs)


@roi_align_dispatch.register("onnx", modes=("trace",))
def _roi_align_onnx(
    input: Tensor, rois: Tensor, pooled_h: int, pooled_w: int, spatial_scale: float, sampling_ratio: int,
    aligned: bool,
) -> Tensor:
    """One traced ``RoiAlign`` node (an inference graph: no gradient is recorded)."""
    with torch.no_grad():
        return _RoIAlignOp.apply(
            input, rois.to(dtype=input.dtype), pooled_h, pooled_w, float(spatial_scale), int(sampling_ratio),
            bool(aligned),
        )


@torch.library.custom_op("torchdet::roi_align", mutates_args=())
def _roi_align_library_op(
    input: Tensor, rois: Tensor, pooled_height: int, pooled_width: int, spatial_scale: float,
    sampling_ratio: int, aligned: bool,
) -> Tensor:
    """``torch.ops.torchdet.roi_align``: ``[B, C, H, W]``, ``[K, 5]`` -> ``[K, C, pooled_height, pooled_width]``."""
    return _roi_align_grouped(input, rois, pooled_height, pooled_width, spatial_scale, sampling_ratio, aligned)


@_roi_align_library_op.register_fake
def _(input: Tensor, rois: Tensor, pooled_height: int, pooled_width: int, spatial_scale: float,
      sampling_ratio: int, aligned: bool) -> Tensor:
    return input.new_empty((rois.shape[0], input.shape[1], pooled_height, pooled_width))


@torch.library.custom_op("torchdet::roi_align_backward", mutates_args=())
def _roi_align_backward_op(
    grad: Tensor, rois: Tensor, batch: int, channels: int, height: int, width: int, pooled_height: int,
    pooled_width: int, spatial_scale: float, sampling_ratio: int, aligned: bool,
) -> Tensor:
    """Gradient of ``torchdet::roi_align`` with respect to its input: ``[B, C, H, W]``."""
    return _roi_align_input_grad(grad, rois, [batch, channels, height, width], pooled_height, pooled_width,
                                 spatial_scale, sampling_ratio, aligned)


@_roi_align_backward_op.register_fake
def _(grad: Tensor, rois: Tensor, batch: int, channels: int, height: int, width: int, pooled_height: int,
      pooled_width: int, spatial_scale: float, sampling_ratio: int, aligned: bool) -> Tensor:
    return grad.new_empty((batch, channels, height, width))


def _roi_align_setup_context(ctx, inputs, output) -> None:  # type: ignore[no-untyped-def]
    input, rois, *params = inputs
    ctx.save_for_backward(rois)
    ctx.input_shape = tuple(input.shape)
    ctx.params = params


def _roi_align_library_backward(ctx, grad: Tensor):  # type: ignore[no-untyped-def]
    (rois,) = ctx.saved_tensors
    grad_input = _roi_align_backward_op(grad.contiguous(), rois, *ctx.input_shape, *ctx.params)
    return (grad_input,) + (None,) * 6


_roi_align_library_op.register_autograd(_roi_align_library_backward, setup_context=_roi_align_setup_context)


@roi_align_dispatch.register("custom_op", modes=("compile",))
def _roi_align_custom_op(
    input: Tensor, rois: Tensor, pooled_h: int, pooled_w: int, spatial_scale: float, sampling_ratio: int,
    aligned: bool,
) -> Tensor:
    """``torch.ops.torchdet.roi_align``: one opaque node for torch.export and torch.compile."""
    return torch.ops.torchdet.roi_align(
        input, rois.to(dtype=input.dtype), pooled_h, pooled_w, float(spatial_scale), int(sampling_ratio),
        bool(aligned),
    )


@torch.fx.wrap
def roi_align(
    input: Tensor,
    boxes: BoxesArg,
    output_size: BroadcastingList2[int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """Pool a fixed-size feature for each region of interest.

    Args:
        input: ``[B, C, H, W]`` feature maps.
        boxes: ``Tensor[K, 5]`` rows ``(batch index, x1, y1, x2, y2)``, or a list of ``B``
            tensors ``[L_i, 4]`` of ``(x1, y1, x2, y2)`` per image. Coordinates are in the input
            image's frame; ``spatial_scale`` maps them onto the feature map.
        output_size: ``h`` or ``(h, w)`` of the pooled output.
        spatial_scale: feature-map size over image size (e.g. ``1/16``).
        sampling_ratio: samples per bin in each direction; ``<= 0`` means adaptive,
            ``ceil(roi_size / output_size)`` per RoI.
        aligned: subtract half a pixel from the box corners (pixel-centre alignment).

    Returns:
        ``[K, C, h, w]`` pooled features, same dtype and device as ``input``.

    Raises:
        InvalidInputError: (a ``ValueError`` and an ``AssertionError``) for misshapen input or
            boxes, or batch indices outside the input's batch.
    """
    if input.dim() != 4:
        raise InvalidInputError(f"roi_align expects input of shape [B, C, H, W], got {list(input.shape)}")
    if torch.jit.is_scripting():
        rois = boxes if isinstance(boxes, Tensor) else _boxes_to_rois(boxes)
        _check_rois(rois)
        return _roi_align_reference(input, rois, output_size[0], output_size[1], spatial_scale, sampling_ratio, aligned)
    return _roi_align_dispatched(input, boxes, output_size, spatial_scale, sampling_ratio, aligned)


@torch.jit.unused
@profiled("roi_align")
def _roi_align_dispatched(
    input: Tensor,
    boxes: BoxesArg,
    output_size: Union[int, Sequence[int]],
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> Tensor:
    """Eager entry: the form ``roi_align_dispatch`` chooses for the input's device and the mode."""
    rois = boxes if isinstance(boxes, Tensor) else _boxes_to_rois(list(boxes))
    _check_rois(rois)
    pooled_h, pooled_w = _pair(output_size)
    return roi_align_dispatch(input.device, input, rois, pooled_h, pooled_w, spatial_scale, sampling_ratio, aligned)


class RoIAlign(nn.Module):
    """Module form of :func:`roi_align` with fixed pooling parameters."""

    def __init__(
        self,
        output_size: Union[int, Sequence[int]],
        spatial_scale: float,
        sampling_ratio: int,
        aligned: bool = False,
    ) -> None:
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned

    def forward(self, input: Tensor, rois: BoxesArg) -> Tensor:
        """``input [B, C, H, W]``, ``rois`` as in :func:`roi_align` -> ``[K, C, h, w]``."""
        return roi_align(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned})"
        )
