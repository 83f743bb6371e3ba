"""tqdm progress bars that stay out of logs: shown on an interactive terminal only.

Bars are off when stderr is not a TTY (redirected to a file, captured by pytest) or when the
``CI`` environment variable is set, and on every process but the first under torchrun. The
commands print one summary line per epoch either way.
"""
from __future__ import annotations

import os
import sys
from typing import Iterable, Optional, TypeVar

from tqdm.auto import tqdm

from torchdet.distributed import current

T = TypeVar("T")


def echo(message: str) -> None:
    """Print a log line now (flushed, so piped logs show progress as it happens)."""
    print(message, flush=True)


def bars_enabled(requested: Optional[bool] = None) -> bool:
    """Whether to draw bars: `requested` when given (still off off the main process), else auto."""
    if not current().is_main:
        return False
    if requested is not None:
        return requested
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        return False
    return sys.stderr.isatty()


def progress(iterable: Iterable[T], *, total: Optional[int] = None, desc: str = "",
             enabled: bool = True, leave: bool = False) -> "tqdm[T]":
    """`iterable` wrapped in a tqdm bar (a disabled bar, just the iterable, when not `enabled`)."""
    return tqdm(iterable, total=total, desc=desc, disable=not enabled, leave=leave, dynamic_ncols=True,
                file=sys.stderr)
