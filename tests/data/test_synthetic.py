"""The generated shapes dataset: layout, determinism, annotation geometry, speed."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from torchdet.data.coco import CocoDetection
from torchdet.data.synthetic import SHAPE_CLASSES, SHAPES_KEYPOINT_NAMES, make_shapes_dataset


def test_layout_and_contents(shapes_files):
    assert set(shapes_files) == {"train", "val"}
    data = json.loads(shapes_files["train"].read_text())
    assert shapes_files["train"].name == "_annotations.coco.json"
    assert len(data["images"]) == 10
    assert [c["name"] for c in data["categories"]] == list(SHAPE_CLASSES)
    assert all((shapes_files["train"].parent / image["file_name"]).is_file() for image in data["images"])
    sizes = {image["id"]: (image["width"], image["height"]) for image in data["images"]}
    assert data["annotations"], "some shapes are expected"
    for ann in data["annotations"]:
        x, y, w, h = ann["bbox"]
        width, height = sizes[ann["image_id"]]
        polygon = np.array(ann["segmentation"][0]).reshape(-1, 2)
        assert polygon.min() >= 0 and (polygon[:, 0] <= width).all() and (polygon[:, 1] <= height).all()
        np.testing.assert_allclose([x, y, x + w, y + h], [*polygon.min(0), *polygon.max(0)], atol=0.02)
        keypoints = np.array(ann["keypoints"]).reshape(-1, 3)
        assert keypoints.shape == (len(SHAPES_KEYPOINT_NAMES), 3)
        assert set(keypoints[:, 2]) <= {1.0, 2.0} and ann["num_keypoints"] == 5
        assert 0 < ann["area"] <= w * h + 1e-3


def test_deterministic_for_a_seed(tmp_path):
    first = make_shapes_dataset(tmp_path / "a", 6, image_size=64, seed=5)
    second = make_shapes_dataset(tmp_path / "b", 6, image_size=64, seed=5)
    other = make_shapes_dataset(tmp_path / "c", 6, image_size=64, seed=6)
    assert first["train"].read_text() == second["train"].read_text()
    assert first["train"].read_text() != other["train"].read_text()
    assert (first["val"].parent / "000001.png").read_bytes() == (second["val"].parent / "000001.png").read_bytes()


def test_split_options_and_sizes(tmp_path):
    files = make_shapes_dataset(tmp_path, {"train": 3, "test": 2}, image_size=((48, 64), (80, 96)), image_format="jpg")
    assert set(files) == {"train", "test"}
    data = json.loads(files["test"].read_text())
    assert len(data["images"]) == 2 and data["images"][0]["file_name"].endswith(".jpg")
    for image in json.loads(files["train"].read_text())["images"]:
        assert 48 <= image["height"] <= 64 and 80 <= image["width"] <= 96
    assert set(make_shapes_dataset(tmp_path / "one", 1)) == {"train"}
    with pytest.raises(ValueError, match="image_size"):
        make_shapes_dataset(tmp_path / "bad", 2, image_size=(1, 2, 3))
    with pytest.raises(ValueError, match="image_format"):
        make_shapes_dataset(tmp_path / "bad", 2, image_format="gif")


def test_masks_and_keypoints_agree_with_boxes(shapes_files):
    dataset = CocoDetection(shapes_files["train"], with_masks=True, with_keypoints=True)
    for index in range(3):
        _, target = dataset[index]
        for mask, box, keypoints in zip(target["masks"], target["boxes"], target["keypoints"]):
            ys, xs = np.nonzero(mask.numpy())
            np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], box.numpy(), atol=1.5)
            inside = (keypoints[:, 0] >= box[0] - 1e-3) & (keypoints[:, 0] <= box[2] + 1e-3)
            assert inside.all()


def test_fast_enough(tmp_path):
    start = time.perf_counter()
    make_shapes_dataset(tmp_path, 100, image_size=96, seed=1)
    assert time.perf_counter() - start < 20  # about 1-2 s alone; generous for a busy machine
