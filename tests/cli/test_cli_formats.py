"""Training and evaluation on VOC and YOLO datasets (the tiny shapes converted to each layout)."""
from __future__ import annotations

import json
from pathlib import Path


from _toy_detector import BUILDER
from torchdet.cli import main
from torchdet.checkpoint import RunCheckpoint

NAMES = ["circle", "square", "triangle", "star", "cross"]


def _coco(path: Path):
    data = json.loads(path.read_text())
    names = {c["id"]: c["name"] for c in data["categories"]}
    for image in data["images"]:
        anns = [a for a in data["annotations"] if a["image_id"] == image["id"]]
        yield image, [(names[a["category_id"]], a["bbox"]) for a in anns]


def _to_yolo(coco: dict, root: Path) -> Path:
    for split, path in coco.items():
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for image, objects in _coco(path):
            (root / "images" / split / image["file_name"]).write_bytes((path.parent / image["file_name"]).read_bytes())
            w, h = image["width"], image["height"]
            lines = [f"{NAMES.index(n)} {(x + bw / 2) / w} {(y + bh / 2) / h} {bw / w} {bh / h}"
                     for n, (x, y, bw, bh) in objects]
            (root / "labels" / split / (Path(image["file_name"]).stem + ".txt")).write_text("\n".join(lines))
    yaml = root / "data.yaml"
    yaml.write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames: [{', '.join(NAMES)}]\n")
    return yaml


def _to_voc(path: Path, folder: Path) -> Path:
    folder.mkdir(parents=True)
    for image, objects in _coco(path):
        (folder / image["file_name"]).write_bytes((path.parent / image["file_name"]).read_bytes())
        objs = "".join(f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{x + 1}</xmin>"
                       f"<ymin>{y + 1}</ymin><xmax>{x + bw}</xmax><ymax>{y + bh}</ymax></bndbox></object>"
                       for n, (x, y, bw, bh) in objects)
        xml = (f"<annotation><filename>{image['file_name']}</filename><size><width>{image['width']}</width>"
               f"<height>{image['height']}</height><depth>3</depth></size>{objs}</annotation>")
        (folder / (Path(image["file_name"]).stem + ".xml")).write_text(xml)
    return folder


def _train_and_evaluate(tmp_path, fmt, data, val, capsys):
    out = tmp_path / "run"
    assert main(["train", "--model", BUILDER, "--format", fmt, "--data", str(data), "--val-data", str(val),
                 "--epochs", "1", "--batch-size", "4", "--workers", "0", "--out", str(out)]) == 0
    assert RunCheckpoint.load(out / "last.pt").categories[1:] == NAMES
    assert main(["evaluate", "--weights", str(out / "last.pt"), "--format", fmt, "--data", str(val),
                 "--out", str(tmp_path / "eval"), "--workers", "0"]) == 0
    assert "AP50" in json.loads((tmp_path / "eval" / "metrics.json").read_text())["bbox"]
    return json.loads((tmp_path / "eval" / "detections.json").read_text())


def test_yolo(cli_shapes, tmp_path, capsys):
    yaml = _to_yolo(cli_shapes, tmp_path / "yolo")
    detections = _train_and_evaluate(tmp_path, "yolo", yaml, yaml, capsys)
    assert {d["category_id"] for d in detections} <= {0, 1, 2, 3, 4}  # the YOLO class indices


def test_voc_flat_folder_discovers_classes(cli_shapes, tmp_path, capsys):
    train = _to_voc(cli_shapes["train"], tmp_path / "voc_train")
    val = _to_voc(cli_shapes["val"], tmp_path / "voc_val")
    # VOC classes are names: the shapes are not Pascal's, so they are read from the XML files (sorted)
    global NAMES
    saved, NAMES = NAMES, sorted(NAMES)
    try:
        detections = _train_and_evaluate(tmp_path, "voc", train, val, capsys)
    finally:
        NAMES = saved
    assert {d["category_id"] for d in detections} <= {1, 2, 3, 4, 5}
