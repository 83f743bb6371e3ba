"""Round trips between COCO, YOLO and VOC keep images, class names and boxes (within 0.5 px)."""
from __future__ import annotations

import json

import pytest
import torch

from torchdet.cli import main
from torchdet.data.coco import CocoDetection
from torchdet.data.convert import convert_dataset
from torchdet.data.synthetic import make_shapes_dataset
from torchdet.data.voc import VOCDetection
from torchdet.data.yolo import YOLODetection


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    files = make_shapes_dataset(tmp_path_factory.mktemp("shapes"), {"train": 4}, image_size=(40, 56), seed=5)
    return CocoDetection(files["train"])


def _boxes_by_name(dataset):
    """{file name: sorted [(class name, x1, y1, x2, y2)]} from the loader's targets."""
    out = {}
    for idx in range(len(dataset)):
        _, target = dataset[idx]
        names = [dataset.categories[int(label)] for label in target["labels"]]
        out[dataset.image_info(idx)["file_name"].split("/")[-1]] = sorted(
            (name, *box) for name, box in zip(names, target["boxes"].tolist()))
    return out


def _assert_same(a, b, tol):
    assert a.keys() == b.keys()
    for key in a:
        assert [row[0] for row in a[key]] == [row[0] for row in b[key]], key
        if a[key]:
            diff = torch.tensor([row[1:] for row in a[key]]) - torch.tensor([row[1:] for row in b[key]])
            assert diff.abs().max() <= tol, key


def _read(fmt, summary, categories):
    if fmt == "coco":
        return CocoDetection(summary.out)
    if fmt == "yolo":
        return YOLODetection(summary.out.parent / "images", names=summary.out)
    return VOCDetection(summary.out, categories=categories)


@pytest.mark.parametrize("fmt,tol", [("coco", 1e-4), ("yolo", 1e-3), ("voc", 0.5)])
def test_round_trip_keeps_boxes_names_and_images(coco, tmp_path, fmt, tol):
    summary = convert_dataset(coco, fmt, tmp_path / fmt)
    assert summary.images == len(coco) and summary.dropped_boxes == 0
    back = _read(fmt, summary, coco.categories[1:])
    assert back.categories == coco.categories
    _assert_same(_boxes_by_name(coco), _boxes_by_name(back), tol)
    again = convert_dataset(back, "coco", tmp_path / f"{fmt}-coco")
    _assert_same(_boxes_by_name(coco), _boxes_by_name(CocoDetection(again.out)), tol)


def test_refuses_a_non_empty_output_folder(coco, tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        convert_dataset(coco, "yolo", tmp_path)


def test_cli_convert_to_yolo_then_check(coco, tmp_path, capsys):
    out = tmp_path / "yolo"
    assert main(["data", "convert", str(coco.annotation_file), "--to", "yolo", "--out", str(out)]) == 0
    assert "as yolo" in capsys.readouterr().out
    assert main(["data", "check", str(out / "data.yaml"), "--no-decode"]) == 0
