"""One name per op, several implementations, one rule that chooses between them.

Each op with fast forms (``nms``, ``roi_align``, keypoint decoding, mask pasting, ...) owns an
``OpDispatcher``. Its *reference* implementation is plain torch: it defines the semantics, and
it is what TorchScript compiles. Accelerators register beside it with the devices and modes
they serve::

    nms_dispatch = OpDispatcher("nms", reference=_nms_reference)

    @nms_dispatch.register("numpy", devices=("cpu",), modes=("eager",))
    def _nms_numpy(boxes, scores, iou_threshold): ...

    def nms(boxes, scores, iou_threshold):          # what models call
        if torch.jit.is_scripting():
            return _nms_reference(boxes, scores, iou_threshold)
        return nms_dispatch(boxes.device, boxes, scores, iou_threshold)

The public op is the only caller of its dispatcher; models call the op and never choose.
Tests walk ``implementations()`` and compare every form with the reference on the same inputs.

Modes, from ``current_mode()``:

- ``"eager"``: plain Python execution;
- ``"trace"``: ``torch.jit.trace`` or the legacy (TorchScript-based) ONNX exporter records ops;
- ``"compile"``: dynamo is tracing (``torch.compile``, ``torch.export``, the default ONNX
  exporter) or ``torch.fx`` symbolic tracing is running.

The choice for a call is the registered implementation of highest priority whose devices and
modes match, else the reference. ``forced(op, name)`` overrides the choice inside a ``with``
block (tests, benchmarks, the emulated-device mode); it is the only mutable state here.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch.fx import _symbolic_trace

__all__ = ["OpDispatcher", "Implementation", "current_mode", "forced", "MODES", "all_dispatchers"]

MODES = ("eager", "trace", "compile")
REFERENCE = "reference"

_DISPATCHERS: Dict[str, "OpDispatcher"] = {}
_FORCED: Dict[str, str] = {}


# is_fx_tracing is also true under torch.export (and warns so); export counts as compiling anyway.
_FX_TRACING = getattr(_symbolic_trace, "is_fx_symbolic_tracing", None) or getattr(_symbolic_trace, "is_fx_tracing", None)


def _fx_tracing() -> bool:
    return _FX_TRACING() if _FX_TRACING is not None else False


def _compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    if compiler is not None and hasattr(compiler, "is_compiling"):
        return bool(compiler.is_compiling())
    return False  # pragma: no cover - torch < 2.3


def current_mode() -> str:
    """``"compile"``, ``"trace"`` or ``"eager"``: how the calling code is being executed."""
    if _compiling() or _fx_tracing():
        return "compile"
    # The legacy ONNX exporter runs the model under torch.jit tracing, so is_tracing covers it
    # (torch.onnx.is_in_onnx_export imports two modules per call: too slow for every op call).
    if torch.jit.is_tracing():
        return "trace"
    return "eager"


@dataclass(frozen=True)
class Implementation:
    """One registered form of an op.

    ``fn``: the callable, or a bundle of callables when one dispatcher serves a family of ops
    (``nms``, ``batched_nms`` and ``batched_nms_top`` share one, so each form keeps them consistent);
    ``devices``: device types it serves (``"cpu"``, ``"cuda"``, ...), ``None`` for any;
    ``modes``: the subset of ``MODES`` it serves; higher ``priority`` wins among matches.
    """

    name: str
    fn: Callable[..., Any]
    devices: Optional[Tuple[str, ...]]
    modes: Tuple[str, ...]
    priority: int = 0

    def serves(self, device_type: str, mode: str) -> bool:
        return mode in self.modes and (self.devices is None or device_type in self.devices)


class OpDispatcher:
    """The implementations of one op and the rule that picks one per call."""

    def __init__(self, name: str, reference: Callable[..., Any]) -> None:
        if name in _DISPATCHERS:
            raise ValueError(f"an op named {name!r} already has a dispatcher")
        self.name = name
        self.reference = reference
        self._impls: List[Implementation] = []
        _DISPATCHERS[name] = self

    def register(
        self,
        name: str,
        *,
        devices: Optional[Sequence[str]] = None,
        modes: Sequence[str] = ("eager",),
        priority: int = 0,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: register ``fn`` as the ``name`` form of this op (returns ``fn`` unchanged)."""
        bad = [m for m in modes if m not in MODES]
        if bad or name == REFERENCE or any(i.name == name for i in self._impls):
            raise ValueError(f"cannot register {name!r} for {self.name}: modes {list(modes)} (known: {MODES}), "
                             f"names taken: {self.names()}")

        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            impl = Implementation(name, fn, None if devices is None else tuple(devices), tuple(modes), priority)
            self._impls.append(impl)
            self._impls.sort(key=lambda i: -i.priority)
            return fn

        return decorate

    def names(self) -> List[str]:
        """``["reference", ...registered names]``."""
        return [REFERENCE] + [i.name for i in self._impls]

    def implementations(self) -> Dict[str, Callable[..., Any]]:
        """Every form by name, the reference included (what the property tests iterate)."""
        out: Dict[str, Callable[..., Any]] = {REFERENCE: self.reference}
        out.update((i.name, i.fn) for i in self._impls)
        return out

    def select(
        self, device_type: str, mode: Optional[str] = None, *, use_forced: bool = True
    ) -> Tuple[str, Callable[..., Any]]:
        """``(name, fn)`` of the form that a call on ``device_type`` in ``mode`` runs.

        ``use_forced=False`` ignores ``forced()``: what a graph node's own kernel uses to find
        the eager form it computes with (it must not select itself again).
        """
        name = _FORCED.get(self.name) if use_forced else None
        if name is not None:
            return name, self.implementations()[name]
        mode = current_mode() if mode is None else mode
        for impl in self._impls:
            if impl.serves(device_type, mode):
                return impl.name, impl.fn
        return REFERENCE, self.reference

    def __call__(self, device: torch.device, *args: Any, **kwargs: Any) -> Any:
        """Run the form chosen for ``device`` and the current mode on ``*args, **kwargs``."""
        return self.select(device.type)[1](*args, **kwargs)

    def __repr__(self) -> str:
        return f"OpDispatcher({self.name!r}, {self.names()})"


def all_dispatchers() -> Dict[str, OpDispatcher]:
    """Every op's dispatcher by op name (those whose modules have been imported)."""
    return dict(_DISPATCHERS)


@contextlib.contextmanager
def forced(op: str, name: str) -> Iterator[None]:
    """``with forced("nms", "reference"):`` every call of ``op`` runs the form ``name``."""
    if op not in _DISPATCHERS:
        raise KeyError(f"no op {op!r}; known: {sorted(_DISPATCHERS)}")
    if name not in _DISPATCHERS[op].names():
        raise KeyError(f"op {op!r} has no form {name!r}; known: {_DISPATCHERS[op].names()}")
    previous = _FORCED.get(op)
    _FORCED[op] = name
    try:
        yield
    finally:
        if previous is None:
            _FORCED.pop(op, None)
        else:
            _FORCED[op] = previous
