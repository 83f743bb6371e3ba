"""nms and roi_align export as ONNX NonMaxSuppression / RoiAlign and agree with eager in onnxruntime."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import onnx  # noqa: E402
import onnxruntime  # noqa: E402
from torchdet.ops.nms import batched_nms, nms  # noqa: E402
from torchdet.ops.roi_align import roi_align  # noqa: E402


def _export_and_run(module: nn.Module, inputs: tuple, path: Path, opset: int) -> tuple:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, inputs, str(path), opset_version=opset, dynamo=False,
                          input_names=[f"x{i}" for i in range(len(inputs))])
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    return ops, session.run(None, {f"x{i}": t.numpy() for i, t in enumerate(inputs)})


def _boxes(n: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 50
    wh = torch.rand(n, 2, generator=g) * 30 + 1
    return torch.cat([xy, xy + wh], dim=1)


class _NMS(nn.Module):
    def forward(self, boxes: Tensor, scores: Tensor, idxs: Tensor) -> tuple:
        return nms(boxes, scores, 0.5), batched_nms(boxes, scores, idxs, 0.4)


def test_nms_exports_as_non_max_suppression(tmp_path: Path) -> None:
    boxes, scores = _boxes(200, 0), torch.rand(200, generator=torch.Generator().manual_seed(1))
    idxs = torch.randint(0, 3, (200,), generator=torch.Generator().manual_seed(2))
    ops, (keep, keep_batched) = _export_and_run(_NMS(), (boxes, scores, idxs), tmp_path / "nms.onnx", 11)
    assert "NonMaxSuppression" in ops
    assert keep.tolist() == nms(boxes, scores, 0.5).tolist()
    assert keep_batched.tolist() == batched_nms(boxes, scores, idxs, 0.4).tolist()


class _RoIAlign(nn.Module):
    def __init__(self, aligned: bool, sampling_ratio: int) -> None:
        super().__init__()
        self.aligned, self.sampling_ratio = aligned, sampling_ratio

    def forward(self, x: Tensor, rois: Tensor) -> Tensor:
        return roi_align(x, rois, (5, 4), 0.5, self.sampling_ratio, self.aligned)


@pytest.mark.parametrize("opset,aligned,sampling_ratio", [(11, False, 2), (11, False, -1), (16, True, -1), (16, False, 0)])
def test_roi_align_exports_as_roi_align(tmp_path: Path, opset: int, aligned: bool, sampling_ratio: int) -> None:
    x = torch.rand(2, 3, 30, 40, generator=torch.Generator().manual_seed(3))
    boxes = _boxes(12, 4)
    rois = torch.cat([(torch.arange(12) % 2).float()[:, None], boxes], dim=1)
    module = _RoIAlign(aligned, sampling_ratio)
    ops, (pooled,) = _export_and_run(module, (x, rois), tmp_path / "roi.onnx", opset)
    assert "RoiAlign" in ops
    torch.testing.assert_close(torch.from_numpy(pooled), module(x, rois), atol=1e-5, rtol=1e-4)
