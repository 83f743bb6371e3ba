"""COCO evaluation through pycocotools: results format, perfect and empty detections, per-class AP."""
from __future__ import annotations

import pytest
import torch

from torchdet.evaluation.coco_eval import evaluate_coco, format_metrics, make_coco
from torchdet.inference.coco_results import to_coco_results

GT = {
    "images": [{"id": 10, "file_name": "a.png", "width": 64, "height": 48},
               {"id": 12, "file_name": "b.png", "width": 64, "height": 48}],
    "annotations": [
        {"id": 1, "image_id": 10, "category_id": 7, "bbox": [4, 4, 20, 10]},
        {"id": 2, "image_id": 12, "category_id": 42, "bbox": [30, 20, 16, 16]},
    ],
    "categories": [{"id": 7, "name": "square"}, {"id": 42, "name": "star"}],
}
LABEL_TO_ID = [0, 7, 42]


def _perfect():
    return (to_coco_results(10, {"boxes": torch.tensor([[4.0, 4, 24, 14]]), "labels": torch.tensor([1]),
                                 "scores": torch.tensor([0.9])}, LABEL_TO_ID)
            + to_coco_results(12, {"boxes": torch.tensor([[30.0, 20, 46, 36]]), "labels": torch.tensor([2]),
                                   "scores": torch.tensor([0.8])}, LABEL_TO_ID))


def test_results_use_dataset_ids_and_xywh():
    results = _perfect()
    assert results[0] == {"image_id": 10, "category_id": 7, "bbox": [4.0, 4.0, 20.0, 10.0], "score": 0.9}
    assert results[1]["category_id"] == 42


def test_perfect_detections_score_one_and_per_class_table():
    gt = make_coco(GT)  # no area / iscrowd in the file: filled in
    metrics = evaluate_coco(gt, _perfect(), ["bbox"])
    assert metrics.metrics["bbox"]["AP"] == pytest.approx(1.0)
    assert metrics.metrics["bbox"]["AP50"] == pytest.approx(1.0)
    assert {r["name"]: r["AP"] for r in metrics.per_class["bbox"]} == {"square": pytest.approx(1.0),
                                                                       "star": pytest.approx(1.0)}
    text = format_metrics(metrics)
    assert "square" in text and "AP50" in text


def test_no_detections_score_zero():
    metrics = evaluate_coco(make_coco(GT), [], ["bbox"])
    assert metrics.metrics["bbox"]["AP"] == 0.0


def test_masks_and_keypoints_are_encoded():
    masks = torch.zeros(1, 1, 48, 64)
    masks[0, 0, 4:14, 4:24] = 0.9
    out = {"boxes": torch.tensor([[4.0, 4, 24, 14]]), "labels": torch.tensor([1]), "scores": torch.tensor([0.9]),
           "masks": masks, "keypoints": torch.tensor([[[5.0, 6.0, 1.0], [7.0, 8.0, 1.0]]])}
    (result,) = to_coco_results(10, out, LABEL_TO_ID)
    assert result["segmentation"]["size"] == [48, 64] and isinstance(result["segmentation"]["counts"], str)
    assert result["keypoints"] == [5.0, 6.0, 1.0, 7.0, 8.0, 1.0]
    gt = dict(GT, annotations=[dict(GT["annotations"][0], segmentation=[[4, 4, 24, 4, 24, 14, 4, 14]])])
    metrics = evaluate_coco(make_coco(gt), [result], ["segm"], image_ids=[10])
    assert metrics.metrics["segm"]["AP"] > 0.5
