"""torch's default ONNX exporter (dynamo): the graph runs in onnxruntime at other sizes with eager's detections.

`to_onnx(..., exporter="dynamo")` exports the padded contract of `onnx.py` with free height and
width; a plain `torch.onnx.export(model, (images,), path)` (after `import torchdet.export`) turns
NMS and RoIAlign into ONNX NonMaxSuppression / RoiAlign.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from _oracle import assert_detections_match, build_filled, load_case  # noqa: E402
from torchdet.models.registry import get_model_builder as get_builder  # noqa: E402
from torchdet.export.aoti import unpad_detections  # noqa: E402
from torchdet.export.exported_program import dynamic_shapes  # noqa: E402
from torchdet.export.onnx import run_onnx, to_onnx  # noqa: E402

FAST = ["ssdlite320_mobilenet_v3_large"]
SLOW = ["fasterrcnn_mobilenet_v3_large_320_fpn", "retinanet_resnet50_fpn", "maskrcnn_resnet50_fpn"]
EXAMPLE_SIZE = (224, 256)
OTHER_SIZES = [(300, 200), (150, 410)]


def _model(name: str) -> torch.nn.Module:
    case = load_case(name)
    return build_filled(get_builder(name), case["weights_seed"], **case["kwargs"]).eval()


@pytest.mark.parametrize("name", FAST + [pytest.param(n, marks=pytest.mark.slow) for n in SLOW])
def test_dynamo_graph_matches_eager_at_other_sizes(name: str, tmp_path: Path) -> None:
    import onnx

    model = _model(name)
    path = to_onnx(model, tmp_path / "m.onnx", image_size=EXAMPLE_SIZE, dynamic=True, exporter="dynamo")
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "NonMaxSuppression" in ops
    for size in OTHER_SIZES:
        images = torch.rand((1, 3) + size, generator=torch.Generator().manual_seed(size[0]))
        outputs = run_onnx(path, images)
        with torch.no_grad():
            expected = model(list(images))
        expected = [{k: v for k, v in e.items() if k != "keypoints_scores"} for e in expected]
        names = ["boxes", "scores", "labels", "num_detections"] + [k for k in ("masks", "keypoints") if k in outputs]
        assert_detections_match(unpad_detections([outputs[n] for n in names]), expected)


@pytest.mark.slow
def test_plain_torch_onnx_export_uses_the_default_exporter(tmp_path: Path) -> None:
    """`torch.onnx.export(model, (images,), path)` with torch's defaults, free H and W given as in torch's docs."""
    import onnx
    import onnxruntime

    import torchdet.export  # noqa: F401  (registers the custom ops' ONNX translations)

    name = "fasterrcnn_mobilenet_v3_large_320_fpn"
    model = _model(name)
    path = tmp_path / "plain.onnx"
    torch.onnx.export(model, (torch.rand(1, 3, *EXAMPLE_SIZE),), str(path), dynamic_shapes=dynamic_shapes())
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert {"NonMaxSuppression", "RoiAlign"} <= ops
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    images = torch.rand((1, 3) + OTHER_SIZES[1], generator=torch.Generator().manual_seed(3))
    outputs = [torch.from_numpy(o) for o in session.run(None, {session.get_inputs()[0].name: images.numpy()})]
    with torch.no_grad():
        expected = model(list(images))
    # The model's dict, flattened: boxes [D, 4], then labels (int64) and scores [D], in the dict's order.
    got = {"boxes": outputs[0], **{("labels" if o.dtype == torch.int64 else "scores"): o for o in outputs[1:]}}
    assert_detections_match([got], expected)


def test_unknown_exporter_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exporter"):
        to_onnx(_model(FAST[0]), tmp_path / "m.onnx", exporter="torchscript")
