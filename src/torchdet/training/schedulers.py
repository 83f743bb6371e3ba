"""Learning-rate schedules stepped once per iteration: linear warm-up, then multistep or cosine.

`lr_factor` is the whole schedule as a pure function; `WarmupScheduler` applies it to an
optimiser and is resumable through its state_dict (it holds only numbers).
"""
from __future__ import annotations

import math
from typing import List, Sequence

import torch
from torch.optim.lr_scheduler import LRScheduler

SCHEDULES = ("multistep", "cosine", "constant")


def lr_factor(iteration: int, *, total_iters: int, warmup_iters: int, warmup_factor: float,
              schedule: str, milestones: Sequence[int] = (), gamma: float = 0.1,
              min_factor: float = 0.0) -> float:
    """The multiplier of the base learning rate at `iteration` (0-based).

    Warm-up rises linearly from `warmup_factor` to 1 over `warmup_iters`, multiplied with the
    main schedule: "multistep" multiplies by `gamma` at each milestone (in iterations),
    "cosine" falls from 1 to `min_factor` over `total_iters`, "constant" stays at 1.
    """
    if schedule == "multistep":
        factor = gamma ** sum(1 for m in milestones if iteration >= m)
    elif schedule == "cosine":
        progress = min(iteration / max(1, total_iters), 1.0)
        factor = min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    elif schedule == "constant":
        factor = 1.0
    else:
        raise ValueError(f"unknown lr schedule {schedule!r}; choose one of {SCHEDULES}")
    if iteration < warmup_iters:
        alpha = iteration / warmup_iters
        factor *= warmup_factor * (1.0 - alpha) + alpha
    return factor


class WarmupScheduler(LRScheduler):
    """`lr_factor` applied to every parameter group; call `step()` after each optimiser step.

    Args:
        optimizer: the optimiser.
        total_iters: iterations in the whole run (epochs * iterations per epoch).
        warmup_iters: length of the linear warm-up.
        warmup_factor: the factor at iteration 0.
        schedule: "multistep", "cosine" or "constant".
        milestones: for "multistep", the iterations where the rate is multiplied by `gamma`.
        gamma: the multistep factor.
        min_factor: for "cosine", the factor reached at the end.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *, total_iters: int, warmup_iters: int = 0,
                 warmup_factor: float = 0.001, schedule: str = "multistep", milestones: Sequence[int] = (),
                 gamma: float = 0.1, min_factor: float = 0.0, last_epoch: int = -1) -> None:
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown lr schedule {schedule!r}; choose one of {SCHEDULES}")
        self.total_iters = int(total_iters)
        self.warmup_iters = int(warmup_iters)
        self.warmup_factor = float(warmup_factor)
        self.schedule = schedule
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma = float(gamma)
        self.min_factor = float(min_factor)
        super().__init__(optimizer, last_epoch)

    def factor(self, iteration: int) -> float:
        return lr_factor(iteration, total_iters=self.total_iters, warmup_iters=self.warmup_iters,
                         warmup_factor=self.warmup_factor, schedule=self.schedule,
                         milestones=self.milestones, gamma=self.gamma, min_factor=self.min_factor)

    def get_lr(self) -> List[float]:  # type: ignore[override]
        f = self.factor(max(self.last_epoch, 0))
        return [base * f for base in self.base_lrs]
