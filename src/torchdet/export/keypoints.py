"""Traceable keypoint decoding for export (Keypoint R-CNN).

The eager decoder (``torchdet.models.keypoint_ops``) finds each heatmap's peak after a bicubic
resize to its RoI's size with a data-dependent search, which a traced graph cannot hold. Here
every RoI's heatmaps are sampled on a fixed ``max_height x max_width`` grid (the padded input
size bounds every RoI's side), with ``grid_sample`` (bicubic, border padding: the taps and weights
of ``F.interpolate(mode="bicubic")``, ONNX ``GridSample``, opset 16+); samples outside a RoI's own
``(ceil(h), ceil(w))`` map are masked out and the first maximum is taken in row-major order, as in
eager mode. Memory is ``N * K * max_height * max_width`` floats: meant for export sizes.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["grid_heatmaps_to_keypoints", "traceable_keypoint_decoding"]


def grid_heatmaps_to_keypoints(maps: Tensor, rois: Tensor, max_size: Tuple[int, int]) -> Tuple[Tensor, Tensor]:
    """Keypoints and scores from heatmaps, as ``keypoint_ops.heatmaps_to_keypoints``.

    Args:
        maps: ``[N, K, S, S]`` heatmap logits.
        rois: ``[N, 4]`` RoIs (x1, y1, x2, y2), inside a ``max_size`` image.
        max_size: ``(H, W)`` bound on every RoI's resized map.

    Returns:
        (keypoints ``[N, K, 3]`` (x, y, 1), scores ``[N, K]``).
    """
    s = maps.shape[-1]
    max_h, max_w = int(max_size[0]), int(max_size[1])
    widths = (rois[:, 2] - rois[:, 0]).clamp(min=1)  # [N]
    heights = (rois[:, 3] - rois[:, 1]).clamp(min=1)
    map_w, map_h = widths.ceil(), heights.ceil()
    ys = torch.arange(max_h, dtype=torch.float32, device=maps.device)[:, None].expand(max_h, max_w).reshape(-1)
    xs = torch.arange(max_w, dtype=torch.float32, device=maps.device)[None, :].expand(max_h, max_w).reshape(-1)
    src_y = (s / map_h)[:, None] * (ys[None, :] + 0.5) - 0.5  # [N, P]
    src_x = (s / map_w)[:, None] * (xs[None, :] + 0.5) - 0.5
    grid = (torch.stack([src_x, src_y], dim=-1) * 2 + 1) / s - 1  # [N, P, 2], align_corners=False
    sampled = F.grid_sample(maps.float(), grid[:, None], mode="bicubic", padding_mode="border",
                            align_corners=False)[:, :, 0]  # [N, K, P]
    inside = (ys[None, :] < map_h[:, None]) & (xs[None, :] < map_w[:, None])  # [N, P]
    sampled = sampled.masked_fill(~inside[:, None, :], float("-inf"))
    scores, position = sampled.max(dim=2)  # [N, K], first maximum
    y_int = torch.div(position, max_w, rounding_mode="floor").float()
    x_int = (position % max_w).float()
    x = (x_int + 0.5) * (widths / map_w)[:, None] + rois[:, 0:1]
    y = (y_int + 0.5) * (heights / map_h)[:, None] + rois[:, 1:2]
    return torch.stack([x, y, torch.ones_like(x)], dim=2), scores


@contextlib.contextmanager
def traceable_keypoint_decoding(max_size: Tuple[int, int]) -> Iterator[None]:
    """Within the block, Keypoint R-CNN decodes with ``grid_heatmaps_to_keypoints`` (then restored)."""
    from torchdet.models import keypoint_ops

    original = keypoint_ops.keypointrcnn_inference

    def inference(keypoint_logits: Tensor, boxes: List[Tensor]) -> Tuple[List[Tensor], List[Tensor]]:
        if len(boxes) == 0:
            return [], []
        keypoints, scores = grid_heatmaps_to_keypoints(keypoint_logits, torch.cat(boxes, dim=0), max_size)
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
