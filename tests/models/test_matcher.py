import pytest
import torch

from torchdet.models.matcher import Matcher, SSDMatcher


def test_thresholds():
    m = Matcher(0.7, 0.3, allow_low_quality_matches=False)
    quality = torch.tensor([[0.9, 0.5, 0.1, 0.3], [0.2, 0.6, 0.0, 0.7]])
    # col 0 -> gt 0 (0.9); col 1: 0.6 between; col 2: 0.1 below; col 3: 0.7 -> gt 1 (>= high).
    assert m(quality).tolist() == [0, Matcher.BETWEEN_THRESHOLDS, Matcher.BELOW_LOW_THRESHOLD, 1]


def test_low_quality_matches_restore_all_ties():
    m = Matcher(0.7, 0.3, allow_low_quality_matches=True)
    quality = torch.tensor([[0.5, 0.5, 0.1, 0.2], [0.1, 0.2, 0.0, 0.25]])
    # gt 0's best is 0.5 at cols 0 and 1 (tie, both restored); gt 1's best is 0.25 at col 3, which
    # is below low but restored to its own argmax (gt 1).
    assert m(quality).tolist() == [0, 0, -1, 1]


def test_low_quality_restores_argmax_not_gt():
    m = Matcher(0.7, 0.3, allow_low_quality_matches=True)
    quality = torch.tensor([[0.4, 0.1], [0.5, 0.0]])
    # gt 0's best pred is col 0, but col 0 overlaps gt 1 more: it gets gt 1.
    assert m(quality).tolist() == [1, -1]


def test_empty_raises():
    with pytest.raises(ValueError, match="ground-truth"):
        Matcher(0.5, 0.5)(torch.zeros(0, 5))
    with pytest.raises(ValueError, match="proposal"):
        Matcher(0.5, 0.5)(torch.zeros(3, 0))
    with pytest.raises(ValueError):
        Matcher(0.3, 0.5)


def test_ssd_matcher_every_gt_claims_its_best():
    m = SSDMatcher(0.5)
    quality = torch.tensor([[0.6, 0.2, 0.1], [0.1, 0.3, 0.1]])
    # col 0 -> gt 0 by threshold; gt 1 (best 0.3, below threshold) still claims col 1.
    assert m(quality).tolist() == [0, 1, -1]


def test_matchers_script():
    quality = torch.rand(3, 7, generator=torch.Generator().manual_seed(0))
    for matcher in (Matcher(0.5, 0.4, allow_low_quality_matches=True), Matcher(0.7, 0.3), SSDMatcher(0.5)):

        class Holder(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.matcher = m

            def forward(self, q: torch.Tensor) -> torch.Tensor:
                return self.matcher(q)

        assert torch.equal(torch.jit.script(Holder(matcher))(quality), matcher(quality))
