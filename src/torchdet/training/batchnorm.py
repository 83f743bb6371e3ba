"""BatchNorm statistics that match the weights being evaluated ("precise BN").

A BatchNorm layer normalises with the batch's statistics while training and with its running
averages (momentum 0.1) in eval mode. When a model trains from scratch at a high learning rate,
the weights move faster than those averages follow, so the eval-mode network sees activations
normalised by statistics of older weights: validation losses spike (to 10-100x the training
loss) and AP drops, although the weights are fine. Recomputing the statistics for the current
weights on a few training batches before validating removes the spike.

`recalibrate_batchnorm` resets every trainable-statistics norm (``nn.BatchNorm1d/2d/3d``,
``SyncBatchNorm``) and runs the model, in eval mode but with those norms in train mode and
``momentum=None`` (an exact cumulative average), over ``num_batches`` batches, without
gradients. Frozen norms (``FrozenBatchNorm2d``) and the weights are untouched.
"""
from __future__ import annotations

from typing import Iterable, List, Sequence

import torch
from torch import Tensor, nn

__all__ = ["batchnorm_layers", "recalibrate_batchnorm"]


def batchnorm_layers(model: nn.Module) -> List[nn.modules.batchnorm._BatchNorm]:
    """The norms of ``model`` that keep running statistics."""
    return [m for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterable[Sequence[Tensor]], num_batches: int) -> int:
    """Recompute the running mean/var of ``model``'s BatchNorm layers on ``num_batches`` batches.

    Args:
        model: a torchdet detector (any module whose eval-mode forward takes a list of images).
        batches: yields lists of ``[3, H, W]`` images on the model's device (targets not needed).
        num_batches: how many batches to average over (20-50 is plenty).

    Returns the number of batches used. The model is left in eval mode.
    """
    norms = batchnorm_layers(model)
    if not norms or num_batches < 1:
        model.eval()
        return 0
    momenta = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    used = 0
    try:
        for images in batches:
            if used >= num_batches:
                break
            model(list(images))
            used += 1
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
            m.eval()
    return used
