"""The sync counter's rules on small cases, and the sync budgets of the detectors' forwards."""
from __future__ import annotations

import pytest
import torch

from torchdet.bench.syncs import EmulatedDevice, builder_syncs, count_syncs


def _count(fn, *device_values):
    return count_syncs(fn, *device_values, warmup=0)


def test_reads_of_device_values_are_counted() -> None:
    x = torch.arange(6.0)
    count = _count(lambda: (x.sum().item(), bool(x[0] > 1), int(x[1]), x.tolist(), x.cpu(), x.numpy()), x)
    assert (count.read, count.shape, count.copy) == (6, 0, 0)


def test_host_tensors_cost_nothing() -> None:
    host = torch.arange(6.0)
    count = _count(lambda: (host.sum().item(), host[host > 2], host.nonzero(), host.tolist()))
    assert count.total == 0


def test_data_dependent_shapes_are_counted() -> None:
    x = torch.tensor([0.0, 2.0, 3.0, 0.0])
    y = x.clone()

    def fn() -> None:
        x.nonzero()
        x[x > 1]
        torch.where(x > 1)
        torch.unique(x)
        x.repeat_interleave(torch.tensor([1, 2, 1, 1]).to(x.device))
        y[y > 1] = 0.0

    count = _count(fn, x, y)
    assert count.shape == 6
    assert count.copy == 1  # the repeat counts, sent to the device


def test_copies_to_the_device_are_counted() -> None:
    x = torch.ones(3)
    def fn() -> None:
        torch.tensor([1.0, 2.0, 3.0], device=x.device)  # a blocking copy
        torch.as_tensor([1.0, 2.0, 3.0], device=x.device)
        torch.zeros(3, device=x.device)  # allocated there: free
        x * torch.tensor(2.0)  # a 0-dim host tensor is passed as a scalar
        x + torch.tensor([1.0, 2.0, 3.0])  # CUDA would need the copy
        torch.from_numpy(x.cpu().numpy()).to(x.device)  # back (one read: numpy() of a host copy) and forth

    count = _count(fn, x)
    assert (count.copy, count.read) == (4, 1), count.events


def test_derived_tensors_stay_on_the_device() -> None:
    em = EmulatedDevice()
    x = torch.ones(3)
    em.mark(x)
    with em.counting():
        y = (x * 2)[1:]
        z = torch.zeros(2)  # no device=: the host
        w = torch.zeros(2, device=x.device)
    assert em.is_device(y) and not em.is_device(z) and em.is_device(w)


# Budgets: syncs of one eval forward (1 image) with NMS charged as a device kernel. The issue's
# targets: Faster R-CNN at or below torchvision's (about 23 by reading its code), one-stage
# models at most 10. The numbers below are what this code reaches; they may only go down.
EVAL_BUDGETS = {
    "fasterrcnn_resnet50_fpn": 22,  # target 23; 15 of them in the multi-level RoI pooler
    "retinanet_resnet50_fpn": 3,
    "fcos_resnet50_fpn": 3,
    "ssdlite320_mobilenet_v3_large": 5,
}
SMALL = {"fasterrcnn_resnet50_fpn": {"min_size": 160, "max_size": 200},
         "retinanet_resnet50_fpn": {"min_size": 160, "max_size": 200},
         "fcos_resnet50_fpn": {"min_size": 160, "max_size": 200}}


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.slow) if n != "ssdlite320_mobilenet_v3_large" and n != "retinanet_resnet50_fpn"
    else n for n in EVAL_BUDGETS])
def test_eval_sync_budget(name: str) -> None:
    row = builder_syncs(name, train=False, height=120, width=160, **SMALL.get(name, {}))
    assert row.budget <= EVAL_BUDGETS[name], "\n".join(row.events)
    assert row.budget <= (23 if name.startswith("fasterrcnn") else 10)


# A training step's forward and backward (2 images, 3 boxes each): what this code reaches. Most
# of what is left is in the matcher and the samplers (masked assignment, nonzero, randperm).
TRAIN_BUDGETS = {"retinanet_resnet50_fpn": 22, "ssdlite320_mobilenet_v3_large": 17, "fasterrcnn_resnet50_fpn": 55}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TRAIN_BUDGETS))
def test_train_sync_budget(name: str) -> None:
    row = builder_syncs(name, train=True, height=120, width=160, **SMALL.get(name, {}))
    assert row.budget <= TRAIN_BUDGETS[name], "\n".join(row.events)
