"""Tiny shapes datasets for the training, inference and CLI tests (non-contiguous category ids),
and the fixtures their conftest files import."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict

import pytest
import torch

from torchdet.data.synthetic import make_shapes_dataset

# The shapes' category ids 1..5 become these, so tests see the dataset's own ids in results.
CATEGORY_IDS = {1: 3, 2: 7, 3: 11, 4: 20, 5: 42}


def make_tiny_shapes(root: Path, train: int = 8, val: int = 4, size: int = 64, seed: int = 0) -> Dict[str, Path]:
    """A shapes dataset under `root` with `train`/`val` images of `size` px and remapped category ids;
    image ids of the val split start at 101."""
    files = make_shapes_dataset(root, {"train": train, "val": val}, image_size=size, seed=seed,
                                shapes_per_image=(1, 2))
    for split, path in files.items():
        data = json.loads(path.read_text())
        offset = 100 if split == "val" else 0
        for c in data["categories"]:
            c["id"] = CATEGORY_IDS[c["id"]]
        for image in data["images"]:
            image["id"] += offset
        for ann in data["annotations"]:
            ann["category_id"] = CATEGORY_IDS[ann["category_id"]]
            ann["image_id"] += offset
        path.write_text(json.dumps(data))
    return files


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """{"train": json, "val": json}: 8 + 4 images of 64 px, category ids 3, 7, 11, 20, 42."""
    return make_tiny_shapes(tmp_path_factory.mktemp("shapes"))


@pytest.fixture(autouse=True)
def one_thread_quiet(monkeypatch: pytest.MonkeyPatch):
    """One torch thread and no progress bars in test logs, for every test of a folder whose
    conftest imports it."""
    monkeypatch.setenv("CI", "true")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
