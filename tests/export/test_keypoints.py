"""The traceable keypoint decoder agrees with the eager one."""
from __future__ import annotations

import torch

from torchdet.export.keypoints import grid_heatmaps_to_keypoints
from torchdet.models.keypoint_ops import heatmaps_to_keypoints


def test_grid_decoder_matches_eager_decoder() -> None:
    g = torch.Generator().manual_seed(0)
    maps = torch.randn(6, 17, 56, 56, generator=g)
    corner = torch.rand(6, 2, generator=g) * 100
    rois = torch.cat([corner, corner + torch.rand(6, 2, generator=g) * 150 + 0.5], dim=1)
    keypoints, scores = grid_heatmaps_to_keypoints(maps, rois)
    expected, expected_scores = heatmaps_to_keypoints(maps, rois)
    torch.testing.assert_close(keypoints, expected)
    torch.testing.assert_close(scores, expected_scores, atol=1e-4, rtol=1e-4)
