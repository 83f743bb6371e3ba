"""Traceable keypoint decoding for export (Keypoint R-CNN).

The eager decoder (``torchdet.models.keypoint_ops``) finds each heatmap's peak after a bicubic
resize to its RoI's size with a data-dependent search, which a traced graph cannot hold. Here
every RoI's heatmaps are resized to the largest RoI's size with bicubic weight matrices (the taps
and weights of ``F.interpolate(mode="bicubic")``, two MatMuls, any opset); samples outside a
RoI's own ``(ceil(h), ceil(w))`` map are masked out and the first maximum is taken in row-major
order, as in eager mode. Memory is ``N * K * max_h * max_w`` floats: meant for export.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["grid_heatmaps_to_keypoints", "traceable_keypoint_decoding"]


_A = -0.75  # PyTorch's bicubic convolution coefficient


def _cubic_near(x: Tensor) -> Tensor:
    """Cubic convolution weight for ``|x| <= 1``."""
    return ((_A + 2) * x - (_A + 3)) * x * x + 1


def _cubic_far(x: Tensor) -> Tensor:
    """Cubic convolution weight for ``1 < |x| < 2``."""
    return ((_A * x - 5 * _A) * x + 8 * _A) * x - 4 * _A


def _bicubic_matrix(sizes: Tensor, length: Tensor, s: int) -> Tensor:
    """Rows resizing an ``s``-long axis bicubically to each of ``sizes``, padded to ``length`` rows.

    Args:
        sizes: ``[N]`` float output lengths (>= 1).
        length: scalar, at least ``sizes.max()``.
        s: input length.

    Returns:
        ``[N, length, s]``: row ``j`` holds the weights of output sample ``j`` (``align_corners=False``,
        border taps clamped, as ``F.interpolate(mode="bicubic")``).
    """
    position = torch.arange(length, device=sizes.device).float()  # [L]
    real = (s / sizes)[:, None] * (position[None, :] + 0.5) - 0.5  # [N, L]
    index = real.floor()
    t = real - index
    weights = (_cubic_far(t + 1), _cubic_near(t), _cubic_near(1 - t), _cubic_far(2 - t))
    source = torch.arange(s, device=sizes.device).float()  # [S]
    matrix = torch.zeros_like(real)[..., None] * source  # [N, L, S]
    for offset, weight in zip((-1, 0, 1, 2), weights):
        tap = (index + offset).clamp(min=0, max=s - 1)
        matrix = matrix + (tap[..., None] == source).float() * weight[..., None]
    return matrix


def grid_heatmaps_to_keypoints(maps: Tensor, rois: Tensor) -> Tuple[Tensor, Tensor]:
    """Keypoints and scores from heatmaps, as ``keypoint_ops.heatmaps_to_keypoints``.

    Every RoI's maps are resized to the largest RoI's ``(ceil(h), ceil(w))`` grid by two bicubic
    weight matrices (plain MatMul, any opset); samples past a RoI's own size are masked out and
    the first maximum is taken in row-major order.

    Args:
        maps: ``[N, K, S, S]`` heatmap logits.
        rois: ``[N, 4]`` RoIs (x1, y1, x2, y2).

    Returns:
        (keypoints ``[N, K, 3]`` (x, y, 1), scores ``[N, K]``).
    """
    n, k, s = maps.shape[0], maps.shape[1], maps.shape[-1]
    widths = (rois[:, 2] - rois[:, 0]).clamp(min=1)  # [N]
    heights = (rois[:, 3] - rois[:, 1]).clamp(min=1)
    map_w, map_h = widths.ceil(), heights.ceil()
    max_h = torch.cat([map_h, map_h.new_ones(1)]).max().long()
    max_w = torch.cat([map_w, map_w.new_ones(1)]).max().long()
    rows = _bicubic_matrix(map_h, max_h, s)  # [N, Hm, S]
    cols = _bicubic_matrix(map_w, max_w, s)  # [N, Wm, S]
    resized = torch.matmul(torch.matmul(rows[:, None], maps.float()), cols[:, None].transpose(2, 3))  # [N, K, Hm, Wm]
    ys = torch.arange(max_h, device=maps.device).float()
    xs = torch.arange(max_w, device=maps.device).float()
    inside = (ys[None, :, None] < map_h[:, None, None]) & (xs[None, None, :] < map_w[:, None, None])  # [N, Hm, Wm]
    resized = resized.masked_fill(~inside[:, None], float("-inf"))
    scores, position = resized.flatten(2).max(dim=2)  # [N, K], first maximum
    y_int = torch.div(position, max_w, rounding_mode="floor").float()
    x_int = (position - y_int.long() * max_w).float()
    x = (x_int + 0.5) * (widths / map_w)[:, None] + rois[:, 0:1]
    y = (y_int + 0.5) * (heights / map_h)[:, None] + rois[:, 1:2]
    return torch.stack([x, y, torch.ones_like(x)], dim=2), scores


@contextlib.contextmanager
def traceable_keypoint_decoding() -> Iterator[None]:
    """Within the block, Keypoint R-CNN decodes with ``grid_heatmaps_to_keypoints`` (then restored)."""
    from torchdet.models import keypoint_ops

    original = keypoint_ops.keypointrcnn_inference

    def inference(keypoint_logits: Tensor, boxes: List[Tensor]) -> Tuple[List[Tensor], List[Tensor]]:
        if len(boxes) == 0:
            return [], []
        keypoints, scores = grid_heatmaps_to_keypoints(keypoint_logits, torch.cat(boxes, dim=0))
        kps, kp_scores, start = [], [], 0
        for b in boxes:  # slice by traced sizes (a Python split would bake the counts)
            count = b.shape[0]
            kps.append(keypoints[start:start + count])
            kp_scores.append(scores[start:start + count])
            start = start + count
        return kps, kp_scores

    keypoint_ops.keypointrcnn_inference = inference  # roi_heads calls it through the module
    try:
        yield
    finally:
        keypoint_ops.keypointrcnn_inference = original
