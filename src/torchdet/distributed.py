"""Several processes with torch.distributed, as launched by `torchrun`, and this process's device.

`torchrun --nproc_per_node N -m torchdet.cli train ...` sets RANK, WORLD_SIZE and LOCAL_RANK;
`init_distributed` reads them and joins the group (gloo on CPU, nccl on GPU). Without them
everything here is a no-op for a single process. `resolve_device` turns `--device` into the
device this process uses.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group torchrun set up, or return a single-process DistInfo.

    On CUDA each process takes GPU LOCAL_RANK and uses nccl; on CPU it uses gloo.
    """
    if dist.is_available() and dist.is_initialized():
        return current()
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) <= 1:
        return DistInfo()
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistInfo(rank, world_size, local_rank)


def current() -> DistInfo:
    """The DistInfo of this process (single-process when no group is initialised)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))


def barrier() -> None:
    if current().enabled:
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_gather_objects(obj: Any) -> List[Any]:
    """Every process's `obj`, in rank order (just `[obj]` for a single process)."""
    info = current()
    if not info.enabled:
        return [obj]
    gathered: List[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """`obj` of process `src`, on every process."""
    if not current().enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def mean_over_processes(values: Dict[str, float]) -> Dict[str, float]:
    """Average each float of `values` over the processes (the same keys on every process)."""
    info = current()
    if not info.enabled or not values:
        return dict(values)
    names = sorted(values)
    t = torch.tensor([float(values[k]) for k in names], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    t /= info.world_size
    return {k: float(v) for k, v in zip(names, t.tolist())}


def resolve_device(name: Optional[str] = None) -> torch.device:
    """`name` ("cpu", "cuda", "cuda:1", "mps"), or CUDA when available (this process's GPU
    under torchrun), else the CPU."""
    if name not in (None, "", "auto"):
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {name}: CUDA is not available here; use --device cpu")
        if device.type == "cuda" and device.index is None and launched_by_torchrun():
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return device
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")
