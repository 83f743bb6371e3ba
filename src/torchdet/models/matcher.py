"""Matchers: assign each prediction (anchor or proposal) to a ground-truth box, or to none.

Plain classes that TorchScript compiles when a scripted module holds one; the two constants
are also instance attributes because scripted classes cannot read class attributes.
"""
from typing import Optional

import torch
from torch import Tensor


def match_by_quality(match_quality_matrix: Tensor, high_threshold: float, low_threshold: float,
                     allow_low_quality_matches: bool) -> Tensor:
    """``[M gt, N predictions]`` quality -> ``[N]`` matched gt index, or -1 (below low) / -2 (between).

    See :class:`Matcher`; raises ValueError when there is no ground truth or no prediction.
    """
    if match_quality_matrix.numel() == 0:
        if match_quality_matrix.shape[0] == 0:
            raise ValueError("No ground-truth boxes available for one of the images during training")
        raise ValueError("No proposal boxes available for one of the images during training")

    matched_vals, matches = match_quality_matrix.max(dim=0)  # [N]
    all_matches: Optional[Tensor] = None
    if allow_low_quality_matches:
        all_matches = matches.clone()

    below_low = matched_vals < low_threshold
    between = (matched_vals >= low_threshold) & (matched_vals < high_threshold)
    matches[below_low] = -1  # Matcher.BELOW_LOW_THRESHOLD (scripted code cannot read a global int)
    matches[between] = -2  # Matcher.BETWEEN_THRESHOLDS

    if all_matches is not None:
        restore_low_quality_matches_(matches, all_matches, match_quality_matrix)
    return matches


def restore_low_quality_matches_(matches: Tensor, all_matches: Tensor, match_quality_matrix: Tensor) -> None:
    """Restore, in place, the original match of every prediction that is some gt's best (ties included)."""
    best_quality_per_gt, _ = match_quality_matrix.max(dim=1)  # [M]
    _, pred_inds = torch.where(match_quality_matrix == best_quality_per_gt[:, None])
    matches[pred_inds] = all_matches[pred_inds]


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
    __annotations__ = {"BELOW_LOW_THRESHOLD": int, "BETWEEN_THRESHOLDS": int}

    def __init__(self, high_threshold: float, low_threshold: float, allow_low_quality_matches: bool = False) -> None:
        if low_threshold > high_threshold:
            raise ValueError(
                f"Matcher needs low_threshold <= high_threshold; got low {low_threshold}, high {high_threshold}."
            )
        self.BELOW_LOW_THRESHOLD = -1
        self.BETWEEN_THRESHOLDS = -2
        self.high_threshold = high_threshold
        self.low_threshold = low_threshold
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, match_quality_matrix: Tensor) -> Tensor:
        """``[M gt, N predictions]`` quality -> ``[N]`` matched gt index, or -1 / -2."""
        return match_by_quality(match_quality_matrix, self.high_threshold, self.low_threshold,
                                self.allow_low_quality_matches)

    def set_low_quality_matches_(self, matches: Tensor, all_matches: Tensor, match_quality_matrix: Tensor) -> None:
        """Restore, in place, the original match of every prediction that is some gt's best (ties included)."""
        restore_low_quality_matches_(matches, all_matches, match_quality_matrix)


class SSDMatcher:
    """One threshold, and every ground truth also claims the prediction that overlaps it best.

    Matches as ``Matcher(threshold, threshold)`` and has its attributes; it is a separate class
    (not a subclass) because TorchScript classes cannot inherit.
    """

    BELOW_LOW_THRESHOLD = -1
    BETWEEN_THRESHOLDS = -2
    __annotations__ = {"BELOW_LOW_THRESHOLD": int, "BETWEEN_THRESHOLDS": int}

    def __init__(self, threshold: float) -> None:
        self.BELOW_LOW_THRESHOLD = -1
        self.BETWEEN_THRESHOLDS = -2
        self.high_threshold = threshold
        self.low_threshold = threshold
        self.allow_low_quality_matches = False

    def __call__(self, match_quality_matrix: Tensor) -> Tensor:
        """``[M gt, N predictions]`` quality -> ``[N]`` matched gt index, or -1."""
        matches = match_by_quality(match_quality_matrix, self.high_threshold, self.low_threshold, False)
        _, best_pred_per_gt = match_quality_matrix.max(dim=1)  # [M]
        matches[best_pred_per_gt] = torch.arange(best_pred_per_gt.size(0), dtype=torch.int64,
                                                 device=best_pred_per_gt.device)
        return matches
