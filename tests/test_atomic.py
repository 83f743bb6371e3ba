"""torchdet.atomic: the target holds the old content or the new, never a part, and no temporary stays."""
from pathlib import Path

import pytest

from torchdet.atomic import atomic_path


def test_replaces_on_success_and_keeps_the_suffix(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "plot.png"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".png" and tmp.name.startswith(".")
        tmp.write_text("new")
        assert not target.exists()
    assert target.read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["plot.png"]


def test_an_error_keeps_the_old_file_and_removes_the_temporary(tmp_path: Path) -> None:
    target = tmp_path / "metrics.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]


def test_durable_writes_are_private_synced_and_cleaned_up(tmp_path: Path, monkeypatch) -> None:
    import os

    from torchdet import atomic

    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    target = tmp_path / "last.pt"
    with atomic_path(target, durable=True) as tmp:
        assert tmp.exists() and tmp.name.startswith(".last.pt.") and tmp.suffix == ".pt"
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and os.stat(target).st_mode & 0o777 == 0o600
    assert len(synced) == 2  # the file, then the folder holding the rename
    with pytest.raises(OSError, match="No space"):
        with atomic_path(target, durable=True) as tmp:
            raise OSError(28, "No space left on device")
    assert target.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_write_json_is_strict_json(tmp_path: Path) -> None:
    import json

    from torchdet.atomic import write_json

    write_json(tmp_path / "m.json", {"AP": float("nan"), "rows": [1.5, (2, float("nan"))]})
    assert json.loads((tmp_path / "m.json").read_text()) == {"AP": None, "rows": [1.5, [2, None]]}
