import torch

from torchdet.models.sampler import BalancedPositiveNegativeSampler


def test_counts_and_disjoint():
    torch.manual_seed(0)
    labels = torch.tensor([1] * 30 + [0] * 100 + [-1] * 10)
    pos, neg = BalancedPositiveNegativeSampler(64, 0.25)([labels, labels.float()])
    for p, n in zip(pos, neg):
        assert p.dtype == torch.uint8 and p.shape == labels.shape
        assert int(p.sum()) == 16 and int(n.sum()) == 48
        assert bool((labels[p.bool()] >= 1).all()) and bool((labels[n.bool()] == 0).all())


def test_few_positives_filled_with_negatives_and_cap_by_availability():
    labels = torch.tensor([2] * 3 + [0] * 10 + [-1] * 5)
    pos, neg = BalancedPositiveNegativeSampler(8, 0.5)([labels])
    assert int(pos[0].sum()) == 3 and int(neg[0].sum()) == 5
    pos, neg = BalancedPositiveNegativeSampler(10**9, 0.5)([labels])
    assert int(pos[0].sum()) == 3 and int(neg[0].sum()) == 10
