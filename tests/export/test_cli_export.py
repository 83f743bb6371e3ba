"""`torchdet export` writes a graph that matches the checkpoint's model."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Tuple

import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from _oracle import assert_detections_match, build_filled, load_case  # noqa: E402
from torchdet.cli import main  # noqa: E402
from torchdet.models.registry import get_model_builder as get_builder  # noqa: E402
from torchdet.export.onnx import run_onnx  # noqa: E402

NAME = "ssdlite320_mobilenet_v3_large"


def _run_checkpoint(tmp_path: Path) -> Tuple[Dict[str, Any], torch.nn.Module, Path]:
    """The oracle case, its filled model, and that model saved as a training run's checkpoint."""
    case = load_case(NAME)
    model = build_filled(get_builder(NAME), case["weights_seed"], **case["kwargs"]).eval()
    checkpoint = tmp_path / "best.pt"
    torch.save({"builder": NAME, "builder_kwargs": dict(case["kwargs"]), "model": model.state_dict()}, checkpoint)
    return case, model, checkpoint


def test_export_command_writes_a_matching_graph(tmp_path: Path) -> None:
    case, model, checkpoint = _run_checkpoint(tmp_path)
    out = tmp_path / "model.onnx"
    code = main(["export", "--weights", str(checkpoint), "--format", "onnx", "--image-size", "240", "320",
                 "--out", str(out)])
    assert code == 0 and out.is_file()
    image = case["images"][0][None]
    outputs = run_onnx(out, image)
    count = int(outputs["num_detections"][0])
    with torch.no_grad():
        expected = model(list(image))
    assert_detections_match([{k: v[0, :count] for k, v in outputs.items() if k != "num_detections"}], expected)


def test_export_command_dynamic_takes_any_batch_size(tmp_path: Path) -> None:
    case, model, checkpoint = _run_checkpoint(tmp_path)
    out = tmp_path / "model.onnx"
    assert main(["export", "--weights", str(checkpoint), "--image-size", "240", "320", "--dynamic",
                 "--out", str(out)]) == 0
    images = torch.stack([case["images"][0], case["images"][0].flip(-1), case["images"][0].flip(-2)])
    outputs = run_onnx(out, images)
    assert outputs["boxes"].shape[0] == 3
    with torch.no_grad():
        expected = model(list(images))
    got = [{k: v[b, :int(outputs["num_detections"][b])] for k, v in outputs.items() if k != "num_detections"}
           for b in range(3)]
    assert_detections_match(got, expected)


def test_export_command_reports_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["export", "--weights", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "m.onnx")])
    assert code == 1
    assert "torchdet export: error:" in capsys.readouterr().err


def test_export_command_writes_a_program_for_any_size(tmp_path: Path) -> None:
    from torchdet.export.exported_program import load_program

    case, model, checkpoint = _run_checkpoint(tmp_path)
    out = tmp_path / "model.pt2"
    assert main(["export", "--weights", str(checkpoint), "--format", "pt2", "--image-size", "240", "320",
                 "--out", str(out)]) == 0
    image = torch.rand(1, 3, 150, 410, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = model(list(image))
        got = load_program(out).module()(image)
    assert_detections_match(got, expected)
