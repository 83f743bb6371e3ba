"""YOLODetection over the Ultralytics layout, names from lists/dicts/data.yaml, and label errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from torchdet.data.yolo import YOLODetection, default_labels_dir, load_data_yaml, parse_simple_yaml, parse_yaml_subset


def make_yolo(root: Path, labels: dict, split: str = "train", size=(50, 100)) -> Path:
    """root/images/<split>/<name>.jpg + root/labels/<split>/<name>.txt; returns the images folder."""
    images = root / "images" / split
    label_dir = root / "labels" / split
    images.mkdir(parents=True)
    label_dir.mkdir(parents=True)
    for name, text in labels.items():
        Image.new("RGB", (size[1], size[0])).save(images / f"{name}.jpg")
        if text is not None:
            (label_dir / f"{name}.txt").write_text(text)
    return images


def test_boxes_from_normalised_centres(tmp_path):
    images = make_yolo(tmp_path, {"a": "1 0.5 0.5 0.2 0.4\n0 0.1 0.1 0.2 0.2\n\n", "b": None})
    dataset = YOLODetection(images, names=["cat", "dog"])
    assert dataset.labels_dir == tmp_path / "labels" / "train"
    assert dataset.categories == ["__background__", "cat", "dog"]
    assert dataset.label_to_category_id == {1: 0, 2: 1}
    image, target = dataset[0]
    assert image.shape == (3, 50, 100)
    torch.testing.assert_close(target["boxes"], torch.tensor([[40.0, 15.0, 60.0, 35.0], [0.0, 0.0, 20.0, 10.0]]))
    assert target["labels"].tolist() == [2, 1]
    assert target["area"].tolist() == pytest.approx([400.0, 200.0])
    _, empty = dataset[1]  # no label file: background image
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)
    assert dataset.aspect_ratios() == [2.0, 2.0]
    assert dataset.image_info(0)["file_name"] == "a.jpg"


def test_segment_lines_give_the_polygon_box(tmp_path):
    images = make_yolo(tmp_path, {"a": "0 0.1 0.2 0.5 0.2 0.3 0.6\n"})
    _, target = YOLODetection(images, names=["x"])[0]
    torch.testing.assert_close(target["boxes"], torch.tensor([[10.0, 10.0, 50.0, 30.0]]))


def test_zero_size_boxes_dropped_with_count(tmp_path):
    images = make_yolo(tmp_path, {"a": "0 0.5 0.5 0 0.1\n0 0.5 0.5 0.1 0.1\n"})
    with pytest.warns(UserWarning, match=r"1 box\(es\) have zero width or height"):
        dataset = YOLODetection(images, names=["x"])
    assert len(dataset[0][1]["boxes"]) == 1


@pytest.mark.parametrize(
    "text",
    [
        "names: ['cat', 'dog']\nnc: 2\n",
        "path: ../data  # root\ntrain: images/train\nnames:\n  - cat\n  - dog  # the dog\n",
        "names:\n  0: cat\n  1: 'dog'\n",
        'names: {0: "cat", 1: dog}\n',
        "nc: 2\nnames: [cat, dog]\n",
    ],
)
def test_names_from_data_yaml(tmp_path, text):
    yaml_file = tmp_path / "data.yaml"
    yaml_file.write_text(text)
    assert load_data_yaml(yaml_file)["names"] == ["cat", "dog"]
    images = make_yolo(tmp_path, {"a": "1 0.5 0.5 0.2 0.2\n"})
    assert YOLODetection(images, names=yaml_file).categories == ["__background__", "cat", "dog"]


@pytest.mark.parametrize("parse", [parse_simple_yaml, parse_yaml_subset])
def test_simple_yaml_parser(parse):
    parsed = parse("a: 1\nb: 2.5\nc: 'x # not a comment'\nd: true\ne:\nf: [1, 'two, three']\n")
    assert parsed == {"a": 1, "b": 2.5, "c": "x # not a comment", "d": True, "e": None, "f": [1, "two, three"]}
    with pytest.raises(ValueError, match="line 1" if parse is parse_yaml_subset else ""):
        parse("  - orphan\n")  # with PyYAML installed, parse_simple_yaml says it is not a mapping


def test_names_from_dict_and_classes_txt(tmp_path):
    images = make_yolo(tmp_path, {"a": "0 0.5 0.5 0.2 0.2\n"})
    assert YOLODetection(images, names={1: "b", 0: "a"}).categories == ["__background__", "a", "b"]
    with pytest.raises(ValueError, match="class indices must be 0..1"):
        YOLODetection(images, names={0: "a", 2: "b"})
    with pytest.raises(ValueError, match="needs the class names"):
        YOLODetection(images)
    (tmp_path / "labels" / "train" / "classes.txt").write_text("a\nb\n")
    assert YOLODetection(images).categories == ["__background__", "a", "b"]


def test_from_data_yaml(tmp_path):
    make_yolo(tmp_path, {"a": "0 0.5 0.5 0.2 0.2\n"}, split="train")
    make_yolo(tmp_path, {"b": "0 0.5 0.5 0.2 0.2\n", "c": "0 0.5 0.5 0.2 0.2\n"}, split="val")
    (tmp_path / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: [thing]\n")
    assert len(YOLODetection.from_data_yaml(tmp_path / "data.yaml", "val")) == 2
    with pytest.raises(ValueError, match="no 'test:' folder"):
        YOLODetection.from_data_yaml(tmp_path / "data.yaml", "test")


def test_default_labels_dir():
    assert default_labels_dir(Path("/d/images/train")) == Path("/d/labels/train")
    assert default_labels_dir(Path("/d/train/images")) == Path("/d/train/labels")
    with pytest.raises(ValueError, match="labels_dir="):
        default_labels_dir(Path("/d/pictures"))


@pytest.mark.parametrize(
    "line, message",
    [
        ("5 0.5 0.5 0.1 0.1", r"a\.txt' line 2: class 5 is not an index in 0..1"),
        ("0 0.5 0.5 0.1", r"a\.txt' line 2: expected 'class cx cy w h' \(5 values\), got 4"),
        ("0 50 50 10 10", r"line 2: coordinates .* outside 0..1"),
        ("cat 0.5 0.5 0.1 0.1", r"line 2: expected numbers"),
    ],
)
def test_bad_label_lines_are_named(tmp_path, line, message):
    images = make_yolo(tmp_path, {"a": f"0 0.5 0.5 0.1 0.1\n{line}\n"})
    with pytest.raises(ValueError, match=message):
        YOLODetection(images, names=["a", "b"])


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="images folder not found"):
        YOLODetection(tmp_path / "images" / "nope", names=["a"])
    images = make_yolo(tmp_path, {"a": None})
    with pytest.raises(ValueError, match=r"none of the 1 images .* has a label file"):
        YOLODetection(images, names=["a"])
    empty = tmp_path / "e" / "images"
    (tmp_path / "e" / "labels").mkdir(parents=True)
    empty.mkdir()
    with pytest.raises(ValueError, match="empty"):
        YOLODetection(empty, names=["a"])


def test_corrupt_image_names_the_file(tmp_path):
    images = make_yolo(tmp_path, {"a": "0 0.5 0.5 0.1 0.1\n"})
    (images / "a.jpg").write_bytes(b"\xff\xd8garbage")
    with pytest.raises(OSError, match=r"a\.jpg"):
        YOLODetection(images, names=["a"])[0]
