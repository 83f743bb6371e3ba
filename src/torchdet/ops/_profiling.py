"""Named profiler ranges for the ops whose share of a forward `torchdet benchmark` reports."""
import functools
from typing import Callable, TypeVar

import torch

F = TypeVar("F", bound=Callable)


def profiled(name: str) -> Callable[[F], F]:
    """Wrap a function in `torch.profiler.record_function("torchdet::<name>")` (about a microsecond a call)."""
    label = f"torchdet::{name}"

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with torch.profiler.record_function(label):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
