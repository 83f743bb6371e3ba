"""detection_extras: every class's probabilities (scores_all) and a feature vector (features) per detection."""
from __future__ import annotations

import warnings
from typing import Dict, List

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from _tiny_detectors import BUILDERS, NUM_CLASSES, RCNN, REPRESENTATION, images, targets
from torchdet.models.detection_extras import features_at_anchors, features_at_points

pytestmark = pytest.mark.usefixtures("one_thread")

FAMILIES = sorted(BUILDERS)
SOFTMAX = RCNN + ("ssd", "ssdlite")
BOTH = ("scores_all", "features")


def _feature_width(family: str, model: torch.nn.Module) -> int:
    """The documented width of `features`: the box head's output (R-CNN), the classification tower's
    channels (RetinaNet, FCOS), every backbone level's channels together (SSD, SSDlite)."""
    if family in RCNN:
        return REPRESENTATION
    if family in ("retinanet", "fcos"):
        return model.backbone.out_channels
    with torch.no_grad():
        maps = model.backbone(torch.zeros(1, 3, 64, 64))
    return sum(m.shape[1] for m in maps.values())


def _run(model: torch.nn.Module, extras=()) -> List[Dict[str, Tensor]]:
    model.detection_extras = extras
    with torch.no_grad():
        return model(images())


@pytest.fixture(scope="module", params=FAMILIES)
def family_run(request: pytest.FixtureRequest):
    """(family, model, detections with extras off, detections with both extras on)."""
    model = BUILDERS[request.param]()
    return request.param, model, _run(model), _run(model, BOTH)


def test_detections_unchanged_and_extras_only_when_asked(family_run) -> None:
    family, _, plain, extended = family_run
    for p, e in zip(plain, extended):
        assert "scores_all" not in p and "features" not in p and "anchor_index" not in p
        assert sorted(e) == sorted(list(p) + list(BOTH))
        for key in p:
            assert torch.equal(p[key], e[key]), key
    assert sum(len(d["boxes"]) for d in extended) > 0


def test_scores_all_holds_each_detections_score_at_its_label(family_run) -> None:
    family, _, _, extended = family_run
    for d in extended:
        n = len(d["boxes"])
        assert d["scores_all"].shape == (n, NUM_CLASSES)
        at_label = d["scores_all"].gather(1, d["labels"][:, None])[:, 0]
        torch.testing.assert_close(at_label, d["scores"], rtol=0, atol=1e-7)
        assert bool((d["scores_all"] >= 0).all()) and bool((d["scores_all"] <= 1).all())


def test_softmax_rows_sum_to_one_and_sigmoid_rows_need_not(family_run) -> None:
    family, _, _, extended = family_run
    sums = torch.cat([d["scores_all"].sum(1) for d in extended])
    if family in SOFTMAX:
        torch.testing.assert_close(sums, torch.ones_like(sums))
    else:  # independent per-class sigmoids: the untrained heads' 0.01 prior on each of 5 classes
        assert not torch.allclose(sums, torch.ones_like(sums))


def test_features_have_the_documented_width(family_run) -> None:
    family, model, _, extended = family_run
    width = _feature_width(family, model)
    for d in extended:
        assert d["features"].shape == (len(d["boxes"]), width)
        assert bool(torch.isfinite(d["features"]).all())


@pytest.mark.parametrize("family", RCNN)
def test_rcnn_features_are_what_the_classifier_read(family: str) -> None:
    """The box predictor applied to `features` gives back `scores_all`: they are the RoI's representation."""
    model = BUILDERS[family]()
    detections = _run(model, BOTH)
    for d in detections:
        with torch.no_grad():
            logits, _ = model.roi_heads.box_predictor(d["features"])
        torch.testing.assert_close(F.softmax(logits, -1), d["scores_all"])


def test_one_extra_alone_and_bad_names() -> None:
    model = BUILDERS["retinanet"]()
    only = _run(model, ("scores_all",))
    assert "scores_all" in only[0] and "features" not in only[0]
    with pytest.raises(ValueError, match="choose from"):
        model.detection_extras = ("logits",)
    rcnn = BUILDERS["faster_rcnn"]()
    with pytest.raises(ValueError, match="choose from"):
        rcnn.detection_extras = ("scores",)
    with pytest.raises(ValueError, match=r"\('features',\)"):
        rcnn.detection_extras = "features"


@pytest.mark.parametrize("family", ["mask_rcnn", "fcos", "ssd"])
def test_extras_come_with_forward_with_losses_too(family: str) -> None:
    model = BUILDERS[family]()
    plain = _run(model, BOTH)
    with torch.no_grad():
        _, detections = model.forward_with_losses(images(), targets())
    for p, d in zip(plain, detections):
        for key in p:
            assert torch.equal(p[key], d[key]), key


@pytest.mark.parametrize("family", ["retinanet", "fcos", "ssd"])
def test_scripted_model_keeps_its_outputs(family: str) -> None:
    """A scripted model ignores detection_extras: its contract is the three tensors per image."""
    model = BUILDERS[family]()
    model.detection_extras = BOTH
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(model)
        with torch.no_grad(), torch.jit.optimized_execution(False):
            _, detections = scripted(images())
    assert sorted(detections[0]) == ["boxes", "labels", "scores"]
    model.detection_extras = ()
    for s, e in zip(detections, _run(model)):
        for key in e:
            torch.testing.assert_close(s[key], e[key])


class _Boxes(torch.nn.Module):
    """The first image's boxes: one tensor out, as tracing wants."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model([x])[0]["boxes"]


def test_traced_model_keeps_its_outputs() -> None:
    """Tracing ignores detection_extras: the graph and its outputs are the plain model's."""
    model = BUILDERS["retinanet"]()
    graphs, outputs = [], []
    for extras in ((), (), BOTH):  # the first trace also builds the transform's cached mean/std
        model.detection_extras = extras
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(_Boxes(model), images()[0], check_trace=False)
            outputs.append(traced(images()[1]))
        graphs.append(str(traced.inlined_graph))
    assert graphs[1].count("aten::") == graphs[2].count("aten::")
    torch.testing.assert_close(outputs[1], outputs[2], rtol=0, atol=0)


def test_features_at_anchors_picks_each_anchors_level_and_cell() -> None:
    maps = [torch.arange(2 * 3 * 2 * 4, dtype=torch.float32).view(2, 3, 2, 4),  # 8 cells
            torch.arange(2 * 3 * 1 * 2, dtype=torch.float32).view(2, 3, 1, 2) + 100]  # 2 cells
    # Two anchors per cell: 16 rows on level 0, 4 on level 1.
    index = torch.tensor([0, 1, 7, 15, 16, 19])
    got = features_at_anchors(maps, 1, index, num_anchors=20)
    cells = [(0, 0, 0), (0, 0, 0), (0, 0, 3), (0, 1, 3), (1, 0, 0), (1, 0, 1)]
    expected = torch.stack([maps[level][1, :, y, x] for level, y, x in cells])
    assert torch.equal(got, expected)


def test_features_at_points_concatenates_every_level() -> None:
    maps = [torch.randn(1, 2, 4, 4), torch.randn(1, 3, 2, 2)]
    points = torch.tensor([[1.0, 1.0], [15.9, 8.5], [16.0, 16.0]])  # (x, y) in a 16 x 16 image
    got = features_at_points(maps, 0, points, (16, 16))
    assert got.shape == (3, 5)
    assert torch.equal(got[0], torch.cat([maps[0][0, :, 0, 0], maps[1][0, :, 0, 0]]))
    assert torch.equal(got[1], torch.cat([maps[0][0, :, 2, 3], maps[1][0, :, 1, 1]]))
    assert torch.equal(got[2], torch.cat([maps[0][0, :, 3, 3], maps[1][0, :, 1, 1]]))  # clamped to the map
