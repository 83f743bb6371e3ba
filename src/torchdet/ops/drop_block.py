"""DropBlock (Ghiasi et al., 2018): drop contiguous square (cubic) regions of feature maps while training.

Block centres are drawn with probability ``gamma = p * area / (block_size**d * valid_centres)``
over the positions where a whole block fits; each centre zeroes the ``block_size``-wide block
around it (a max pool of the centre map), and the kept values are rescaled by
``numel / (eps + kept)`` so the expected sum is unchanged. ``block_size`` is capped at the
smallest spatial size. The random draws are torchvision's (one ``bernoulli_`` per call).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchdet.errors import InvalidOpInputError
from torchdet.ops._fx import fx_leaf

__all__ = ["drop_block2d", "drop_block3d", "DropBlock2d", "DropBlock3d"]


def _check(p: float, input: Tensor, dims: int) -> None:
    if p < 0.0 or p > 1.0:
        raise ValueError(f"drop probability has to be between 0 and 1, but got {p}.")
    if input.ndim != dims + 2:
        raise ValueError(f"input should be {dims + 2} dimensional. Got {input.ndim} dimensions.")


def _apply(input: Tensor, noise: Tensor, block_size: int, inplace: bool, eps: float) -> Tensor:
    """Grow the block centres in ``noise`` to blocks, then zero and rescale ``input``."""
    pad = block_size // 2
    dims = input.ndim - 2
    noise = F.pad(noise, [pad] * (2 * dims), value=0)
    pool = F.max_pool2d if dims == 2 else F.max_pool3d
    noise = pool(noise, stride=1, kernel_size=block_size, padding=pad)
    if noise.shape != input.shape:
        raise InvalidOpInputError(
            f"drop_block{dims}d: block_size {block_size} (capped at the smallest spatial size) must be odd so that "
            f"the blocks tile an input of shape {list(input.shape)}"
        )
    keep = 1 - noise
    scale = keep.numel() / (eps + keep.sum())
    if inplace:
        return input.mul_(keep).mul_(scale)
    return input * keep * scale


@fx_leaf
def drop_block2d(
    input: Tensor, p: float, block_size: int, inplace: bool = False, eps: float = 1e-06, training: bool = True
) -> Tensor:
    """DropBlock on ``[N, C, H, W]`` with square blocks of ``block_size``.

    Returns the input unchanged when not ``training`` or ``p == 0``.
    """
    _check(p, input, 2)
    if not training or p == 0.0:
        return input
    n, c, h, w = input.size()
    block_size = min(block_size, w, h)
    gamma = (p * h * w) / ((block_size**2) * ((h - block_size + 1) * (w - block_size + 1)))
    noise = torch.empty((n, c, h - block_size + 1, w - block_size + 1), dtype=input.dtype, device=input.device)
    noise.bernoulli_(gamma)
    return _apply(input, noise, block_size, inplace, eps)


@fx_leaf
def drop_block3d(
    input: Tensor, p: float, block_size: int, inplace: bool = False, eps: float = 1e-06, training: bool = True
) -> Tensor:
    """DropBlock on ``[N, C, D, H, W]`` with cubic blocks of ``block_size``.

    Returns the input unchanged when not ``training`` or ``p == 0``.
    """
    _check(p, input, 3)
    if not training or p == 0.0:
        return input
    n, c, d, h, w = input.size()
    block_size = min(block_size, d, h, w)
    valid = (d - block_size + 1) * (h - block_size + 1) * (w - block_size + 1)
    gamma = (p * d * h * w) / ((block_size**3) * valid)
    noise = torch.empty(
        (n, c, d - block_size + 1, h - block_size + 1, w - block_size + 1), dtype=input.dtype, device=input.device
    )
    noise.bernoulli_(gamma)
    return _apply(input, noise, block_size, inplace, eps)


class DropBlock2d(nn.Module):
    """``drop_block2d`` as a module; active only in training mode."""

    def __init__(self, p: float, block_size: int, inplace: bool = False, eps: float = 1e-06) -> None:
        super().__init__()
        self.p = p
        self.block_size = block_size
        self.inplace = inplace
        self.eps = eps

    def forward(self, input: Tensor) -> Tensor:
        """input: [N, C, H, W] -> same shape."""
        return drop_block2d(input, self.p, self.block_size, self.inplace, self.eps, self.training)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(p={self.p}, block_size={self.block_size}, inplace={self.inplace})"


class DropBlock3d(DropBlock2d):
    """``drop_block3d`` as a module; active only in training mode."""

    def forward(self, input: Tensor) -> Tensor:
        """input: [N, C, D, H, W] -> same shape."""
        return drop_block3d(input, self.p, self.block_size, self.inplace, self.eps, self.training)
