"""Every test here runs offline with an empty torch.hub cache.

The builders' defaults are torchvision's (``weights_backbone=ResNet50_Weights.IMAGENET1K_V1`` ...), so a
test that forgets ``weights_backbone=None`` fails at once with the "not in the cache" error instead of
downloading or picking up a checkpoint that happens to sit in the developer's cache.
"""
from __future__ import annotations

import urllib.error
from pathlib import Path
from typing import Iterator

import pytest
import torch

from torchdet.weights import hub


def _refuse(url: str, timeout: float):  # noqa: ANN202
    raise urllib.error.URLError(f"network disabled in tests (asked for {url})")


@pytest.fixture(scope="module", autouse=True)
def offline_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Module-scoped (so module-scoped model fixtures run under it too); yields the empty cache folder."""
    home = tmp_path_factory.mktemp("torch_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(home))
        mp.setattr(torch.hub, "_hub_dir", None)  # in case some code called torch.hub.set_dir
        mp.setattr(hub, "_urlopen", _refuse)
        yield hub.checkpoint_dir()
