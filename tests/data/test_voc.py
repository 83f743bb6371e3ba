"""VOCDetection over the VOCdevkit layout and flat folders of XML files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from torchdet.data.voc import VOC_CLASSES, VOCDetection


def voc_xml(filename: str, objects, width: int = 50, height: int = 40) -> str:
    body = "".join(
        f"<object><name>{name}</name><difficult>{int(difficult)}</difficult>"
        f"<bndbox><xmin>{box[0]}</xmin><ymin>{box[1]}</ymin><xmax>{box[2]}</xmax><ymax>{box[3]}</ymax></bndbox></object>"
        for name, box, difficult in objects
    )
    return (
        f"<annotation><folder>VOC2012</folder><filename>{filename}</filename>"
        f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>{body}</annotation>"
    )


def make_devkit(root: Path) -> Path:
    """VOCdevkit/VOC2012 with 3 images, split files train (2) and val (1)."""
    year = root / "VOCdevkit" / "VOC2012"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (year / sub).mkdir(parents=True)
    samples = {
        "2008_000001": [("dog", (1, 1, 20, 10), False), ("person", (5, 5, 30, 35), True)],
        "2008_000002": [("cat", (10, 11, 50, 40), False)],
        "2008_000003": [("car", (2, 3, 4, 5), False)],
    }
    for voc_id, objects in samples.items():
        (year / "Annotations" / f"{voc_id}.xml").write_text(voc_xml(f"{voc_id}.jpg", objects))
        Image.new("RGB", (50, 40)).save(year / "JPEGImages" / f"{voc_id}.jpg")
    (year / "ImageSets" / "Main" / "train.txt").write_text("2008_000001\n2008_000002\n")
    (year / "ImageSets" / "Main" / "val.txt").write_text("2008_000003\n")
    (year / "ImageSets" / "Main" / "dog_train.txt").write_text("2008_000001  1\n")
    return year


def test_devkit_split_and_box_convention(tmp_path):
    make_devkit(tmp_path)
    dataset = VOCDetection(tmp_path, "train")
    assert len(dataset) == 2 and dataset.categories == ["__background__", *VOC_CLASSES]
    assert dataset.label_to_category_id[12] == "dog" and dataset.category_id_to_label["dog"] == 12
    image, target = dataset[0]
    assert image.shape == (3, 40, 50)
    # 1-based inclusive pixel indices -> continuous xyxy; the difficult person is left out
    assert target["boxes"].tolist() == [[0.0, 0.0, 20.0, 10.0]]
    assert target["labels"].tolist() == [VOC_CLASSES.index("dog") + 1]
    assert target["difficult"].tolist() == [False]
    assert target["area"].tolist() == [200.0] and target["iscrowd"].tolist() == [0]
    assert dataset.image_info(1)["voc_id"] == "2008_000002"
    assert dataset.aspect_ratios() == [1.25, 1.25]
    assert len(VOCDetection(tmp_path / "VOCdevkit" / "VOC2012", "val")) == 1
    assert len(VOCDetection(tmp_path / "VOCdevkit" / "VOC2012")) == 3  # no split: every xml


def test_keep_difficult(tmp_path):
    make_devkit(tmp_path)
    _, target = VOCDetection(tmp_path, "train", keep_difficult=True)[0]
    assert target["labels"].tolist() == [12, 15]
    assert target["difficult"].tolist() == [False, True]
    assert target["boxes"][1].tolist() == [4.0, 4.0, 30.0, 35.0]


def test_flat_folder_with_given_categories(tmp_path):
    (tmp_path / "a.xml").write_text(voc_xml("a.png", [("zebra", (3, 4, 13, 24), False), ("lion", (1, 1, 5, 5), False)]))
    (tmp_path / "b.xml").write_text(voc_xml("", [("lion", (1, 1, 60, 60), False)]))
    Image.new("L", (50, 40)).save(tmp_path / "a.png")
    Image.new("RGB", (50, 40)).save(tmp_path / "b.jpg")  # found from the xml's stem
    dataset = VOCDetection(tmp_path, categories=["lion", "zebra"])
    assert dataset.categories == ["__background__", "lion", "zebra"]
    _, target = dataset[0]
    assert target["labels"].tolist() == [2, 1]
    assert target["boxes"][0].tolist() == [2.0, 3.0, 13.0, 24.0]
    image, target = dataset[1]
    assert image.shape == (3, 40, 50)
    assert target["boxes"].tolist() == [[0.0, 0.0, 50.0, 40.0]]  # clipped


def test_unknown_class_is_named(tmp_path):
    (tmp_path / "a.xml").write_text(voc_xml("a.jpg", [("unicorn", (1, 1, 5, 5), False)]))
    with pytest.raises(ValueError, match=r"a\.xml' has an object named 'unicorn'.*categories="):
        VOCDetection(tmp_path)


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        VOCDetection(tmp_path)
    make_devkit(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"test\.txt.*available image sets: \['train', 'val'\]"):
        VOCDetection(tmp_path, "test")
    (tmp_path / "VOCdevkit" / "VOC2012" / "JPEGImages" / "2008_000003.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"2008_000003\.jpg"):
        VOCDetection(tmp_path, "val")[0]
    broken = tmp_path / "flat"
    broken.mkdir()
    (broken / "x.xml").write_text("<annotation><object>")
    with pytest.raises(ValueError, match=r"x\.xml' is not a valid Pascal VOC XML"):
        VOCDetection(broken)
    with pytest.raises(ValueError, match="needs the VOCdevkit layout"):
        VOCDetection(broken, "train")


def test_skip_bad_images(tmp_path):
    year = make_devkit(tmp_path)
    (year / "JPEGImages" / "2008_000001.jpg").unlink()
    with pytest.warns(UserWarning, match="skipped 1 of 2 images"):
        dataset = VOCDetection(year, "train", skip_bad_images=True)
    assert len(dataset) == 1 and torch.is_tensor(dataset[0][0])
