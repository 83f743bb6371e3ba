"""Keypoint R-CNN's keypoint branch maths: heatmap targets, the loss, and decoding heatmaps to keypoints.

The keypoint head predicts, for each RoI, one ``M x M`` heatmap of logits per keypoint. Training
treats each visible keypoint as an ``M * M``-way classification of the heatmap cell it falls in;
inference resizes each heatmap bicubically to the RoI's size and takes its peak, as torchvision does.

Decoding is one op with two forms (``keypoint_decoding_dispatch``):

- reference (TorchScript, tracing for ONNX, torch.export): every RoI's maps resized to the largest
  RoI's grid by two bicubic weight matrices, samples past a RoI's own size masked out, the first
  maximum taken in row-major order; plain tensor ops with no data-dependent Python, so a traced
  graph is right at every size. Memory is ``N * K * max_h * max_w`` floats (TorchScript runs it
  one RoI at a time);
- ``"peak_search"`` (eager): the same peaks found exactly while evaluating only a few source
  cells (see ``_heatmap_peaks``).
"""
from __future__ import annotations

import bisect
from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from torchdet.ops.dispatch import OpDispatcher

def keypoints_to_heatmap(keypoints: Tensor, rois: Tensor, heatmap_size: int) -> Tuple[Tensor, Tensor]:
    """The heatmap cell of each keypoint, relative to its RoI.

    Args:
        keypoints: [P, K, 3] keypoints (x, y, visibility) in image coordinates.
        rois: [P, 4] RoIs (x1, y1, x2, y2).
        heatmap_size: side ``M`` of the heatmap.

    Returns:
        (targets, valid), each [P, K] int64: ``targets`` is the flat cell index ``y * M + x``
        (0 where not valid); ``valid`` is 1 for visible keypoints that fall inside the RoI.
        A keypoint exactly on the RoI's right or bottom edge goes to the last cell.
    """
    offset_x = rois[:, 0:1]
    offset_y = rois[:, 1:2]
    scale_x = heatmap_size / (rois[:, 2:3] - rois[:, 0:1])
    scale_y = heatmap_size / (rois[:, 3:4] - rois[:, 1:2])
    x = keypoints[..., 0]
    y = keypoints[..., 1]
    on_right_edge = x == rois[:, 2:3]
    on_bottom_edge = y == rois[:, 3:4]
    cell_x = ((x - offset_x) * scale_x).floor().long()
    cell_y = ((y - offset_y) * scale_y).floor().long()
    cell_x[on_right_edge] = heatmap_size - 1
    cell_y[on_bottom_edge] = heatmap_size - 1
    inside = (cell_x >= 0) & (cell_y >= 0) & (cell_x < heatmap_size) & (cell_y < heatmap_size)
    visible = keypoints[..., 2] > 0
    valid = (inside & visible).long()
    targets = (cell_y * heatmap_size + cell_x) * valid
    return targets, valid


def keypointrcnn_loss(
    keypoint_logits: Tensor,
    proposals: List[Tensor],
    gt_keypoints: List[Tensor],
    keypoint_matched_idxs: List[Tensor],
) -> Tensor:
    """Cross-entropy over the ``M * M`` heatmap cells, at every valid keypoint of every positive RoI.

    Args:
        keypoint_logits: [P, K, M, M] logits for all positive proposals of the batch, image by image.
        proposals: per image, [P_i, 4] positive proposals.
        gt_keypoints: per image, [G_i, K, 3] ground-truth keypoints.
        keypoint_matched_idxs: per image, [P_i] index of each proposal's ground truth.

    Returns:
        Scalar loss; ``0 * keypoint_logits.sum()`` when no keypoint is valid.
    """
    n, k, h, w = keypoint_logits.shape
    if h != w:
        raise ValueError(f"keypoint heatmaps must be square, got {h} x {w}; check the keypoint predictor")
    targets, valid = [], []
    for props, kps, idxs in zip(proposals, gt_keypoints, keypoint_matched_idxs):
        t, v = keypoints_to_heatmap(kps[idxs], props, h)
        targets.append(t.reshape(-1))
        valid.append(v.reshape(-1))
    keypoint_targets = torch.cat(targets, dim=0)  # [P * K]
    valid_idx = torch.cat(valid, dim=0).nonzero().flatten()
    if keypoint_targets.numel() == 0 or valid_idx.numel() == 0:
        return keypoint_logits.sum() * 0
    flat_logits = keypoint_logits.reshape(n * k, h * w)
    return F.cross_entropy(flat_logits[valid_idx], keypoint_targets[valid_idx])


# ---- decoding: the peak of each heatmap resized to its RoI ----------------------------------------
#
# torchvision resizes every RoI's K heatmaps bicubically to the RoI's size and takes the argmax: the
# cost grows with the RoI's area. The peak can be found exactly while evaluating only a few source
# cells: a cell's resized values are bounded by its 4 x 4 source window, so the cell around each
# map's source maximum is evaluated first and then only the cells whose bound reaches that value.

# PyTorch's bicubic interpolation uses the cubic convolution kernel with a = -0.75.
_CUBIC_A = -0.75

# Along one axis, the four taps of a bicubic sample have weights (w0, w1, w2, w3) with w0, w3 <= 0
# <= w1, w2, summing to 1, and |w0| + |w3| <= _CUBIC_OVERSHOOT (its largest value, at t = 0.5).
_CUBIC_OVERSHOOT = 0.1875


def _cubic_upper_bound(inner_hi: Tensor, window_hi: Tensor, window_lo: Tensor) -> Tensor:
    """Upper bound of the bicubic values over a source cell (or a set of cells).

    With ``inner_hi`` the largest of the cell's inner 2 x 2 source values and ``window_hi`` /
    ``window_lo`` the extremes of its 4 x 4 window, c = _CUBIC_OVERSHOOT: interpolating a row
    along x gives at most ``inner_hi + c (inner_hi - lo)`` on the inner rows and at least
    ``lo - c (hi - lo)`` on the outer ones, and interpolating those along y adds at most c times
    their difference, which sums to the expression below. Any of the three may be replaced by a
    looser value (larger ``*_hi``, smaller ``*_lo``).
    """
    c = _CUBIC_OVERSHOOT
    return inner_hi + (2 * c + c * c) * (inner_hi - window_lo) + c * c * (window_hi - window_lo)


# Cells are bounded first in square blocks of this many cells a side.
_BLOCK = 8

# Largest number of resized values sampled at once when resizing maps whole.
_DENSE_CHUNK_ELEMENTS = 1 << 22

# A RoI whose candidate blocks hold more than this fraction of its resized samples is resized whole.
_DENSE_FRACTION = 0.3

# Largest number of resized heatmap values evaluated at once (bounds the memory of the decoding).
_DECODE_CHUNK_ELEMENTS = 1 << 18


def _cubic_near(x: Tensor) -> Tensor:
    """Cubic convolution weight for ``|x| <= 1``."""
    a = -0.75  # _CUBIC_A (TorchScript reads no global floats)
    return ((a + 2) * x - (a + 3)) * x * x + 1


def _cubic_far(x: Tensor) -> Tensor:
    """Cubic convolution weight for ``1 <= |x| <= 2``."""
    a = -0.75  # _CUBIC_A
    return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a


def _cubic_taps(out_sizes: Tensor, in_size: int, out_len: int) -> Tuple[Tensor, Tensor]:
    """Bicubic (align_corners=False) taps that resize a length ``in_size`` axis to ``out_sizes[n]``.

    Same arithmetic as PyTorch's ``F.interpolate(mode="bicubic")``: source position
    ``scale * (j + 0.5) - 0.5`` with ``scale = in / out`` (not clamped), its floor ``cell`` (at most
    ``in_size - 1``), four taps at ``cell - 1 .. cell + 2`` (clamped to the border when read) with
    cubic-convolution weights, a = -0.75.

    Args:
        out_sizes: [N] int64 output length per row (<= out_len); positions past it are padding.
        in_size: input length.
        out_len: padded output length.

    Returns:
        (cell [N, out_len] int64 in -1 .. in_size - 1, weight [N, out_len, 4]).
    """
    dtype = torch.float32
    n = out_sizes.shape[0]
    j = torch.arange(out_len, dtype=dtype, device=out_sizes.device)
    scale = torch.full((n,), float(in_size), dtype=dtype, device=out_sizes.device) / out_sizes.to(dtype)
    src = scale[:, None] * (j[None, :] + 0.5) - 0.5  # [N, out_len]
    cell = src.floor().clamp(max=in_size - 1)
    t = (src - cell).clamp(0, 1)
    weight = torch.stack([_cubic_far(t + 1), _cubic_near(t), _cubic_near(1 - t), _cubic_far(2 - t)], dim=-1)
    return cell.long(), weight


class _ResizeAxis:
    """One axis of the per-RoI bicubic resize, grouped by source cell.

    The output samples whose source position has floor ``cell`` read source rows ``cell - 1 ..
    cell + 2``; they are consecutive. Cells are numbered by ``slot = cell + 1`` (0 .. S), which is
    also the first row of their 4-row window in a source map padded by 2 on each side.
    """

    def __init__(self, out_sizes: Tensor, in_size: int) -> None:
        out_len = int(out_sizes.max())
        cell, weight = _cubic_taps(out_sizes, in_size, out_len)  # [N, L], [N, L, 4]
        self.out_len = out_len
        self.tap_weight = weight.permute(2, 0, 1).reshape(4, -1)  # [4, N * L]
        valid = torch.arange(out_len, device=out_sizes.device)[None, :] < out_sizes[:, None]
        slot = torch.where(valid, cell + 1, in_size + 1)  # padding goes to a spare slot
        count = torch.zeros(len(out_sizes), in_size + 2, dtype=torch.long, device=out_sizes.device)
        count.scatter_add_(1, slot, torch.ones_like(slot))
        self.count = count[:, : in_size + 1]  # [N, S + 1] output samples per slot
        self.first = self.count.cumsum(1) - self.count  # [N, S + 1] first output sample of each slot
        self.slot = slot  # [N, L] slot of each output sample
        self.span = self.count.amax(1)  # [N] most samples in one slot, per RoI
        blocks = -(-(in_size + 1) // _BLOCK)
        padded_count = F.pad(self.count, (0, blocks * _BLOCK - (in_size + 1)))
        self.block_count = padded_count.view(len(out_sizes), blocks, _BLOCK).sum(-1)  # [N, blocks]

    def samples(self, roi: Tensor, slot: Tensor, span: int) -> Tuple[Tensor, Tensor, Tensor]:
        """Output samples of slots ``slot`` of RoIs ``roi`` ([C] each), padded to ``span``.

        Candidates run along the last axis, so that the arithmetic on them is contiguous.

        Returns:
            (index [span, C], weight [4, span, C], valid [span, C]).
        """
        r = torch.arange(span, device=roi.device)[:, None]
        valid = r < self.count[roi, slot]
        index = (self.first[roi, slot] + r).clamp(max=self.out_len - 1)  # [span, C]
        flat = (roi * self.out_len + index).flatten()
        weight = self.tap_weight.index_select(1, flat).view(4, span, len(roi))
        return index, weight, valid


def _neighbourhoods(padded: Tensor, roi: Tensor, kp: Tensor, cy: Tensor, cx: Tensor) -> Tensor:
    """The 4 x 4 source windows of cells (cy, cx) of maps (roi, kp), [C] each -> [4, 4, C].

    ``padded`` is [N, K, L, L]: the maps border-replicated with 2 rows/columns before them.
    """
    k, side = padded.shape[1], padded.shape[2]
    four = torch.arange(4, device=padded.device)[:, None]
    rows = (roi * k + kp) * side + cy + four  # [4, C] rows of the flattened maps
    return torch.take(padded, rows[:, None, :] * side + cx + four[None])


def _evaluate_cells(
    padded: Tensor, rows: _ResizeAxis, cols: _ResizeAxis, widths: Tensor,
    roi: Tensor, kp: Tensor, cy: Tensor, cx: Tensor,
) -> Tuple[Tensor, Tensor]:
    """Exact resized values over whole source cells, and the first maximum of each cell.

    Args:
        padded: [N, K, L, L] heatmaps border-replicated, 2 rows/columns before them.
        rows, cols: the two axes of the resize.
        widths: [N] resized widths.
        roi, kp, cy, cx: [C] RoI, keypoint and cell slots (row, column) to evaluate.

    Returns:
        (value [C], position [C] = y * width + x in the RoI's resized map).
    """
    window = _neighbourhoods(padded, roi, kp, cy, cx)  # [4, 4, C]
    ys, wy, vy = rows.samples(roi, cy, int(rows.span[roi].max()))  # [RY, C], [4, RY, C], [RY, C]
    xs, wx, vx = cols.samples(roi, cx, int(cols.span[roi].max()))  # [RX, C], [4, RX, C], [RX, C]
    # Sum the taps in PyTorch's order: along x inside, then along y.
    along_x = window[:, None, 0] * wx[0]  # [4, RX, C]
    for tap in range(1, 4):
        along_x += window[:, None, tap] * wx[tap]
    values = along_x[0, None] * wy[0, :, None]  # [RY, RX, C]
    for tap in range(1, 4):
        values += along_x[tap, None] * wy[tap, :, None]
    values.masked_fill_(~(vy[:, None] & vx[None]), float("-inf"))
    span_x = values.shape[1]
    best, flat = values.flatten(0, 1).max(dim=0)  # [C] first maximum, row-major
    y = ys.gather(0, (flat // span_x)[None])[0]
    x = xs.gather(0, (flat % span_x)[None])[0]
    return best, y * widths[roi] + x


def _first_maximum(value: Tensor, pos: Tensor, owner: Tensor, n_owners: int) -> Tuple[Tensor, Tensor]:
    """Per owner, the largest value and, among equal values, the smallest position (as torch.argmax).

    Args:
        value, pos, owner: [C] candidate values, positions and owner ids in 0 .. n_owners - 1.

    Returns:
        (best value [n_owners], its position [n_owners]).
    """
    best = value.new_full((n_owners,), float("-inf")).scatter_reduce(0, owner, value, reduce="amax")
    tied = value == best[owner]
    far_pos = torch.full_like(pos, torch.iinfo(torch.long).max)
    best_pos = far_pos.new_full((n_owners,), torch.iinfo(torch.long).max)
    best_pos = best_pos.scatter_reduce(0, owner, torch.where(tied, pos, far_pos), reduce="amin")
    return best, best_pos


def _padded_for_blocks(maps: Tensor) -> Tensor:
    """Border-replicate [N, K, S, S] maps: 2 before, enough after for whole blocks of cell windows."""
    s = maps.shape[-1]
    blocks = -(-(s + 1) // _BLOCK)
    after = blocks * _BLOCK + 3 - (s + 2)
    return F.pad(maps, (2, after, 2, after), mode="replicate")


def _candidate_blocks(padded: Tensor, rows: _ResizeAxis, cols: _ResizeAxis, threshold: Tensor) -> Tensor:
    """Blocks of _BLOCK x _BLOCK cells that may hold a resized value >= ``threshold`` ([N, K]).

    A block's cells have their inner 2 x 2 values within the block's (_BLOCK + 1)^2 inner window and
    their 4 x 4 windows within its (_BLOCK + 3)^2 window, whose extremes bound them all.

    Returns:
        [B, 4] (roi, keypoint, block row, block column) of the candidate blocks the resize uses.
    """
    strips = padded.unfold(2, _BLOCK + 3, _BLOCK)  # [N, K, blocks, side, _BLOCK + 3]
    hi = strips.amax(-1).unfold(3, _BLOCK + 3, _BLOCK).amax(-1)  # [N, K, blocks, blocks]
    lo = strips.amin(-1).unfold(3, _BLOCK + 3, _BLOCK).amin(-1)
    inner = padded[:, :, 1:, 1:].unfold(2, _BLOCK + 1, _BLOCK).amax(-1)  # [N, K, blocks, side - 1]
    inner_hi = inner.unfold(3, _BLOCK + 1, _BLOCK).amax(-1)  # [N, K, blocks, blocks]
    ok = _cubic_upper_bound(inner_hi, hi, lo) >= threshold[..., None, None]
    ok &= (rows.block_count > 0)[:, None, :, None] & (cols.block_count > 0)[:, None, None, :]
    return ok.nonzero()


def _candidate_cells(padded: Tensor, rows: _ResizeAxis, cols: _ResizeAxis, threshold: Tensor,
                     blocks: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """The cells of candidate ``blocks`` ([B, 4]) that the resize uses and whose own bound reaches
    ``threshold``.

    Returns:
        (roi, kp, cy, cx), each [C]: cell slots.
    """
    k, side = padded.shape[1], padded.shape[2]
    span = _BLOCK + 3
    roi, kp = blocks[:, 0], blocks[:, 1]
    top, left = blocks[:, 2] * _BLOCK, blocks[:, 3] * _BLOCK  # first cell slot of each block
    r = torch.arange(span, device=padded.device)
    flat_rows = (roi * k + kp)[:, None] * side + top[:, None] + r  # [B, span]
    window = torch.take(padded, flat_rows[:, :, None] * side + left[:, None, None] + r)  # [B, span, span]
    strips = window.unfold(1, 4, 1)  # [B, _BLOCK, span, 4]
    hi = strips.amax(-1).unfold(2, 4, 1).amax(-1)  # [B, _BLOCK, _BLOCK] per-cell window extremes
    lo = strips.amin(-1).unfold(2, 4, 1).amin(-1)
    inner_hi = window[:, 1:-1, 1:-1].unfold(1, 2, 1).amax(-1).unfold(2, 2, 1).amax(-1)  # [B, _BLOCK, _BLOCK]
    ok = _cubic_upper_bound(inner_hi, hi, lo) >= threshold[roi, kp][:, None, None]
    cells = torch.arange(_BLOCK, device=padded.device)
    slots = rows.count.shape[1]
    cy, cx = top[:, None] + cells, left[:, None] + cells  # [B, _BLOCK]
    used_y = (cy < slots) & (rows.count[roi[:, None], cy.clamp(max=slots - 1)] > 0)
    used_x = (cx < slots) & (cols.count[roi[:, None], cx.clamp(max=slots - 1)] > 0)
    ok &= used_y[:, :, None] & used_x[:, None, :]
    b, i, j = ok.nonzero(as_tuple=True)
    return roi[b], kp[b], top[b] + i, left[b] + j


def _chunks_by_span(span: Tensor, budget: int = _DECODE_CHUNK_ELEMENTS, spread: float = 2.0) -> List[Tensor]:
    """Split items into index chunks of similar size ([C] sizes, at most ``spread`` apart in a chunk),
    each within ``budget`` elements when padded to its largest."""
    order = span.argsort()
    sizes = span[order].tolist()
    chunks, start = [], 0
    while start < len(sizes):
        similar = bisect.bisect_right(sizes, spread * sizes[start], lo=start)
        stop = min(similar, start + max(1, int(budget // (spread * sizes[start]))))
        chunks.append(order[start:stop])
        start = stop
    return chunks


def _dense_peaks(maps: Tensor, heights: Tensor, widths: Tensor) -> Tuple[Tensor, Tensor]:
    """First maximum of each fully resized heatmap, every RoI's samples drawn by one grid_sample.

    Each RoI's ``h * w`` output samples, row-major, become one row of a sampling grid (rows padded
    to the longest in a chunk of similar sizes); bicubic grid_sample with border padding reads the
    same 4 x 4 taps with the same weights as ``F.interpolate(mode="bicubic")`` at those positions.

    Args:
        maps: [N, K, S, S]; heights, widths: [N] int64 resized sizes.

    Returns:
        (score [N, K], position [N, K] = y * width + x).
    """
    n, k, s, _ = maps.shape
    score = maps.new_zeros(n, k)
    pos = torch.zeros(n, k, dtype=torch.long, device=maps.device)
    for sel in _chunks_by_span(heights * widths * k, _DENSE_CHUNK_ELEMENTS, spread=1.25):
        h, w = heights[sel], widths[sel]
        length = int((h * w).max())
        p = torch.arange(length, device=maps.device)
        y, x = p[None, :] // w[:, None], p[None, :] % w[:, None]  # [c, P]
        src_y = (s / h.float())[:, None] * (y.float() + 0.5) - 0.5  # source positions, as F.interpolate
        src_x = (s / w.float())[:, None] * (x.float() + 0.5) - 0.5
        grid = (torch.stack([src_x, src_y], dim=-1) * 2 + 1) / s - 1  # [c, P, 2], align_corners=False
        sampled = F.grid_sample(maps[sel], grid[:, None].to(maps.dtype), mode="bicubic",
                                padding_mode="border", align_corners=False)[:, :, 0]  # [c, K, P]
        sampled.masked_fill_((p[None, :] >= (h * w)[:, None])[:, None], float("-inf"))
        score[sel], pos[sel] = sampled.max(dim=2)  # first maximum, row-major
    return score, pos


def _heatmap_peaks(maps: Tensor, heights: Tensor, widths: Tensor) -> Tuple[Tensor, Tensor]:
    """First maximum of each heatmap after bicubic resizing to its RoI's (height, width).

    Equal to ``F.interpolate(maps[i:i+1], (h_i, w_i), mode="bicubic").flatten(2).max(2)`` per RoI,
    without resizing whole maps: the cell around each map's source maximum is evaluated first; its
    peak is a lower bound, and only the cells whose upper bound reaches it are evaluated after
    (bounds per block of cells, then per cell), all RoIs and keypoints at once. Maps without a clear
    peak (noise) prune badly: when the candidate blocks would cost more than resizing everything,
    everything is resized.

    Args:
        maps: [N, K, S, S] float heatmap logits (N >= 1).
        heights, widths: [N] int64 resized sizes (>= 1).

    Returns:
        (score [N, K], position [N, K] = y * width + x in the resized map).
    """
    n, k, s, _ = maps.shape
    rows, cols = _ResizeAxis(heights, s), _ResizeAxis(widths, s)
    padded = _padded_for_blocks(maps)  # [N, K, L, L]

    # Seed: the cell holding the output sample nearest to each map's source maximum.
    roi = torch.arange(n, device=maps.device).repeat_interleave(k)  # [N * K]
    kp = torch.arange(k, device=maps.device).repeat(n)
    peak_value, peak_at = maps.flatten(2).max(2)  # [N, K]
    peak_at = peak_at.flatten()
    y_near = (((peak_at // s).float() + 0.5) * heights[roi] / s).long().clamp(max=heights[roi] - 1)
    x_near = (((peak_at % s).float() + 0.5) * widths[roi] / s).long().clamp(max=widths[roi] - 1)
    seed_cy, seed_cx = rows.slot[roi, y_near], cols.slot[roi, x_near]
    seed_value, seed_pos = _evaluate_cells(padded, rows, cols, widths, roi, kp, seed_cy, seed_cx)

    # Values are summed in another order than the bounds: keep a margin for rounding.
    magnitude = torch.maximum(peak_value.abs(), maps.flatten(2).amin(2).abs())
    threshold = seed_value.view(n, k) - 1e-5 * (magnitude + 1)
    blocks = _candidate_blocks(padded, rows, cols, threshold)  # [B, 4]

    # RoIs whose candidate blocks cover much of their resized maps are cheaper to resize whole.
    covered = rows.block_count[blocks[:, 0], blocks[:, 2]] * cols.block_count[blocks[:, 0], blocks[:, 3]]
    covered = torch.zeros(n, dtype=covered.dtype, device=maps.device).index_add_(0, blocks[:, 0], covered)
    dense = covered > _DENSE_FRACTION * k * heights * widths  # [N]
    blocks = blocks[~dense[blocks[:, 0]]]

    values, positions, owners = [seed_value], [seed_pos], [roi * k + kp]
    for some_blocks in blocks.split(max(1, _DECODE_CHUNK_ELEMENTS // (_BLOCK * _BLOCK))):
        c_roi, c_kp, c_cy, c_cx = _candidate_cells(padded, rows, cols, threshold, some_blocks)
        for sel in _chunks_by_span(rows.span[c_roi] * cols.span[c_roi]):
            v, p = _evaluate_cells(padded, rows, cols, widths, c_roi[sel], c_kp[sel], c_cy[sel], c_cx[sel])
            values.append(v)
            positions.append(p)
            owners.append(c_roi[sel] * k + c_kp[sel])
    best, best_pos = _first_maximum(torch.cat(values), torch.cat(positions), torch.cat(owners), n * k)
    best, best_pos = best.view(n, k), best_pos.view(n, k)
    if bool(dense.any()):
        best[dense], best_pos[dense] = _dense_peaks(maps[dense], heights[dense], widths[dense])
    return best, best_pos


def _roi_map_sizes(rois: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """RoI widths and heights ``[N]`` (at least 1) and their resized map sizes ``ceil`` ``[N]`` int64."""
    widths = (rois[:, 2] - rois[:, 0]).clamp(min=1)
    heights = (rois[:, 3] - rois[:, 1]).clamp(min=1)
    return widths, heights, widths.ceil().long(), heights.ceil().long()


def _peaks_to_keypoints(rois: Tensor, widths: Tensor, heights: Tensor, map_w: Tensor, map_h: Tensor,
                        pos: Tensor) -> Tensor:
    """Peak positions ``[N, K]`` (``y * map_w + x``) -> keypoints ``[N, K, 3]`` in image pixels."""
    x_int = pos % map_w[:, None]
    y_int = torch.div(pos, map_w[:, None], rounding_mode="floor")
    x = (x_int.float() + 0.5) * (widths / map_w)[:, None] + rois[:, 0:1]
    y = (y_int.float() + 0.5) * (heights / map_h)[:, None] + rois[:, 1:2]
    return torch.stack([x, y, torch.ones_like(x)], dim=2)


def _bicubic_matrix(sizes: Tensor, length: Tensor, s: int) -> Tensor:
    """Rows resizing an ``s``-long axis bicubically to each of ``sizes``, padded to ``length`` rows.

    Args:
        sizes: ``[N]`` int64 output lengths (>= 1).
        length: 0-dim int64, at least ``sizes.max()`` (a tensor, so that a trace keeps it).
        s: input length.

    Returns:
        ``[N, length, s]``: row ``j`` holds the weights of output sample ``j`` (``align_corners=False``,
        border taps clamped, as ``F.interpolate(mode="bicubic")``).
    """
    position = torch.arange(length, device=sizes.device).float()  # [L]
    real = (s / sizes.float())[:, None] * (position[None, :] + 0.5) - 0.5  # [N, L]
    index = real.floor()
    t = real - index
    source = torch.arange(s, device=sizes.device).float()  # [S]
    matrix = torch.zeros_like(real)[..., None] * source  # [N, L, S]
    taps = [_cubic_far(t + 1), _cubic_near(t), _cubic_near(1 - t), _cubic_far(2 - t)]
    for offset in range(4):
        tap = (index + (offset - 1)).clamp(min=0, max=s - 1)
        matrix = matrix + (tap[..., None] == source).float() * taps[offset][..., None]
    return matrix


def _decode_reference(maps: Tensor, rois: Tensor) -> Tuple[Tensor, Tensor]:
    """Keypoints by resizing every RoI's maps to the largest RoI's grid (see the module docstring).

    Args:
        maps: ``[N, K, S, S]`` heatmap logits; rois: ``[N, 4]``.

    Returns:
        (keypoints ``[N, K, 3]``, scores ``[N, K]``).
    """
    s = maps.shape[-1]
    widths, heights, map_w, map_h = _roi_map_sizes(rois)
    max_h = torch.cat([map_h, map_h.new_ones(1)]).max()
    max_w = torch.cat([map_w, map_w.new_ones(1)]).max()
    rows = _bicubic_matrix(map_h, max_h, s)  # [N, Hm, S]
    cols = _bicubic_matrix(map_w, max_w, s)  # [N, Wm, S]
    # Along x first, then along y, as F.interpolate sums its taps.
    resized = torch.matmul(rows[:, None], torch.matmul(maps.float(), cols[:, None].transpose(2, 3)))  # [N, K, Hm, Wm]
    ys = torch.arange(max_h, device=maps.device)
    xs = torch.arange(max_w, device=maps.device)
    inside = (ys[None, :, None] < map_h[:, None, None]) & (xs[None, None, :] < map_w[:, None, None])  # [N, Hm, Wm]
    resized = resized.masked_fill(~inside[:, None], float("-inf"))
    scores, position = resized.flatten(2).max(dim=2)  # [N, K], first maximum
    y_int = torch.div(position, max_w, rounding_mode="floor")
    pos = y_int * map_w[:, None] + (position - y_int * max_w)  # in the RoI's own (map_h, map_w) grid
    return _peaks_to_keypoints(rois, widths, heights, map_w, map_h, pos), scores


def _decode_each_roi(maps: Tensor, rois: Tensor) -> Tuple[Tensor, Tensor]:
    """``_decode_reference`` one RoI at a time: the same values, memory of one RoI's resized maps."""
    n, k = maps.shape[0], maps.shape[1]
    keypoints = torch.zeros((n, k, 3), dtype=torch.float32, device=maps.device)
    scores = torch.zeros((n, k), dtype=torch.float32, device=maps.device)
    for i in range(n):
        keypoints[i:i + 1], scores[i:i + 1] = _decode_reference(maps[i:i + 1], rois[i:i + 1])
    return keypoints, scores


keypoint_decoding_dispatch = OpDispatcher("keypoint_decoding", reference=_decode_reference)


@keypoint_decoding_dispatch.register("peak_search", modes=("eager",))
def _decode_by_peak_search(maps: Tensor, rois: Tensor) -> Tuple[Tensor, Tensor]:
    """The reference's keypoints by the pruned peak search (``_heatmap_peaks``)."""
    n, k = maps.shape[0], maps.shape[1]
    widths, heights, map_w, map_h = _roi_map_sizes(rois)
    if n == 0:
        return maps.new_zeros((0, k, 3), dtype=torch.float32), maps.new_zeros((0, k), dtype=torch.float32)
    scores, pos = _heatmap_peaks(maps.float(), map_h, map_w)
    return _peaks_to_keypoints(rois, widths, heights, map_w, map_h, pos), scores


def heatmaps_to_keypoints(maps: Tensor, rois: Tensor) -> Tuple[Tensor, Tensor]:
    """Keypoint positions and scores from heatmaps, all RoIs at once.

    As torchvision: each RoI's heatmaps are resized bicubically (align_corners=False) to
    ``(ceil(h), ceil(w))`` of the RoI (sides clamped to at least 1); the first maximum of each
    resized map, shifted by half a cell and scaled back to the RoI's real size, is the keypoint,
    and the resized value there its score. The form that runs is ``keypoint_decoding_dispatch``'s
    choice (module docstring).

    Args:
        maps: [N, K, S, S] heatmap logits.
        rois: [N, 4] RoIs (x1, y1, x2, y2).

    Returns:
        (keypoints [N, K, 3] (x, y, visibility 1), scores [N, K]).
    """
    if torch.jit.is_scripting():
        return _decode_each_roi(maps, rois)
    return _decode_dispatched(maps, rois)


@torch.jit.unused
def _decode_dispatched(maps: Tensor, rois: Tensor) -> Tuple[Tensor, Tensor]:
    return keypoint_decoding_dispatch(maps.device, maps, rois)


def keypointrcnn_inference(keypoint_logits: Tensor, boxes: List[Tensor]) -> Tuple[List[Tensor], List[Tensor]]:
    """Decode the keypoints of every detection, then split them per image.

    Args:
        keypoint_logits: [N, K, S, S] heatmap logits for all detections of the batch.
        boxes: per image, [N_i, 4] detected boxes (sum of N_i == N).

    Returns:
        (per image [N_i, K, 3] keypoints, per image [N_i, K] keypoint scores).
    """
    if len(boxes) == 0:
        return [], []
    keypoints, scores = heatmaps_to_keypoints(keypoint_logits, torch.cat(boxes, dim=0))
    # Sliced by the boxes' sizes (split() would bake a trace's counts into the graph).
    kps_per_image: List[Tensor] = []
    scores_per_image: List[Tensor] = []
    start = 0
    for b in boxes:
        stop = start + b.shape[0]
        kps_per_image.append(keypoints[start:stop])
        scores_per_image.append(scores[start:stop])
        start = stop
    return kps_per_image, scores_per_image


def _size_as_float32(size: int, device: torch.device) -> Tensor:
    """An image side as a float32 scalar; while tracing a traced side stays in the graph."""
    if not torch.jit.is_scripting():
        if isinstance(size, Tensor):  # a traced size
            return size.to(dtype=torch.float32, device=device)
        if isinstance(size, torch.SymInt):  # a symbolic size (torch.export): float() would specialise it
            return torch.scalar_tensor(size, dtype=torch.float32, device=device)
    return torch.tensor(float(size), dtype=torch.float32, device=device)


def resize_keypoints(keypoints: Tensor, original_size: List[int], new_size: List[int]) -> Tensor:
    """Rescale keypoints from an image of ``original_size`` (H, W) to ``new_size`` (H, W).

    Args:
        keypoints: [N, K, 3] (x, y, visibility); visibility is kept.
        original_size, new_size: ints, or traced sizes while tracing.

    Returns:
        [N, K, 3] rescaled copy.
    """
    device = keypoints.device
    ratio_h = _size_as_float32(new_size[0], device) / _size_as_float32(original_size[0], device)
    ratio_w = _size_as_float32(new_size[1], device) / _size_as_float32(original_size[1], device)
    resized = keypoints.clone()
    resized[..., 0] *= ratio_w
    resized[..., 1] *= ratio_h
    return resized
