"""BalancedPositiveNegativeSampler: pick a fixed-size, positive-capped training sample per image."""
# No `from __future__ import annotations` here: TorchScript converts a sampler held by a module only
# when its annotations are real types (a string `Optional[torch.Generator]` makes the conversion fail).

from typing import List, Optional, Tuple

import torch
from torch import Tensor


class BalancedPositiveNegativeSampler:
    """Sample up to ``batch_size_per_image`` elements per image, at most ``positive_fraction`` of them positive.

    Labels per element: ``>= 1`` positive, ``0`` negative, anything else (``-1``) ignored.
    Missing positives are made up with negatives. Sampling uses ``torch.randperm``, drawing from
    ``generator`` when one is given (the global generator otherwise).
    """

    def __init__(self, batch_size_per_image: int, positive_fraction: float) -> None:
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction

    def __call__(self, matched_idxs: List[Tensor], generator: Optional[torch.Generator] = None
                 ) -> Tuple[List[Tensor], List[Tensor]]:
        """Per image ``[N_i]`` labels -> per image ``[N_i]`` uint8 masks of sampled positives and negatives."""
        pos_masks, neg_masks = [], []
        for labels in matched_idxs:
            positive = torch.where(labels >= 1)[0]
            negative = torch.where(labels == 0)[0]

            num_pos = min(positive.numel(), int(self.batch_size_per_image * self.positive_fraction))
            num_neg = min(negative.numel(), self.batch_size_per_image - num_pos)

            perm_pos = torch.randperm(positive.numel(), generator=generator, device=positive.device)[:num_pos]
            perm_neg = torch.randperm(negative.numel(), generator=generator, device=negative.device)[:num_neg]

            pos_mask = torch.zeros_like(labels, dtype=torch.uint8)
            neg_mask = torch.zeros_like(labels, dtype=torch.uint8)
            pos_mask[positive[perm_pos]] = 1
            neg_mask[negative[perm_neg]] = 1
            pos_masks.append(pos_mask)
            neg_masks.append(neg_mask)
        return pos_masks, neg_masks
