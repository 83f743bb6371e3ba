"""``fx_leaf``: make an op one node of a ``torch.fx`` graph instead of tracing through it.

The RoI ops and ``deform_conv2d`` choose chunk sizes and window bounds from their inputs, which
``torch.fx`` proxies cannot provide. Decorated, such an op records a single ``call_function``
node whenever any argument (or any tensor in a list argument) is an ``fx.Proxy``; the traced
``GraphModule`` then calls the op on real tensors. ``torch.export`` runs the op itself on fake
tensors, so this decorator does not affect it.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Optional, TypeVar

import torch.fx

__all__ = ["fx_leaf"]

F = TypeVar("F", bound=Callable[..., Any])


def _find_proxy(value: Any) -> Optional[torch.fx.Proxy]:
    if isinstance(value, torch.fx.Proxy):
        return value
    if isinstance(value, (list, tuple)):
        for item in value:
            found = _find_proxy(item)
            if found is not None:
                return found
    return None


def fx_leaf(fn: F) -> F:
    """Decorator: under ``torch.fx`` symbolic tracing, ``fn(...)`` becomes one graph node."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        proxy = _find_proxy(list(args) + list(kwargs.values()))
        if proxy is not None:
            return proxy.tracer.create_proxy("call_function", wrapper, args, kwargs)
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def fx_node(fn: Callable[..., Any], *args: Any) -> Optional[Any]:
    """The proxy of a ``fn(*args)`` node when an argument is an ``fx.Proxy``, else None.

    For ops that must stay TorchScript-compatible (no decorator): call it under
    ``if not torch.jit.is_scripting():`` and return its result when it is not None.
    """
    proxy = _find_proxy(list(args))
    if proxy is None:
        return None
    return proxy.tracer.create_proxy("call_function", fn, args, {})
