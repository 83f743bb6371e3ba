from __future__ import annotations

from pathlib import Path
from typing import Dict

import pytest
import torch

from engine.engine_data import make_tiny_shapes


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """{"train": json, "val": json}: 8 + 4 images of 64 px, category ids 3, 7, 11, 20, 42."""
    return make_tiny_shapes(tmp_path_factory.mktemp("shapes"))


@pytest.fixture(autouse=True)
def _one_thread_quiet(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CI", "true")  # no progress bars in test logs
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
