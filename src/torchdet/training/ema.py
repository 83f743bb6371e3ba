"""Exponential moving average (EMA) of a model's weights, evaluated instead of the raw weights.

The decay ramps up with the number of updates, ``decay * (1 - exp(-updates / tau))``, so the
average follows the fast-changing weights of the first iterations and then smooths them.
Floating-point parameters and buffers are averaged; integer buffers (BatchNorm's
``num_batches_tracked``) are copied.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Dict

import torch
from torch import nn


class ModelEMA:
    """Keeps `module`, a frozen copy of a model whose weights are the running average.

    Args:
        model: the model being trained (unwrapped, not DDP).
        decay: the decay once ramped up (0.9998 is typical for ~100k iterations; use lower
            values such as 0.999 for short runs).
        tau: the ramp-up time constant, in updates.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9998, tau: float = 2000.0) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.tau = tau
        self.updates = 0

    def current_decay(self) -> float:
        """The decay applied at the next update."""
        return self.decay * (1.0 - math.exp(-(self.updates + 1) / self.tau))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Blend `model`'s current weights into the average."""
        d = self.current_decay()
        self.updates += 1
        source = model.state_dict()
        for name, value in self.module.state_dict().items():
            new = source[name].detach()
            if value.dtype.is_floating_point:
                value.mul_(d).add_(new.to(value.dtype), alpha=1.0 - d)
            else:
                value.copy_(new)

    def state_dict(self) -> Dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates, "decay": self.decay, "tau": self.tau}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
        self.decay = float(state["decay"])
        self.tau = float(state["tau"])
