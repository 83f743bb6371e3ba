"""Files that appear whole or not at all: write to a temporary name, then rename.

Checkpoints (`engine.checkpoint.save_checkpoint`) and downloads (`weights.hub`) have their own
variants, which also fsync; this one serves the other outputs (metrics, plots, JSON, ONNX).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator, Union

__all__ = ["atomic_path"]


@contextlib.contextmanager
def atomic_path(path: Union[str, os.PathLike]) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to; on success it replaces ``path``.

    The temporary name is hidden (``.{name}.{pid}.tmp{suffix}``) and keeps ``path``'s suffix,
    for writers that choose a format by extension (matplotlib). If the block raises, the
    temporary file is removed and ``path`` keeps its previous content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
