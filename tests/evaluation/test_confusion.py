"""The confusion matrix on hand-made ground truth and detections."""
from __future__ import annotations

import contextlib
import io

import pytest
import torch
from pycocotools.coco import COCO

from torchdet.evaluation.confusion import confusion_matrix, plot_confusion_matrix


def _coco(annotations):
    coco = COCO()
    coco.dataset = {"images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 100}],
                    "categories": [{"id": 7, "name": "cat"}, {"id": 9, "name": "dog"}],
                    "annotations": [dict(a, id=k + 1, area=a["bbox"][2] * a["bbox"][3], iscrowd=a.get("iscrowd", 0))
                                    for k, a in enumerate(annotations)]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


GT = [
    {"image_id": 1, "category_id": 7, "bbox": [0, 0, 10, 10]},     # found as cat
    {"image_id": 1, "category_id": 9, "bbox": [50, 50, 20, 20]},   # found, but called cat
    {"image_id": 2, "category_id": 9, "bbox": [0, 0, 30, 30]},     # missed
    {"image_id": 2, "category_id": 7, "bbox": [60, 60, 30, 30], "iscrowd": 1},
]
DETS = [
    {"image_id": 1, "category_id": 7, "bbox": [0, 0, 10, 11], "score": 0.9},
    {"image_id": 1, "category_id": 7, "bbox": [51, 50, 20, 20], "score": 0.8},
    {"image_id": 1, "category_id": 7, "bbox": [0, 0, 10, 10], "score": 0.7},    # the cat again: a false positive
    {"image_id": 2, "category_id": 9, "bbox": [80, 0, 10, 10], "score": 0.95},  # nothing there
    {"image_id": 2, "category_id": 7, "bbox": [60, 60, 30, 30], "score": 0.9},  # on the crowd: ignored
    {"image_id": 2, "category_id": 9, "bbox": [0, 0, 30, 30], "score": 0.3},    # below the score threshold
]


def test_counts_matches_confusions_false_positives_and_misses():
    cm = confusion_matrix(_coco(GT), DETS, iou_threshold=0.5, score_threshold=0.5)
    # rows true (cat, dog, background), columns predicted (cat, dog, background)
    assert cm.matrix.tolist() == [[1, 0, 0],
                                  [1, 0, 1],
                                  [1, 1, 0]]
    assert cm.names == ["cat", "dog"]
    assert cm.to_dict()["names"] == ["cat", "dog", "background"]


def test_thresholds_change_the_counts():
    low = confusion_matrix(_coco(GT), DETS, iou_threshold=0.5, score_threshold=0.0)
    assert low.matrix[1, 1] == 1 and low.matrix[1, 2] == 0  # the low-score dog now finds its box
    strict = confusion_matrix(_coco(GT), DETS, iou_threshold=0.95, score_threshold=0.5)
    assert strict.matrix[1].tolist() == [0, 0, 2]  # the shifted box no longer matches: both dogs missed
    with pytest.raises(ValueError, match="iou_threshold"):
        confusion_matrix(_coco(GT), DETS, iou_threshold=0.0)


def test_every_ground_truth_box_is_counted_once():
    cm = confusion_matrix(_coco(GT), DETS)
    non_crowd = sum(1 for a in GT if not a.get("iscrowd"))
    assert int(cm.matrix[:2].sum()) == non_crowd


def test_plot_writes_a_png(tmp_path):
    path = plot_confusion_matrix(confusion_matrix(_coco(GT), DETS), tmp_path / "cm.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
