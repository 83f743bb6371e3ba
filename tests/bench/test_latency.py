"""The benchmark's plumbing on the smallest builder (no timing assertions: figures live in `make bench`)."""
import json
import platform
import subprocess
import sys

import pytest

from torchdet.bench.baseline import REPO_BASELINE, read_baseline
from torchdet.bench.latency import REFERENCE_CONV_GFLOP, format_table, load_builder, run_latency, zoo_builders


def test_every_builder_loads_and_has_a_torchvision_figure():
    assert len(zoo_builders()) == 12 and "fcos_tiny" not in zoo_builders()
    assert set(read_baseline(REPO_BASELINE).eval_refs) == set(zoo_builders())
    assert all(callable(load_builder(name)) for name in zoo_builders())
    with pytest.raises(ValueError, match="unknown builder"):
        load_builder("resnet50")


def test_run_latency_reports_ratio_op_shares_and_gflops(tmp_path):
    lines = []
    baseline = read_baseline(REPO_BASELINE)
    results = run_latency(["fasterrcnn_mobilenet_v3_large_320_fpn"], threads=1, repeats=1, height=96, width=128,
                          json_out=tmp_path / "bench.json", echo=lines.append, baseline=baseline)
    (r,) = results
    assert r.ms > 0 and r.conv_ref_ms > 0
    assert r.ratio == r.in_conv_refs / baseline.eval_refs[r.builder]
    assert 0.0 < r.op_share["roi_align"] < 1.0 and 0.0 <= r.op_share["nms"] < 1.0
    # the 320 model resizes to 320 on the short side: its convs alone are well above 0.1 GFLOP
    assert r.gflop > 0.1
    assert r.gflops == pytest.approx(r.gflop / (r.ms / 1000))
    assert r.conv_ref_gflops == pytest.approx(REFERENCE_CONV_GFLOP / (r.conv_ref_ms / 1000))
    assert r.fraction == pytest.approx(r.gflops / r.conv_ref_gflops)
    assert json.loads((tmp_path / "bench.json").read_text())[0]["builder"] == r.builder
    table = format_table(results)
    assert r.builder in table and r.builder in "\n".join(lines) and "GFLOP/s" in table


def test_latency_without_flops_leaves_the_columns_empty():
    (r,) = run_latency(["ssdlite320_mobilenet_v3_large"], threads=1, repeats=1, height=64, width=64,
                       echo=lambda _: None, flops=False)
    assert r.gflop is None and r.fraction is None
    assert format_table([r]).splitlines()[-1].rstrip().endswith("-")


_REF_FAULTS = """
import resource, torch
from torchdet.bench.latency import settle_allocator
torch.set_num_threads(1)
x, w = torch.randn(1, 256, 100, 136), torch.randn(256, 256, 3, 3)
settle_allocator()
with torch.no_grad():
    for _ in range(2):  # reference_conv_ms's warm-up
        torch.nn.functional.conv2d(x, w, padding=1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.nn.functional.conv2d(x, w, padding=1)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mmap threshold")
def test_reference_conv_is_timed_without_page_faults():
    # Unsettled, a new process takes ~10k page faults on every call, warm-up or not.
    done = subprocess.run([sys.executable, "-c", _REF_FAULTS], capture_output=True, text=True, check=True)
    assert int(done.stdout.strip().splitlines()[-1]) < 500
