from __future__ import annotations

from pathlib import Path
from typing import Dict

import pytest

from _tiny_shapes import make_tiny_shapes, one_thread_quiet  # noqa: F401 - autouse fixture


@pytest.fixture(scope="session")
def cli_shapes(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """{"train": json, "val": json}: 8 + 4 images of 64 px, category ids 3, 7, 11, 20, 42, val ids 101..104."""
    return make_tiny_shapes(tmp_path_factory.mktemp("cli_shapes"))


@pytest.fixture(scope="session")
def toy_run(cli_shapes, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 1-epoch `torchdet train` run of the toy detector."""
    from _toy_detector import BUILDER
    from torchdet.cli import main

    out = tmp_path_factory.mktemp("runs") / "toy"
    code = main(["train", "--model", BUILDER, "--data", str(cli_shapes["train"]), "--val-data",
                 str(cli_shapes["val"]), "--epochs", "1", "--batch-size", "4", "--workers", "0", "--out", str(out)])
    assert code == 0
    return out
