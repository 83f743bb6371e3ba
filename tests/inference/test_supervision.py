"""Conversions between torchdet's detection dicts and supervision.Detections."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

sv = pytest.importorskip("supervision")

from torchdet.inference.supervision import from_supervision, to_supervision  # noqa: E402


def _detections():
    masks = torch.zeros(2, 1, 8, 10)
    masks[0, 0, 1:4, 2:6] = 0.9
    masks[1, 0, 5:7, 0:3] = 0.7
    masks[1, 0, 0, 0] = 0.2  # below the threshold
    return {"boxes": torch.tensor([[2.0, 1, 6, 4], [0, 5, 3, 7]]), "scores": torch.tensor([0.9, 0.6]),
            "labels": torch.tensor([1, 3]), "masks": masks, "keypoints": torch.rand(2, 5, 3),
            "track_ids": torch.tensor([7, 9])}


def test_round_trip_keeps_every_field():
    dets = _detections()
    converted = to_supervision(dets, categories=["bg", "cat", "dog", "bird"])
    assert isinstance(converted, sv.Detections) and len(converted) == 2
    np.testing.assert_allclose(converted.xyxy, dets["boxes"].numpy())
    assert converted.class_id.tolist() == [1, 3] and converted.tracker_id.tolist() == [7, 9]
    assert converted.data["class_name"].tolist() == ["cat", "bird"]
    assert converted.mask.dtype == bool and converted.mask.shape == (2, 8, 10)
    assert converted.mask[1].sum() == 6 and not converted.mask[1, 0, 0]
    back = from_supervision(converted)
    assert torch.equal(back["boxes"], dets["boxes"]) and torch.equal(back["labels"], dets["labels"])
    assert torch.allclose(back["scores"], dets["scores"]) and torch.equal(back["track_ids"], dets["track_ids"])
    assert torch.equal(back["masks"], (dets["masks"] > 0.5).float())
    assert torch.allclose(back["keypoints"], dets["keypoints"])


def test_supervision_tools_work_on_converted_detections():
    dets = to_supervision(_detections())
    zone = sv.PolygonZone(polygon=np.array([[0, 0], [7, 0], [7, 5], [0, 5]]))
    assert zone.trigger(dets).tolist() == [True, False]
    picture = sv.BoxAnnotator().annotate(np.zeros((8, 10, 3), dtype=np.uint8), dets)
    assert picture.any()
    assert len(dets[dets.confidence > 0.7]) == 1


def test_minimal_and_empty_detections():
    plain = from_supervision(sv.Detections(xyxy=np.array([[0, 0, 4, 4]], dtype=np.float32)))
    assert plain["scores"].tolist() == [1.0] and plain["labels"].tolist() == [0] and "masks" not in plain
    empty = to_supervision({"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0).long()})
    assert len(empty) == 0 and from_supervision(empty)["boxes"].shape == (0, 4)


def test_bad_input_and_missing_package(monkeypatch):
    with pytest.raises(ValueError, match="must match"):
        to_supervision({"boxes": torch.zeros(2, 4), "scores": torch.zeros(3)})
    with pytest.raises(ValueError, match="Detections"):
        from_supervision({"boxes": torch.zeros(1, 4)})
    monkeypatch.setitem(sys.modules, "supervision", None)
    with pytest.raises(ImportError, match="pip install supervision"):
        to_supervision(_detections())
