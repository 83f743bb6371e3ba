"""Suite-wide pytest configuration: the ``cuda`` marker.

``@pytest.mark.cuda`` marks a test that needs a CUDA device; it is skipped where
``torch.cuda.is_available()`` is False (the CPU CI), and selected alone with ``-m cuda``.
"""
from __future__ import annotations

from typing import List

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cuda: needs a CUDA device (skipped without one)")


def pytest_collection_modifyitems(config: pytest.Config, items: List[pytest.Item]) -> None:
    if not any("cuda" in item.keywords for item in items):
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
