"""Data loaders for training and evaluation: batching, per-epoch shuffling, device transfer.

Shuffling is seeded by (seed, epoch), so a resumed run sees the same batches as an
uninterrupted one; under torchrun each process takes its share through DistributedSampler.
"""
from __future__ import annotations

from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler

from torchdet.data.collate import collate_fn
from torchdet.data.samplers import GroupedBatchSampler, create_aspect_ratio_groups
from torchdet import distributed

collate = collate_fn  # ((image, ...), (target, ...)): images keep their own sizes


def move_targets(targets: Sequence[Dict[str, Any]], device: torch.device) -> List[Dict[str, Any]]:
    """Each target dict with its tensors on `device` (other values as they are)."""
    return [{k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in t.items()}
            for t in targets]


class EpochShuffleSampler(Sampler[int]):
    """A random permutation of range(n) that depends only on (seed, epoch); call `set_epoch`."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n = n
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


def make_train_loader(dataset: Dataset, *, batch_size: int, workers: int, seed: int,
                      group_by_aspect_ratio: bool = True) -> Tuple[DataLoader, Any]:
    """The training loader and its sampler (call `sampler.set_epoch(epoch)` before each epoch).

    With `group_by_aspect_ratio`, batches hold images of similar shape (portrait or landscape),
    which wastes less padding; it needs the dataset's `aspect_ratios()`. Under torchrun batches
    are not grouped: every process must run the same number of iterations.
    """
    info = distributed.current()
    sampler: Any
    if info.enabled:
        sampler = DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                     seed=seed)
    else:
        sampler = EpochShuffleSampler(len(dataset), seed)
    batch_sampler = None
    if group_by_aspect_ratio and not info.enabled and hasattr(dataset, "aspect_ratios"):
        batch_sampler = _grouped_batch_sampler(dataset, sampler, batch_size)
    if batch_sampler is None:
        batch_sampler = BatchSampler(sampler, batch_size, drop_last=False)
    loader = DataLoader(dataset, batch_sampler=batch_sampler, num_workers=workers, collate_fn=collate,
                        pin_memory=torch.cuda.is_available(), persistent_workers=False)
    return loader, sampler


def _grouped_batch_sampler(dataset: Any, sampler: Sampler[int], batch_size: int) -> Optional[Sampler]:
    """Batches of one orientation (portrait / landscape), or None when every image has the same
    orientation (plain batching is then the same)."""
    group_ids = create_aspect_ratio_groups(dataset.aspect_ratios(), k=0)
    if len(set(group_ids)) < 2:
        return None
    return GroupedBatchSampler(sampler, group_ids, batch_size)
