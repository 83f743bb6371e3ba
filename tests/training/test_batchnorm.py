"""Precise BN: stale running statistics are recomputed from the data for the current weights."""
from __future__ import annotations

import torch
from torch import nn

from torchdet.ops.misc import FrozenBatchNorm2d
from torchdet.training.batchnorm import batchnorm_layers, recalibrate_batchnorm


class _Net(nn.Module):
    """Eval-mode forward takes a list of images, as the detectors' does."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.frozen = FrozenBatchNorm2d(4)

    def forward(self, images):
        return self.frozen(self.bn(self.conv(torch.stack(images))))


def _batches(seed, n, count=4):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(3, 8, 8, generator=g) * 3 + 2 for _ in range(n)] for _ in range(count)]


def test_recomputes_the_exact_statistics_of_the_batches():
    net = _Net()
    net.bn.running_mean.fill_(100.0)  # stale: as if from much older weights
    net.bn.running_var.fill_(1e-3)
    batches = _batches(0, 2)
    assert recalibrate_batchnorm(net, batches, num_batches=3) == 3
    with torch.no_grad():
        acts = torch.cat([net.conv(torch.stack(b)) for b in batches[:3]])  # equal-size batches
    torch.testing.assert_close(net.bn.running_mean, acts.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    # cumulative average of the per-batch unbiased variances
    per_batch = torch.stack([net.conv(torch.stack(b)).detach().var(dim=(0, 2, 3), unbiased=True) for b in batches[:3]])
    torch.testing.assert_close(net.bn.running_var, per_batch.mean(0), rtol=1e-4, atol=1e-5)
    assert not net.training and not net.bn.training and net.bn.momentum == 0.1


def test_recalibrated_eval_output_is_normalised_and_frozen_norms_untouched():
    net = _Net()
    net.bn.running_mean.fill_(50.0)
    frozen = {k: v.clone() for k, v in net.frozen.state_dict().items()}
    weights = net.conv.weight.clone()
    stale = net.eval()([torch.randn(3, 8, 8) * 3 + 2]).abs().mean()
    recalibrate_batchnorm(net, _batches(1, 4), num_batches=4)
    fresh = net(_batches(2, 4, 1)[0])
    assert fresh.mean().abs() < 0.3 and 0.7 < fresh.std() < 1.3 and stale > 10
    assert all(torch.equal(v, net.frozen.state_dict()[k]) for k, v in frozen.items())
    assert torch.equal(weights, net.conv.weight)
    assert batchnorm_layers(net) == [net.bn]
