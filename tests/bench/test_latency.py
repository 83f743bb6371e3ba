"""The benchmark's plumbing on the smallest builder (no timing assertions: figures live in `make bench`)."""
import json

import pytest

from torchdet.bench.latency import format_table, load_builder, run_latency, torchvision_baseline
from torchdet.weights.registry import DETECTION_BUILDERS


def test_every_builder_loads_and_has_a_torchvision_figure():
    assert len(DETECTION_BUILDERS) == 12
    assert set(torchvision_baseline()) == set(DETECTION_BUILDERS)
    assert all(callable(load_builder(name)) for name in DETECTION_BUILDERS)
    with pytest.raises(ValueError, match="unknown builder"):
        load_builder("resnet50")


def test_run_latency_reports_ratio_and_op_shares(tmp_path):
    lines = []
    results = run_latency(["fasterrcnn_mobilenet_v3_large_320_fpn"], threads=1, repeats=1,
                          height=96, width=128, json_out=tmp_path / "bench.json", echo=lines.append)
    (r,) = results
    assert r.ms > 0 and r.conv_ref_ms > 0
    assert r.ratio == r.in_conv_refs / torchvision_baseline()[r.builder]["in_conv_refs"]
    assert 0.0 < r.op_share["roi_align"] < 1.0 and 0.0 <= r.op_share["nms"] < 1.0
    assert json.loads((tmp_path / "bench.json").read_text())[0]["builder"] == r.builder
    assert r.builder in format_table(results) and r.builder in "\n".join(lines)
