"""Stochastic depth (Huang et al., 2016): drop whole residual branches at random while training."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from torchdet.ops._fx import fx_leaf

__all__ = ["stochastic_depth", "StochasticDepth"]


@fx_leaf
def stochastic_depth(input: Tensor, p: float, mode: str, training: bool = True) -> Tensor:
    """Zero the input (per sample with ``mode="row"``, all at once with ``"batch"``) with
    probability ``p`` and scale the survivors by ``1 / (1 - p)``.

    Args:
        input: ``[N, ...]`` output of a residual branch.
        p: drop probability in ``[0, 1]``.
        mode: ``"row"`` (one draw per sample) or ``"batch"`` (one draw for the whole batch).
        training: when False, or ``p == 0``, the input is returned unchanged.

    Returns:
        A tensor shaped like ``input``.
    """
    if p < 0.0 or p > 1.0:
        raise ValueError(f"drop probability has to be between 0 and 1, but got {p}")
    if mode not in ["batch", "row"]:
        raise ValueError(f"mode has to be either 'batch' or 'row', but got {mode}")
    if not training or p == 0.0:
        return input
    survival_rate = 1.0 - p
    if mode == "row":
        size = [input.shape[0]] + [1] * (input.ndim - 1)
    else:
        size = [1] * input.ndim
    # Same draws as torchvision for the same seed: one bernoulli_ over a tensor of this size.
    noise = torch.empty(size, dtype=input.dtype, device=input.device).bernoulli_(survival_rate)
    if survival_rate > 0.0:
        noise.div_(survival_rate)
    return input * noise


class StochasticDepth(nn.Module):
    """``stochastic_depth`` as a module; active only in training mode."""

    def __init__(self, p: float, mode: str) -> None:
        super().__init__()
        self.p = p
        self.mode = mode

    def forward(self, input: Tensor) -> Tensor:
        """input: [N, ...] -> same shape."""
        return stochastic_depth(input, self.p, self.mode, self.training)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(p={self.p}, mode={self.mode})"
