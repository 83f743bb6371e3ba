"""Shared fixtures for the data tests: a tiny generated shapes dataset."""

from __future__ import annotations

import pytest

from torchdet.data.synthetic import make_shapes_dataset


@pytest.fixture(scope="session")
def shapes_files(tmp_path_factory):
    """{"train": json, "val": json} of a 10 + 2 image shapes dataset (96 x 96)."""
    root = tmp_path_factory.mktemp("shapes")
    return make_shapes_dataset(root, {"train": 10, "val": 2}, image_size=96, seed=3)
