"""Every test here runs offline with an empty torch.hub cache.

The builders' defaults are torchvision's (``weights_backbone=ResNet50_Weights.IMAGENET1K_V1`` ...), so a
test that forgets ``weights_backbone=None`` fails at once with the "not in the cache" error instead of
downloading or picking up a checkpoint that happens to sit in the developer's cache.

Shared setup of the one-stage detectors' tests (RetinaNet, FCOS, SSD, SSDlite):

- ``one_thread``: request it per module (``pytestmark = pytest.mark.usefixtures("one_thread")``).
- ``golden``: the module's ``builder`` fixture run on its oracle case.
- ``make_tiny_backbone``, ``tiny_images``, ``tiny_targets``: a seeded two-level backbone and a small
  batch, for the fast behavioural tests on tiny models.
"""
from __future__ import annotations

import urllib.error
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Tuple

import pytest
import torch
from torch import Tensor, nn

from _oracle import run_case
from models._tiny_detectors import TwoLevelBackbone
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


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One thread for the module's tests: the suite runs under xdist on shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class OracleRun(NamedTuple):
    """``_oracle.run_case``'s result: the golden case, the (filled) model, its eval detections and training losses."""

    case: Dict[str, Any]
    model: nn.Module
    detections: List[Dict[str, Tensor]]
    losses: Dict[str, Tensor]


@pytest.fixture(scope="module")
def golden(builder: Callable[..., nn.Module]) -> OracleRun:
    """The module's ``builder`` fixture (a builder function) run on the golden case of the same name.

    The case trains with its eval kwargs, so ``model`` is also the model the detections came from.
    """
    run = OracleRun(*run_case(builder, builder.__name__))
    assert run.case["train_kwargs"] == run.case["kwargs"]
    return run


@pytest.fixture(scope="session")
def make_tiny_backbone() -> Callable[..., TwoLevelBackbone]:
    """``make_tiny_backbone(channels=(8, 8), stride=4)``: seeds torch with 0, then builds a TwoLevelBackbone,
    so a tiny model built with it has the same weights on every call."""

    def make(channels: Tuple[int, int] = (8, 8), stride: int = 4) -> TwoLevelBackbone:
        torch.manual_seed(0)
        return TwoLevelBackbone(channels, stride)

    return make


@pytest.fixture
def tiny_images() -> List[Tensor]:
    """Two ``[3, 64, 80]`` images in 0..1, the same in every test."""
    g = torch.Generator().manual_seed(1)
    return [torch.rand(3, 64, 80, generator=g), torch.rand(3, 64, 80, generator=g)]


@pytest.fixture
def tiny_targets() -> List[Dict[str, Tensor]]:
    """Targets for ``tiny_images``: two boxes (labels 1, 3) in the first, one (label 2) in the second."""
    return [{"boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0], [20.0, 10.0, 60.0, 50.0]]), "labels": torch.tensor([1, 3])},
            {"boxes": torch.tensor([[10.0, 12.0, 50.0, 44.0]]), "labels": torch.tensor([2])}]
