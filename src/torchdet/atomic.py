"""Files that appear whole or not at all: write to a temporary name, then rename.

Every torchdet output goes through `atomic_path`: metrics, plots, JSON, ONNX graphs, run
checkpoints (`torchdet.checkpoint`) and downloaded weights (`torchdet.weights.hub`), the last two
with ``durable=True``.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Union

__all__ = ["atomic_path", "write_json"]


@contextlib.contextmanager
def atomic_path(path: Union[str, os.PathLike], *, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to; on success it replaces ``path``.

    The temporary name is hidden (``.{name}.….tmp{suffix}``) and keeps ``path``'s suffix, for
    writers that choose a format by extension (matplotlib). If the block raises, the temporary
    file is removed and ``path`` keeps its previous content.

    With ``durable``, the temporary is created private (mode 0600, a unique name) and flushed to
    the disk (fsync) before the rename, and the rename itself is flushed, so a power cut cannot
    leave an empty file under ``path``: for large files that are costly to lose (checkpoints,
    downloads).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if durable:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    else:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        if durable:
            _fsync(tmp)
        os.replace(tmp, path)
        if durable:
            _fsync_folder(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Union[str, os.PathLike], obj: Any) -> None:
    """Write `obj` as strict JSON, atomically; NaN (COCO's "no ground truth") becomes null."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(_json_safe(obj), f)


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return None if math.isnan(obj) else obj
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """Flush the folder entry of a rename (POSIX; folders cannot be opened on Windows)."""
    if os.name != "posix":
        return
    try:
        _fsync(folder)
    except OSError:  # some file systems refuse fsync on folders; the data itself is synced
        pass
