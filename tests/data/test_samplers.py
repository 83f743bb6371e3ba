"""Aspect-ratio grouping and the grouped batch sampler."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler

from torchdet.data.coco import CocoDetection
from torchdet.data.collate import collate_fn
from torchdet.data.samplers import GroupedBatchSampler, aspect_ratio_bins, create_aspect_ratio_groups


def test_aspect_ratio_groups():
    assert create_aspect_ratio_groups([0.5, 1.0, 1.5, 0.99], k=0) == [0, 1, 1, 0]
    assert aspect_ratio_bins(1) == pytest.approx([0.5, 1.0, 2.0])
    assert create_aspect_ratio_groups([0.3, 0.7, 1.2, 2.5], k=1) == [0, 1, 2, 3]
    assert max(create_aspect_ratio_groups([0.1 * i for i in range(1, 40)], k=3)) == 2 * 3 + 1
    with pytest.raises(ValueError, match="image 1 is not a positive"):
        create_aspect_ratio_groups([1.0, 0.0])
    with pytest.raises(ValueError, match="k=-1"):
        create_aspect_ratio_groups([1.0], k=-1)


@pytest.mark.parametrize("batch_size", [1, 3, 4])
def test_batches_hold_one_group_and_cover_every_index(batch_size):
    group_ids = [0, 1, 1, 2, 0, 0, 1, 2, 2, 2, 0, 1, 1]
    torch.manual_seed(0)
    sampler = GroupedBatchSampler(RandomSampler(range(len(group_ids))), group_ids, batch_size)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert sorted(index for batch in batches for index in batch) == list(range(len(group_ids)))
    for batch in batches:
        assert len({group_ids[index] for index in batch}) == 1
        assert 1 <= len(batch) <= batch_size


def test_drop_last_gives_only_full_batches():
    group_ids = [0] * 5 + [1] * 7
    sampler = GroupedBatchSampler(SequentialSampler(range(12)), group_ids, 3, drop_last=True)
    batches = list(sampler)
    assert batches == [[0, 1, 2], [5, 6, 7], [8, 9, 10]] and len(sampler) == 3


def test_argument_errors():
    with pytest.raises(ValueError, match="batch_size=0"):
        GroupedBatchSampler(SequentialSampler(range(2)), [0, 0], 0)
    with pytest.raises(TypeError, match="Sampler"):
        GroupedBatchSampler([0, 1], [0, 0], 1)
    with pytest.raises(IndexError, match="group_ids has 2 entries"):
        list(GroupedBatchSampler(SequentialSampler(range(3)), [0, 0], 1))


def test_with_a_dataloader(shapes_files):
    dataset = CocoDetection(shapes_files["train"])
    groups = create_aspect_ratio_groups(dataset.aspect_ratios(), k=2)
    loader = DataLoader(dataset, batch_sampler=GroupedBatchSampler(SequentialSampler(dataset), groups, 4), collate_fn=collate_fn)
    images, targets = next(iter(loader))
    assert isinstance(images, tuple) and len(images) == 4 and len(targets) == 4
    assert images[0].shape == (3, 96, 96) and "boxes" in targets[0]
    assert collate_fn([(1, "a"), (2, "b")]) == ((1, 2), ("a", "b"))
