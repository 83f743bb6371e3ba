"""Batching for detection: images differ in size and targets in length, so batches stay lists."""

from __future__ import annotations

from typing import Any, Sequence, Tuple


def collate_fn(batch: Sequence[Tuple[Any, ...]]) -> Tuple[Tuple[Any, ...], ...]:
    """Turn ``[(image, target), ...]`` into ``((image, ...), (target, ...))`` without stacking.

    Use as ``DataLoader(dataset, batch_size=..., collate_fn=collate_fn)``; the detection models
    take the image list and the target list as they are.
    """
    return tuple(zip(*batch))
