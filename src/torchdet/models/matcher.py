"""Matchers: assign each prediction (anchor or proposal) to a ground-truth box, or to none."""
from __future__ import annotations

import torch
from torch import Tensor


class Matcher:
    """Match predictions to ground truth by a quality matrix (IoU), with two thresholds.

    Each prediction takes the ground truth it overlaps most. It keeps that match when the
    quality is ``>= high_threshold``; below ``low_threshold`` it gets ``BELOW_LOW_THRESHOLD``
    (background) and in between ``BETWEEN_THRESHOLDS`` (ignored).

    Args:
        high_threshold: quality at or above which a match is kept.
        low_threshold: quality below which a prediction is background.
        allow_low_quality_matches: also keep, for each ground truth, the predictions that
            overlap it best (every tie of the maximum), even below ``high_threshold``.
    """

    BELOW_LOW_THRESHOLD = -1
    BETWEEN_THRESHOLDS = -2

    def __init__(self, high_threshold: float, low_threshold: float, allow_low_quality_matches: bool = False) -> None:
        if low_threshold > high_threshold:
            raise ValueError(
                f"Matcher needs low_threshold <= high_threshold; got low {low_threshold}, high {high_threshold}."
            )
        self.high_threshold = high_threshold
        self.low_threshold = low_threshold
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, match_quality_matrix: Tensor) -> Tensor:
        """``[M gt, N predictions]`` quality -> ``[N]`` matched gt index, or -1 / -2."""
        if match_quality_matrix.numel() == 0:
            if match_quality_matrix.shape[0] == 0:
                raise ValueError("No ground-truth boxes available for one of the images during training")
            raise ValueError("No proposal boxes available for one of the images during training")

        matched_vals, matches = match_quality_matrix.max(dim=0)  # [N]
        all_matches = matches.clone() if self.allow_low_quality_matches else None

        below_low = matched_vals < self.low_threshold
        between = (matched_vals >= self.low_threshold) & (matched_vals < self.high_threshold)
        matches[below_low] = self.BELOW_LOW_THRESHOLD
        matches[between] = self.BETWEEN_THRESHOLDS

        if all_matches is not None:
            self.set_low_quality_matches_(matches, all_matches, match_quality_matrix)
        return matches

    def set_low_quality_matches_(self, matches: Tensor, all_matches: Tensor, match_quality_matrix: Tensor) -> None:
        """Restore, in place, the original match of every prediction that is some gt's best (ties included)."""
        best_quality_per_gt, _ = match_quality_matrix.max(dim=1)  # [M]
        _, pred_inds = torch.where(match_quality_matrix == best_quality_per_gt[:, None])
        matches[pred_inds] = all_matches[pred_inds]


class SSDMatcher(Matcher):
    """One threshold, and every ground truth also claims the prediction that overlaps it best."""

    def __init__(self, threshold: float) -> None:
        super().__init__(threshold, threshold, allow_low_quality_matches=False)

    def __call__(self, match_quality_matrix: Tensor) -> Tensor:
        """``[M gt, N predictions]`` quality -> ``[N]`` matched gt index, or -1."""
        matches = super().__call__(match_quality_matrix)
        _, best_pred_per_gt = match_quality_matrix.max(dim=1)  # [M]
        matches[best_pred_per_gt] = torch.arange(best_pred_per_gt.size(0), dtype=torch.int64,
                                                 device=best_pred_per_gt.device)
        return matches
