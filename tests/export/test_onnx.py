"""ONNX export: the deployable graph runs in onnxruntime and matches the eager detections.

Weights are the oracle's deterministic fill (score threshold 0, 50 detections per image), so
every image has detections to compare. Three builders run in `make test`; all twelve with
`-m slow`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from _oracle import assert_detections_match, build_filled, load_case  # noqa: E402
from torchdet.models.registry import get_model_builder as get_builder  # noqa: E402
from torchdet.export.onnx import run_onnx, to_onnx  # noqa: E402

FAST = ["fasterrcnn_mobilenet_v3_large_320_fpn", "retinanet_resnet50_fpn", "ssdlite320_mobilenet_v3_large"]
SLOW = [
    "fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2", "fasterrcnn_mobilenet_v3_large_fpn",
    "maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2", "keypointrcnn_resnet50_fpn",
    "retinanet_resnet50_fpn_v2", "fcos_resnet50_fpn", "ssd300_vgg16",
]
SIZE = (240, 320)  # the oracle's first image


def _model(name: str) -> torch.nn.Module:
    case = load_case(name)
    return build_filled(get_builder(name), case["weights_seed"], **case["kwargs"]).eval()


def _unpad(outputs: Dict[str, torch.Tensor]) -> List[Dict[str, torch.Tensor]]:
    """Batched, padded graph outputs -> one dict per image with its first num_detections rows."""
    result = []
    for b, count in enumerate(outputs["num_detections"].tolist()):
        result.append({k: v[b, :count] for k, v in outputs.items() if k != "num_detections"})
    return result


def _check(model: torch.nn.Module, path: Path, images: torch.Tensor) -> Dict[str, torch.Tensor]:
    outputs = run_onnx(path, images)
    with torch.no_grad():
        expected = model(list(images))
    expected = [{k: v for k, v in e.items() if k != "keypoints_scores"} for e in expected]  # not in the graph
    d = model.roi_heads.detections_per_img if hasattr(model, "roi_heads") else model.detections_per_img
    assert outputs["boxes"].shape == (images.shape[0], d, 4)
    assert outputs["scores"].shape == (images.shape[0], d)
    assert outputs["labels"].dtype == torch.int64 and outputs["num_detections"].dtype == torch.int64
    assert_detections_match(_unpad(outputs), expected)
    return outputs


# Every builder: the cheap three in `make test`, the rest under `-m slow` (`make test-slow`).
ALL = FAST + [pytest.param(name, marks=pytest.mark.slow) for name in SLOW]


@pytest.mark.parametrize("name", ALL)
def test_export_matches_eager(name: str, tmp_path: Path) -> None:
    model = _model(name)
    image = load_case(name)["images"][0][None]
    assert tuple(image.shape[-2:]) == SIZE
    path = to_onnx(model, tmp_path / f"{name}.onnx", image_size=SIZE)
    outputs = _check(model, path, image)
    if "masks" in outputs:
        assert outputs["masks"].shape[-2:] == SIZE and outputs["masks"].shape[2] == 1
    if "keypoints" in outputs:
        assert outputs["keypoints"].shape[-1] == 3


OTHER_SIZE = (200, 272)  # neither the export size nor its aspect ratio


@pytest.mark.parametrize("name", ALL)
def test_dynamic_export_matches_eager_at_other_sizes_and_batches(name: str, tmp_path: Path) -> None:
    """Exported once with free B, H, W; checked at the export size and at another size, batch 2."""
    model = _model(name)
    path = to_onnx(model, tmp_path / f"{name}.onnx", image_size=SIZE, dynamic=True)
    images = torch.stack(load_case(name)["images"][:1] * 2)  # [2, 3, *SIZE]
    images[1] = images[1].flip(-1)
    _check(model, path, images)
    other = torch.nn.functional.interpolate(images, size=OTHER_SIZE, mode="bilinear", align_corners=False)
    outputs = _check(model, path, other)
    if "masks" in outputs:
        assert outputs["masks"].shape[-2:] == OTHER_SIZE


def test_torch_onnx_export_as_in_torchvision_docs(tmp_path: Path) -> None:
    """The plain call on the model itself (the docs' recipe) traces through nms and roi_align,
    and the file gives the eager detections in onnxruntime (outputs: boxes, labels, scores)."""
    import warnings

    import onnx
    import onnxruntime

    name = "fasterrcnn_mobilenet_v3_large_320_fpn"
    model = _model(name)
    images = load_case(name)["images"][0][None]
    path = tmp_path / "plain.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (images,), str(path), opset_version=11, dynamo=False)
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert {"NonMaxSuppression", "RoiAlign"} <= ops
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    boxes, labels, scores = session.run(None, {session.get_inputs()[0].name: images.numpy()})
    with torch.no_grad():
        expected = model(images)
    got = {"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels), "scores": torch.from_numpy(scores)}
    assert_detections_match([got], expected)


def test_bad_arguments_name_the_value(tmp_path: Path) -> None:
    model = _model("ssdlite320_mobilenet_v3_large")
    with pytest.raises(ValueError, match="opset"):
        to_onnx(model, tmp_path / "m.onnx", image_size=SIZE, opset=10)
    with pytest.raises(ValueError, match="image_size"):
        to_onnx(model, tmp_path / "m.onnx", image_size=(0, 10))


def test_missing_onnxruntime_says_which_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from torchdet.export import onnx as export_onnx

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"torchdet\[export\]"):
        export_onnx.require_onnx()


def test_detection_count_is_not_baked_into_the_graph(tmp_path: Path) -> None:
    """With a score threshold the count varies from image to image; the graph follows it."""
    name = "ssdlite320_mobilenet_v3_large"
    case = load_case(name)
    model = build_filled(get_builder(name), case["weights_seed"], **{**case["kwargs"], "score_thresh": 0.0185}).eval()
    path = to_onnx(model, tmp_path / "m.onnx", image_size=SIZE)
    other = torch.nn.functional.interpolate(case["images"][1][None], size=SIZE)
    counts = set()
    for images in (case["images"][0][None], other, torch.zeros((1, 3) + SIZE)):
        counts.add(int(_check(model, path, images)["num_detections"][0]))
    assert len(counts) > 1, f"the test images should give different detection counts, got {counts}"
