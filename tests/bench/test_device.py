"""Device benchmarks: synchronised timing, AMP steps and the TF32 switch (CPU here, CUDA when marked)."""
from __future__ import annotations

import pytest
import torch

from torchdet.bench.device import (DeviceRow, amp_train_step, eval_latency, format_device_rows, set_tf32,
                                   torchvision_builder)
from torchdet.bench.latency import load_builder

SMALL = {"height": 64, "width": 80, "repeats": 1, "warmup": 0}
BUILDER = "ssdlite320_mobilenet_v3_large"


def test_eval_latency_fp32_and_amp_on_the_cpu() -> None:
    for amp in (False, True):
        result = eval_latency(load_builder(BUILDER), torch.device("cpu"), batch=2, amp=amp, **SMALL)
        assert result["ms"] > 0 and result["peak_mb"] is None  # no GPU memory figure on the CPU


def test_amp_train_step_reports_finite_float32_losses() -> None:
    result = amp_train_step(load_builder(BUILDER), torch.device("cpu"), amp=True, **SMALL)
    assert result["losses"] and all(v == v and abs(v) < 1e6 for v in result["losses"].values())


def test_set_tf32_switches_matmul_and_cudnn() -> None:
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        set_tf32(False)
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        set_tf32(True)
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_unknown_torchvision_builder_is_none() -> None:
    assert torchvision_builder("no_such_builder") is None


def test_format_device_rows_shows_the_ratio() -> None:
    table = format_device_rows([DeviceRow(BUILDER, "eval fp32", 8, 10.0, 100.0, 20.0, 120.0)])
    assert "0.50" in table and BUILDER in table


@pytest.mark.cuda
def test_cuda_eval_latency_reports_peak_memory() -> None:
    set_tf32(False)
    result = eval_latency(load_builder(BUILDER), torch.device("cuda"), batch=1, **SMALL)
    assert result["peak_mb"] > 0


@pytest.mark.cuda
def test_cuda_nms_and_roi_align_match_the_cpu() -> None:
    from torchdet.ops import nms, roi_align

    g = torch.Generator().manual_seed(0)
    xy = torch.rand(500, 2, generator=g) * 200
    boxes = torch.cat([xy, xy + 1 + torch.rand(500, 2, generator=g) * 50], dim=1)
    scores = torch.rand(500, generator=g)
    assert torch.equal(nms(boxes.cuda(), scores.cuda(), 0.5).cpu(), nms(boxes, scores, 0.5))
    feats = torch.randn(1, 4, 32, 32, generator=g)
    rois = torch.cat([torch.zeros(20, 1), boxes[:20] / 8], dim=1)
    torch.testing.assert_close(roi_align(feats.cuda(), rois.cuda(), 7, 0.5, 2, True).cpu(),
                               roi_align(feats, rois, 7, 0.5, 2, True), atol=1e-5, rtol=1e-5)
