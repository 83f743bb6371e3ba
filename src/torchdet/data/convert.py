"""Convert a detection dataset between the COCO, YOLO and Pascal VOC formats: `torchdet data convert`.

Any torchdet dataset (`CocoDetection`, `YOLODetection`, `VOCDetection`) is written out with
its images copied beside the new annotations:

- ``coco``: ``OUT/_annotations.coco.json`` with the images in ``OUT/`` (Roboflow's layout,
  which `CocoDetection(OUT/_annotations.coco.json)` reads);
- ``yolo``: ``OUT/images/``, ``OUT/labels/`` (one ``.txt`` per image, normalised
  ``class cx cy w h``), ``OUT/data.yaml`` naming the classes;
- ``voc``: ``OUT/JPEGImages/``, ``OUT/Annotations/*.xml``, ``OUT/ImageSets/Main/all.txt``.

Boxes and class names carry over; masks, keypoints and crowd regions do not. Boxes are clipped
to the image and those left without area are dropped (counted in the summary). Coordinates
keep their precision except in VOC, whose integer 1-based corners round to the nearest pixel
(within 0.5 px).
"""
from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

from torchdet.data.base import DetectionDataset, RawBox

__all__ = ["FORMATS", "ConversionSummary", "convert_dataset"]

FORMATS = ("coco", "yolo", "voc")


@dataclass
class ConversionSummary:
    """What `convert_dataset` wrote: ``out`` (the annotation file or folder to read back), counts."""

    fmt: str
    out: Path
    images: int
    boxes: int
    dropped_boxes: int


def _clipped(boxes: List[RawBox], width: int, height: int) -> Tuple[List[RawBox], int]:
    kept = []
    for b in boxes:
        x1, y1, x2, y2 = max(b.box[0], 0.0), max(b.box[1], 0.0), min(b.box[2], float(width)), min(b.box[3], float(height))
        if x2 > x1 and y2 > y1:
            kept.append(RawBox((x1, y1, x2, y2), b.label, b.where))
    return kept, len(boxes) - len(kept)


def _images(dataset: DetectionDataset):
    """Yield ``(info, clipped boxes, dropped count, flat unique file name)`` per image."""
    used: Dict[str, int] = {}
    for idx in range(len(dataset)):
        info = dataset.image_info(idx)
        boxes, dropped = _clipped(dataset.raw_boxes(idx), int(info["width"]), int(info["height"]))
        name = Path(str(info["file_name"])).name
        stem, suffix = Path(name).stem, Path(name).suffix
        if name in used:  # the same name in two sub-folders
            used[name] += 1
            name = f"{stem}_{used[name]}{suffix}"
        used.setdefault(name, 0)
        yield info, boxes, dropped, name


def _write_coco(dataset: DetectionDataset, out: Path) -> Tuple[Path, int, int, int]:
    names = dataset.categories[1:]
    images, annotations, dropped_total = [], [], 0
    for image_id, (info, boxes, dropped, name) in enumerate(_images(dataset), start=1):
        shutil.copy2(info["path"], out / name)
        images.append({"id": image_id, "file_name": name, "width": int(info["width"]), "height": int(info["height"])})
        for b in boxes:
            x1, y1, x2, y2 = b.box
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": b.label,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
        dropped_total += dropped
    data = {"images": images, "annotations": annotations,
            "categories": [{"id": k, "name": name, "supercategory": "none"} for k, name in enumerate(names, start=1)]}
    path = out / "_annotations.coco.json"
    path.write_text(json.dumps(data))
    return path, len(images), len(annotations), dropped_total


def _write_yolo(dataset: DetectionDataset, out: Path) -> Tuple[Path, int, int, int]:
    names = dataset.categories[1:]
    (out / "images").mkdir(exist_ok=True)
    (out / "labels").mkdir(exist_ok=True)
    count = boxes_total = dropped_total = 0
    for info, boxes, dropped, name in _images(dataset):
        shutil.copy2(info["path"], out / "images" / name)
        width, height = float(info["width"]), float(info["height"])
        lines = [f"{b.label - 1} {(b.box[0] + b.box[2]) / 2 / width:.8f} {(b.box[1] + b.box[3]) / 2 / height:.8f} "
                 f"{(b.box[2] - b.box[0]) / width:.8f} {(b.box[3] - b.box[1]) / height:.8f}" for b in boxes]
        (out / "labels" / Path(name).with_suffix(".txt")).write_text("".join(line + "\n" for line in lines))
        count, boxes_total, dropped_total = count + 1, boxes_total + len(boxes), dropped_total + dropped
    quoted = ", ".join(json.dumps(name) for name in names)
    path = out / "data.yaml"
    path.write_text(f"path: .\ntrain: images\nval: images\nnc: {len(names)}\nnames: [{quoted}]\n")
    return path, count, boxes_total, dropped_total


def _voc_xml(name: str, width: int, height: int, boxes: List[RawBox], names: List[str]) -> bytes:
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = name
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    for b in boxes:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = names[b.label - 1]
        ET.SubElement(obj, "difficult").text = "0"
        box = ET.SubElement(obj, "bndbox")
        # VOC corners are 1-based pixel indices: xmin = x1 + 1, xmax = x2 (see torchdet.data.voc).
        x1, y1, x2, y2 = b.box
        for tag, value in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
            ET.SubElement(box, tag).text = str(int(round(value)))
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8")


def _write_voc(dataset: DetectionDataset, out: Path) -> Tuple[Path, int, int, int]:
    names = dataset.categories[1:]
    for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    ids, boxes_total, dropped_total = [], 0, 0
    for info, boxes, dropped, name in _images(dataset):
        shutil.copy2(info["path"], out / "JPEGImages" / name)
        stem = Path(name).stem
        (out / "Annotations" / f"{stem}.xml").write_bytes(
            _voc_xml(name, int(info["width"]), int(info["height"]), boxes, names))
        ids.append(stem)
        boxes_total, dropped_total = boxes_total + len(boxes), dropped_total + dropped
    (out / "ImageSets" / "Main" / "all.txt").write_text("".join(i + "\n" for i in ids))
    return out, len(ids), boxes_total, dropped_total


def convert_dataset(dataset: DetectionDataset, to: str, out: Path) -> ConversionSummary:
    """Write ``dataset`` in format ``to`` (``"coco"``, ``"yolo"``, ``"voc"``) under the folder ``out``.

    ``out`` must not exist or be empty, so nothing of the user's is overwritten.
    """
    if to not in FORMATS:
        raise ValueError(f"unknown target format {to!r}; choose one of {FORMATS}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"output folder '{out}' is not empty; choose a new folder for the converted dataset")
    out.mkdir(parents=True, exist_ok=True)
    writer = {"coco": _write_coco, "yolo": _write_yolo, "voc": _write_voc}[to]
    path, images, boxes, dropped = writer(dataset, out)
    return ConversionSummary(to, path, images, boxes, dropped)
