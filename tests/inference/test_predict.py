"""Prediction sources (files, folders, globs) and bad images."""
from __future__ import annotations

import pytest
import torch

from _toy_detector import toy_detector
from torchdet.inference.predict import expand_sources, predict_images


def test_sources_files_folders_globs(tiny_shapes, tmp_path):
    folder = tiny_shapes["val"].parent
    images = sorted(folder.glob("*.png"))
    assert expand_sources([folder]) == images
    assert expand_sources([str(folder / "*.png"), images[0]]) == images  # duplicates dropped
    assert expand_sources([images[1]]) == [images[1]]
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        expand_sources([tmp_path / "missing.jpg"])
    with pytest.raises(FileNotFoundError, match="matches no image"):
        expand_sources([str(tmp_path / "*.jpg")])


def test_bad_image_is_named_or_skipped(tiny_shapes, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    good = sorted(tiny_shapes["val"].parent.glob("*.png"))[:2]
    model = toy_detector(num_classes=6)
    categories = ["__background__", "a", "b", "c", "d", "e"]
    with pytest.raises(OSError, match="broken.png"):
        predict_images(model, [*good, bad], device=torch.device("cpu"), categories=categories)
    result = predict_images(model, [*good, bad], device=torch.device("cpu"), categories=categories,
                            score_thresh=0.0, skip_bad_images=True, out_dir=tmp_path / "pictures")
    assert [s[0] for s in result.skipped] == [str(bad)]
    assert len(result.images) == 2 and len(result.pictures) == 2
    assert all(p.exists() for p in result.pictures)
    assert {d["image_id"] for d in result.predictions} == {1, 2}
    assert all(d["category_name"] in categories[1:] for d in result.predictions)
