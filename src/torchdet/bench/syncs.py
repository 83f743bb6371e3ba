"""Host synchronisations of a forward, counted on the CPU as if the model ran on a GPU.

On CUDA the host stalls until the device catches up whenever a value must come back (a
``.item()``, ``bool(t)``, ``.tolist()``, ``.cpu()``, ``.numpy()``), whenever an op's output
shape depends on the data (``nonzero``, boolean-mask indexing, ``masked_select``, ``unique``,
``repeat_interleave`` without ``output_size``, ``bincount``) and at every blocking copy of
host memory to the device (``torch.tensor(data, device=...)``, ``host_tensor.to(device)``).

``EmulatedDevice`` finds these on the CPU. It tracks which tensors would live on the device:
the model's parameters and buffers, the inputs, everything computed from a device tensor, and
every factory call given a ``device=`` (``torch.zeros(n, device=x.device)``). Tensors created
from host data (``torch.tensor(list)``, ``torch.from_numpy``) or without a device are host
tensors. A ``TorchFunctionMode`` sees the Python calls (their ``device=`` argument, ``.to``,
``.cpu``, ``.tolist``, ``.numpy``); a ``TorchDispatchMode`` sees the aten ops that sync on
CUDA (``aten._local_scalar_dense``, ``aten.nonzero``, ``aten.index.Tensor`` with a bool index,
...) and propagates the placement. Each sync is counted once, in one of three kinds:

- ``read``: a device value read by the host (item/bool/int/float, tolist, cpu, numpy);
- ``shape``: an op on device data whose output size depends on the values;
- ``copy``: a blocking host-to-device copy; a non-scalar host tensor meeting device tensors
  in an op counts as one (CUDA would need the copy; 0-dim host tensors are passed as scalars).

Limits: it is an emulation. ``.to(x.device)`` on a host tensor is taken as a copy to the
device and ``.to("cpu")`` / ``.cpu()`` as a copy back; a ``device=`` that is the string
``"cpu"`` means the host. Copies made inside C++ kernels, asynchronous error checks (index
bounds) and allocator syncs are not seen; non-blocking copies from pinned memory would not
sync on CUDA but are counted. The first forward moves constants kept outside the module's
buffers (cell anchors) to the device, so ``count_syncs`` counts the second.

Syncs inside the ops that other code owns are reported apart, by region (``nms``,
``roi_align``), with the number of outermost calls of each. When ``nms`` has a dispatcher
(``torchdet.ops.dispatch``) the form that CUDA would run is forced; otherwise its region is
charged ``NMS_DEVICE_SYNCS`` per call, the cost of a device kernel (torchvision's reads its
suppression mask back and copies the kept indices to the device).

CLI: ``python -m torchdet.bench.syncs --builders fasterrcnn_resnet50_fpn retinanet_resnet50_fpn [--train]``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import weakref
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from torchdet.ops import _profiling

__all__ = ["EmulatedDevice", "SyncCount", "count_syncs", "builder_syncs", "main", "NMS_DEVICE_SYNCS"]

NMS_DEVICE_SYNCS = 2
REGIONS = ("nms", "roi_align")
KINDS = ("read", "shape", "copy")

_aten = torch.ops.aten
_SHAPE_OPS = {
    _aten.nonzero.default, _aten.masked_select.default, _aten.bincount.default, _aten.equal.default,
    _aten._unique.default, _aten._unique2.default, _aten.unique_dim.default, _aten.unique_consecutive.default,
    _aten.unique_dim_consecutive.default, _aten.nonzero_numpy.default,
}
_INDEX_OPS = {_aten.index.Tensor, _aten.index_put.default, _aten.index_put_.default,
              _aten._index_put_impl_.default}
_FACTORIES = {"tensor", "as_tensor", "zeros", "ones", "empty", "full", "arange", "linspace", "logspace",
              "rand", "randn", "randint", "randperm", "eye", "scalar_tensor", "empty_strided"}
_FROM_HOST_DATA = {"tensor", "as_tensor", "new_tensor"}


@dataclass
class SyncCount:
    """Syncs of one counted call: by kind, by region, and the events (``"kind op @region"``)."""

    read: int = 0
    shape: int = 0
    copy: int = 0
    regions: Dict[str, int] = field(default_factory=dict)
    calls: Dict[str, int] = field(default_factory=dict)
    events: List[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.read + self.shape + self.copy

    def outside(self, *regions: str) -> int:
        """Syncs not inside any of ``regions``."""
        return self.total - sum(self.regions.get(r, 0) for r in regions)

    def budget(self, nms_charge: Optional[int]) -> int:
        """The total, with the ``nms`` region replaced by ``nms_charge`` per call when given."""
        if nms_charge is None:
            return self.total
        return self.outside("nms") + nms_charge * self.calls.get("nms", 0)


class _CallCounter(dict):
    """``torchdet.ops._profiling``'s timing dict; it is written once per outermost op call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Dict[str, int] = {}

    def __setitem__(self, key: str, value: float) -> None:
        self.calls[key] = self.calls.get(key, 0) + 1
        super().__setitem__(key, value)


class EmulatedDevice:
    """Count the host syncs of code run inside ``with device.counting():`` (see the module doc).

    ``mark(tensors)`` puts tensors (and modules' parameters and buffers) on the emulated device.
    """

    def __init__(self) -> None:
        self._device: "weakref.WeakValueDictionary[int, torch.Tensor]" = weakref.WeakValueDictionary()
        self.count = SyncCount()
        self._calls: Optional[_CallCounter] = None

    # -- placement
    def is_device(self, t: Any) -> bool:
        return isinstance(t, torch.Tensor) and self._device.get(id(t)) is t

    def _set(self, t: torch.Tensor, on_device: bool) -> None:
        if on_device:
            self._device[id(t)] = t
        elif self._device.get(id(t)) is t:
            del self._device[id(t)]

    def mark(self, *items: Any) -> None:
        """Put tensors, modules (parameters and buffers) and nested lists/dicts of them on the device."""
        for item in items:
            if isinstance(item, torch.nn.Module):
                self.mark(list(item.parameters()), list(item.buffers()))
                continue
            for leaf in tree_flatten(item)[0]:
                if isinstance(leaf, torch.Tensor):
                    self._set(leaf, True)

    # -- counting
    def _region(self) -> str:
        for name in REGIONS:
            if _profiling._active.get(name):
                return name
        return "model"

    def record(self, kind: str, op: str) -> None:
        count = self.count
        setattr(count, kind, getattr(count, kind) + 1)
        region = self._region()
        if region != "model":
            count.regions[region] = count.regions.get(region, 0) + 1
        count.events.append(f"{kind} {op} @{region} {_caller()}")

    def reset(self) -> None:
        self.count = SyncCount()
        if self._calls is not None:
            self._calls.calls.clear()

    @contextlib.contextmanager
    def counting(self) -> Iterator["EmulatedDevice"]:
        previous = _profiling._seconds
        self._calls = _profiling._seconds = _CallCounter()
        try:
            with _Functions(self), _Aten(self):
                yield self
        finally:
            _profiling._seconds = previous
            self.count.calls = dict(self._calls.calls)
            self._calls = None

    def snapshot(self) -> SyncCount:
        """The count so far (with the op call counts)."""
        if self._calls is not None:
            self.count.calls = dict(self._calls.calls)
        return self.count


def _caller() -> str:
    """``module:line`` of the innermost torchdet frame outside this module (where the sync is written)."""
    frame = sys._getframe(2)
    while frame is not None:
        path = frame.f_code.co_filename.replace("\\", "/")
        if "/torchdet/" in path and not path.endswith("bench/syncs.py"):
            return f"{path.rsplit('/torchdet/', 1)[1]}:{frame.f_lineno}"
        frame = frame.f_back
    return "?"


def _tensors(values: Iterable[Any]) -> List[torch.Tensor]:
    return [v for v in tree_flatten(list(values))[0] if isinstance(v, torch.Tensor)]


def _targets_device(args: Sequence[Any], kwargs: Dict[str, Any], em: EmulatedDevice) -> Optional[bool]:
    """Where ``.to(...)`` sends a tensor: True (device), False (host), None (placement unchanged)."""
    target = kwargs.get("device")
    for a in args:
        if isinstance(a, (str, torch.device)) or (isinstance(a, torch.Tensor)):
            target = a
            break
    if target is None:
        return None
    if isinstance(target, torch.Tensor):
        return em.is_device(target)
    return not (isinstance(target, str) and target.startswith("cpu"))


def _alias(t: torch.Tensor) -> torch.Tensor:
    """A new tensor object over the same data: CPU ``.to``/``.cpu`` return ``self``, whose placement must not change."""
    return t.view_as(t)


class _Functions(TorchFunctionMode):
    """Python-level calls: factories' ``device=``, ``.to``, ``.cpu``, ``.tolist``, ``.numpy``."""

    def __init__(self, em: EmulatedDevice) -> None:
        super().__init__()
        self.em = em

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        em = self.em
        this = args[0] if args and isinstance(args[0], torch.Tensor) else None
        if name in ("tolist", "numpy") and this is not None and em.is_device(this):
            em.record("read", name)
        elif name == "cpu" and this is not None and em.is_device(this):
            em.record("read", "cpu")
            out = func(*args, **kwargs)
            out = _alias(out) if out is this else out
            em._set(out, False)
            return out
        elif name == "to" and this is not None:
            target = _targets_device(args[1:], kwargs, em)
            out = func(*args, **kwargs)
            if target is None or target == em.is_device(this):
                return out
            em.record("copy" if target else "read", "to")
            out = _alias(out) if out is this else out
            em._set(out, target)
            return out
        out = func(*args, **kwargs)
        if name in _FACTORIES and this is None and isinstance(out, torch.Tensor):
            device = kwargs.get("device")
            on_device = device is not None and not (isinstance(device, str) and device.startswith("cpu"))
            data = args[0] if args else kwargs.get("data")
            if name in ("tensor", "as_tensor") and isinstance(data, torch.Tensor):
                if on_device and not em.is_device(data):
                    em.record("copy", name)
                on_device = on_device or em.is_device(data)
            elif name in _FROM_HOST_DATA and on_device:
                em.record("copy", name)
            em._set(out, on_device)
        elif name == "new_tensor" and this is not None and isinstance(out, torch.Tensor):
            on_device = em.is_device(this) if kwargs.get("device") is None else True
            if on_device:
                em.record("copy", name)
            em._set(out, on_device)
        elif name == "from_numpy" and isinstance(out, torch.Tensor):
            em._set(out, False)
        return out


class _Aten(TorchDispatchMode):
    """aten ops: count the syncing ones on device data, propagate the placement to outputs."""

    def __init__(self, em: EmulatedDevice) -> None:
        super().__init__()
        self.em = em

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        em = self.em
        inputs = _tensors(list(args) + list(kwargs.values()))
        on_device = any(em.is_device(t) for t in inputs)
        if on_device:
            name = str(func.overloadpacket.__name__)
            if func is _aten._local_scalar_dense.default:
                em.record("read", "item")
            elif func in _SHAPE_OPS:
                em.record("shape", name)
            elif func in _INDEX_OPS and any(t.dtype in (torch.bool, torch.uint8) for t in _tensors(args[1:2])):
                em.record("shape", f"{name}[mask]")
            elif func is _aten.repeat_interleave.Tensor and kwargs.get("output_size") is None:
                em.record("shape", name)
            for t in inputs:
                if t.dim() > 0 and not em.is_device(t):
                    em.record("copy", f"{name}(host tensor)")
                    em._set(t, True)
        out = func(*args, **kwargs)
        for t in _tensors([out]):
            em._set(t, on_device)
        return out


def count_syncs(fn: Callable[[], Any], *device_values: Any, warmup: int = 1,
                nms_form: Optional[str] = None) -> SyncCount:
    """Syncs of ``fn()`` with ``device_values`` (modules, tensors, nested containers) on the device.

    ``fn`` runs ``warmup`` times first (counted apart and dropped). ``nms_form``: force this
    form of the ``nms`` op (default: the one CUDA would run, when ``nms`` has a dispatcher).
    """
    em = EmulatedDevice()
    em.mark(*device_values)
    with _nms_as_on_cuda(nms_form), em.counting():
        for _ in range(warmup):
            fn()
        em.reset()
        fn()
        return em.snapshot()


def _nms_dispatcher() -> Any:
    import torchdet.ops.nms  # noqa: F401  (registers its dispatcher, where it has one)
    from torchdet.ops.dispatch import all_dispatchers

    return all_dispatchers().get("nms")


@contextlib.contextmanager
def _nms_as_on_cuda(form: Optional[str]) -> Iterator[None]:
    dispatcher = _nms_dispatcher()
    if dispatcher is None:
        yield
        return
    from torchdet.ops.dispatch import forced

    with forced("nms", form or dispatcher.select("cuda", "eager")[0]):
        yield


def nms_charge() -> Optional[int]:
    """Syncs charged per NMS call: ``None`` when a device form is counted as it runs."""
    return None if _nms_dispatcher() is not None else NMS_DEVICE_SYNCS


@dataclass
class BuilderSyncs:
    builder: str
    mode: str
    total: int
    budget: int
    read: int
    shape: int
    copy: int
    regions: Dict[str, int]
    calls: Dict[str, int]
    events: List[str]


def _build(name: str, train: bool, **kwargs: Any) -> torch.nn.Module:
    from torchdet.bench.fill import fill_state_dict
    from torchdet.weights.registry import get_model_builder

    torch.manual_seed(0)
    model = get_model_builder(name)(weights=None, weights_backbone=None, **kwargs)
    fill_state_dict(model, 3)
    return model.train(train)


def builder_syncs(name: str, train: bool = False, height: int = 480, width: int = 640,
                  **kwargs: Any) -> BuilderSyncs:
    """Syncs of one eval forward (one image) or one training step's forward and backward (two images)."""
    from torchdet.bench.latency import benchmark_image
    from torchdet.bench.train_step import random_targets, target_kinds

    model = _build(name, train, **kwargs)
    images = [benchmark_image(height, width, seed=i) for i in range(2 if train else 1)]
    if train:
        masks, keypoints = target_kinds(model)
        targets = random_targets(2, height, width, masks=masks, num_keypoints=keypoints)

        def step() -> None:
            losses = model(images, targets)
            sum(losses.values()).backward()
            model.zero_grad(set_to_none=True)

        count = count_syncs(step, model, images, targets)
    else:
        with torch.no_grad():
            count = count_syncs(lambda: model(images), model, images)
    return BuilderSyncs(name, "train" if train else "eval", count.total, count.budget(nms_charge()),
                        count.read, count.shape, count.copy, count.regions, count.calls, count.events)


def format_syncs(rows: List[BuilderSyncs]) -> str:
    head = (f"{'builder':40s} {'mode':5s} {'budget':>6s} {'total':>5s} {'read':>4s} {'shape':>5s} {'copy':>4s} "
            f"{'nms':>4s} {'roi':>4s} {'nms calls':>9s}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.builder:40s} {r.mode:5s} {r.budget:6d} {r.total:5d} {r.read:4d} {r.shape:5d} {r.copy:4d} "
                     f"{r.regions.get('nms', 0):4d} {r.regions.get('roi_align', 0):4d} {r.calls.get('nms', 0):9d}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from torchdet.bench.latency import zoo_builders

    parser = argparse.ArgumentParser(prog="python -m torchdet.bench.syncs", description=__doc__.split("\n")[0])
    parser.add_argument("--builders", nargs="+", default=None, help="builder names (default: all twelve)")
    parser.add_argument("--train", action="store_true", help="also count a training step (2 images)")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--min-size", type=int, default=None,
                        help="resize short sides to this (R-CNN, RetinaNet, FCOS; the counts barely depend on it)")
    parser.add_argument("--events", action="store_true", help="list each sync")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    charge = nms_charge()
    print("budget = syncs outside NMS + " + (f"{charge} per NMS call (a device kernel's cost)" if charge
                                              else "NMS's own (the CUDA form, forced)"))
    rows = []
    for name in args.builders or zoo_builders():
        for train in ([False, True] if args.train else [False]):
            sizes = {} if args.min_size is None or name.startswith("ssd") else {
                "min_size": args.min_size, "max_size": args.min_size * 4 // 3}
            rows.append(builder_syncs(name, train, args.height, args.width, **sizes))
            print(format_syncs(rows[-1:]).splitlines()[-1] if len(rows) > 1 else format_syncs(rows), flush=True)
            if args.events:
                print("\n".join("    " + e for e in rows[-1].events))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in rows], f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
