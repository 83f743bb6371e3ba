"""EMA of weights: the ramped decay, integer buffers, state round trip."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from torchdet.training.ema import ModelEMA


def test_update_blends_with_ramped_decay():
    model = nn.Sequential(nn.Linear(1, 1, bias=False), nn.BatchNorm1d(1))
    with torch.no_grad():
        model[0].weight.fill_(0.0)
    ema = ModelEMA(model, decay=0.9, tau=1.0)
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    model[1].num_batches_tracked += 5
    ema.update(model)
    d = 0.9 * (1 - math.exp(-1))
    assert float(ema.module[0].weight) == pytest.approx(1 - d)
    assert int(ema.module[1].num_batches_tracked) == 5
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_state_round_trip_and_bad_decay():
    model = nn.Linear(2, 2)
    ema = ModelEMA(model, decay=0.99)
    ema.update(model)
    other = ModelEMA(nn.Linear(2, 2), decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 1 and other.decay == 0.99
    assert torch.equal(other.module.weight, ema.module.weight)
    with pytest.raises(ValueError, match="decay must be in"):
        ModelEMA(model, decay=1.5)
