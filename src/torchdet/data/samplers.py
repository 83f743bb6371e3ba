"""Aspect-ratio grouped batching: every batch holds images of similar shape, so padding them to a
common size (the models' ``GeneralizedRCNNTransform``) wastes little memory and compute.

Typical use::

    group_ids = create_aspect_ratio_groups(dataset.aspect_ratios(), k=3)
    batch_sampler = GroupedBatchSampler(RandomSampler(dataset), group_ids, batch_size=4)
    loader = DataLoader(dataset, batch_sampler=batch_sampler, collate_fn=collate_fn)
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from typing import Dict, Iterator, List, Sequence

import numpy as np
from torch.utils.data import Sampler


def aspect_ratio_bins(k: int) -> List[float]:
    """The 2k + 1 bin edges ``2 ** linspace(-1, 1, 2k + 1)`` (aspect 1/2 .. 2), or ``[1.0]`` for k = 0."""
    if k < 0:
        raise ValueError(f"k={k}; expected k >= 0 (k = 0 splits only portrait from landscape)")
    if k == 0:
        return [1.0]
    return (2.0 ** np.linspace(-1.0, 1.0, 2 * k + 1)).tolist()


def create_aspect_ratio_groups(aspect_ratios: Sequence[float], k: int = 0) -> List[int]:
    """Group id of each image: the index of the bin its width / height falls in.

    There are ``2k + 2`` groups: below 1/2, ``2k`` bins spaced evenly in log2 between 1/2 and 2,
    and above 2 (with ``k = 0``: portrait vs landscape/square).

    Args:
        aspect_ratios: width / height of each image (``dataset.aspect_ratios()``).
        k: bins per octave on each side of 1.
    """
    bins = aspect_ratio_bins(k)
    groups = []
    for index, ratio in enumerate(aspect_ratios):
        if not ratio > 0 or not np.isfinite(ratio):
            raise ValueError(f"aspect ratio {ratio!r} of image {index} is not a positive finite number")
        groups.append(bisect.bisect_right(bins, float(ratio)))
    return groups


class GroupedBatchSampler(Sampler[List[int]]):
    """Batch the indices of ``sampler`` so that each batch has a single group id.

    Indices are taken in the sampler's order and buffered per group; a group's buffer is yielded
    as a batch as soon as it holds ``batch_size`` indices (so the sampler's shuffling still mixes
    groups across batches). When the sampler is exhausted, each non-empty buffer is yielded as a
    last, smaller batch (``drop_last=False``: every index is used exactly once per epoch) or
    discarded (``drop_last=True``: all batches are full). torchvision's detection references
    instead top leftover batches up with repeated indices of the same group.

    Args:
        sampler: yields dataset indices (``RandomSampler``, ``SequentialSampler``, ``DistributedSampler``...).
        group_ids: group of every dataset index (``create_aspect_ratio_groups``).
        batch_size: the size of a full batch.
        drop_last: discard the leftover partial batches.

    ``len()`` counts batches from the group sizes: when ``len(sampler) == len(group_ids)`` it
    assumes the sampler visits every index once (``RandomSampler`` without replacement,
    ``SequentialSampler``); otherwise it iterates the sampler once to count.
    """

    def __init__(self, sampler: Sampler[int], group_ids: Sequence[int], batch_size: int, drop_last: bool = False) -> None:
        if not isinstance(sampler, Sampler):
            raise TypeError(f"sampler must be a torch.utils.data.Sampler; got {type(sampler).__name__}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r}; expected a positive int")
        self.sampler = sampler
        self.group_ids = [int(group) for group in group_ids]
        self.batch_size = batch_size
        self.drop_last = drop_last

    def __iter__(self) -> Iterator[List[int]]:
        buffers: Dict[int, List[int]] = defaultdict(list)
        for index in self.sampler:
            buffer = buffers[self._group_of(index)]
            buffer.append(index)
            if len(buffer) == self.batch_size:
                yield list(buffer)
                buffer.clear()
        if not self.drop_last:
            for buffer in buffers.values():
                if buffer:
                    yield list(buffer)

    def _group_of(self, index: int) -> int:
        if not 0 <= index < len(self.group_ids):
            raise IndexError(f"sampler gave index {index} but group_ids has {len(self.group_ids)} entries")
        return self.group_ids[index]

    def _group_counts(self) -> Counter:
        if len(self.sampler) == len(self.group_ids):  # the sampler covers the dataset once
            return Counter(self.group_ids)
        return Counter(self._group_of(index) for index in self.sampler)

    def __len__(self) -> int:
        counts = self._group_counts().values()
        if self.drop_last:
            return sum(count // self.batch_size for count in counts)
        return sum(-(-count // self.batch_size) for count in counts)
