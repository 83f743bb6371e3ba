"""Learning-rate schedules: warm-up, multistep, cosine, and resuming the scheduler."""
from __future__ import annotations

import math

import pytest
import torch

from torchdet.training.schedulers import WarmupScheduler, lr_factor


def test_warmup_then_multistep():
    kw = dict(total_iters=100, warmup_iters=10, warmup_factor=0.1, schedule="multistep", milestones=[50, 80])
    assert lr_factor(0, **kw) == pytest.approx(0.1)
    assert lr_factor(5, **kw) == pytest.approx(0.55)
    assert lr_factor(10, **kw) == 1.0
    assert lr_factor(50, **kw) == pytest.approx(0.1)
    assert lr_factor(99, **kw) == pytest.approx(0.01)


def test_cosine_reaches_min_factor():
    kw = dict(total_iters=100, warmup_iters=0, warmup_factor=1.0, schedule="cosine", min_factor=0.05)
    assert lr_factor(0, **kw) == 1.0
    assert lr_factor(50, **kw) == pytest.approx(0.05 + 0.95 * 0.5)
    assert lr_factor(100, **kw) == pytest.approx(0.05)


def test_unknown_schedule_is_rejected():
    with pytest.raises(ValueError, match="unknown lr schedule 'linear'"):
        lr_factor(0, total_iters=1, warmup_iters=0, warmup_factor=1, schedule="linear")


def _optimizer():
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.2)


def test_scheduler_steps_per_iteration_and_resumes():
    opt = _optimizer()
    sched = WarmupScheduler(opt, total_iters=20, warmup_iters=4, warmup_factor=0.5, schedule="cosine")
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
    lrs = []
    for _ in range(7):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    state = sched.state_dict()
    opt2 = _optimizer()
    sched2 = WarmupScheduler(opt2, total_iters=20, warmup_iters=4, warmup_factor=0.5, schedule="cosine")
    sched2.load_state_dict(state)
    opt2.param_groups[0]["lr"] = opt.param_groups[0]["lr"]
    for _ in range(3):
        opt.step(); sched.step()
        opt2.step(); sched2.step()
        assert opt.param_groups[0]["lr"] == opt2.param_groups[0]["lr"]
    assert lrs[3] == pytest.approx(0.2 * 0.5 * (1 + math.cos(math.pi * 4 / 20)))
