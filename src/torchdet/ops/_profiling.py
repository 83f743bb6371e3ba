"""Named ranges around the ops whose share of a forward `torchdet benchmark` reports.

Each wrapped op shows up in `torch.profiler` traces as `torchdet::<name>`, and inside
`with op_timer() as seconds:` its wall time is added to `seconds[name]` (outermost calls only,
so an op that calls itself through another entry point is counted once).
"""
import contextlib
import functools
import time
from typing import Callable, Dict, Iterator, Optional, TypeVar

import torch

F = TypeVar("F", bound=Callable)

_seconds: Optional[Dict[str, float]] = None
_active: Dict[str, int] = {}


@contextlib.contextmanager
def op_timer() -> Iterator[Dict[str, float]]:
    """Collect the wall time spent in each profiled op while the block runs."""
    global _seconds
    previous, _seconds = _seconds, {}
    try:
        yield _seconds
    finally:
        _seconds = previous


def profiled(name: str) -> Callable[[F], F]:
    """Wrap a function in `torch.profiler.record_function("torchdet::<name>")` (about a microsecond a call)."""
    label = f"torchdet::{name}"

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with torch.profiler.record_function(label):
                if _seconds is None or _active.get(name):
                    return fn(*args, **kwargs)
                _active[name] = 1
                start = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    _active[name] = 0
                    _seconds[name] = _seconds.get(name, 0.0) + time.perf_counter() - start

        return wrapper  # type: ignore[return-value]

    return decorate
