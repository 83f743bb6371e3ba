"""`torchdet.data.check` and `torchdet data check` on small generated datasets with planted problems."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from torchdet.cli import main
from torchdet.data.check import check_dataset
from torchdet.data.coco import CocoDetection
from torchdet.data.synthetic import make_shapes_dataset


@pytest.fixture
def broken_coco(tmp_path):
    """A 6-image shapes dataset with one problem of each kind planted in its COCO file."""
    files = make_shapes_dataset(tmp_path / "shapes", {"train": 6}, image_size=64, seed=1, shapes_per_image=(2, 2))
    path = files["train"]
    data = json.loads(path.read_text())
    anns = data["annotations"]
    by_image = {}
    for ann in anns:
        by_image.setdefault(ann["image_id"], []).append(ann)
    ids = sorted(by_image)
    next_id = max(a["id"] for a in anns) + 1
    anns.append({**by_image[ids[0]][0], "id": next_id, "bbox": [10, 10, -5, 0]})            # negative width
    anns.append({**by_image[ids[0]][0], "id": next_id + 1})                                 # duplicate
    anns.append({**by_image[ids[1]][0], "id": next_id + 2, "bbox": [50, 50, 30, 30]})       # runs out of 64x64
    anns.append({**by_image[ids[1]][0], "id": next_id + 3, "bbox": [70, 70, 5, 5]})         # wholly outside
    data["annotations"] = [a for a in anns if a["image_id"] != ids[2]]                     # image without objects
    (path.parent / data["images"][3]["file_name"]).write_bytes(b"not a png")               # unreadable
    (path.parent / data["images"][4]["file_name"]).unlink()                                 # missing
    path.write_text(json.dumps(data))
    return path


def _dataset(path):
    with pytest.warns(UserWarning):
        return CocoDetection(path, skip_bad_images=True)


def test_check_finds_each_planted_problem(broken_coco):
    report = check_dataset(_dataset(broken_coco), progress=False)
    counts = report.counts()
    assert counts["negative_size_box"] == 1
    assert counts["duplicate_box"] == 1
    assert counts["out_of_image_box"] == 1
    assert counts["zero_size_box"] == 1
    assert counts["image_without_objects"] == 1
    assert counts["missing_image"] == 1
    assert counts["unreadable_image"] == 1
    assert not report.ok and {f.kind for f in report.errors} == {"negative_size_box", "missing_image", "unreadable_image"}
    negative = next(f for f in report.findings if f.kind == "negative_size_box")
    assert "[10, 10, 5, 10]" in negative.detail and "annotation id" in negative.detail
    assert sum(report.class_counts.values()) == len(report.box_sizes)


def test_clean_dataset_is_ok_and_sizes_follow_the_model_resize(tmp_path):
    files = make_shapes_dataset(tmp_path / "clean", {"train": 3}, image_size=64, seed=2)
    dataset = CocoDetection(files["train"])
    plain = check_dataset(dataset, progress=False)
    assert plain.ok and plain.counts().get("negative_size_box") is None

    from torchdet.models import fasterrcnn_mobilenet_v3_large_320_fpn

    model = fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=6)
    resized = check_dataset(dataset, progress=False, model=model)
    # the 320 model resizes 64 px images by 320 / 64 = 5: every size scales by 5
    assert resized.box_sizes == pytest.approx([5 * s for s in plain.box_sizes])
    assert resized.anchor_sizes == [32.0, 64.0, 128.0, 256.0, 512.0]


def test_cli_check_exits_1_and_writes_report_and_picture(broken_coco, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["data", "check", str(broken_coco), "--out", str(out)]) == 1
    text = capsys.readouterr().out
    assert "ERROR negative_size_box: 1" in text and "FAILED" in text
    report = json.loads((out / "report.json").read_text())
    assert report["ok"] is False and report["counts"]["missing_image"] == 1
    assert (out / "box_sizes.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_check_clean_dataset_exits_0(tmp_path, capsys):
    files = make_shapes_dataset(tmp_path / "clean", {"train": 2}, image_size=48, seed=4)
    assert main(["data", "check", str(files["train"]), "--no-decode"]) == 0
    assert "OK: nothing here would break training" in capsys.readouterr().out


def test_coco_loader_names_the_file_and_annotation_of_a_negative_width(broken_coco):
    with pytest.warns(UserWarning, match=r"1 with a negative width or height.*annotation id"):
        CocoDetection(broken_coco, skip_bad_images=True)
