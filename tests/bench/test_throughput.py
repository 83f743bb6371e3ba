"""Batch vs single calls: structure and consistency of the figures (no timing assertions)."""
import pytest

from torchdet.bench.throughput import format_throughput, run_throughput


def test_throughput_figures_are_consistent():
    lines = []
    (r,) = run_throughput(["ssdlite320_mobilenet_v3_large"], batch=2, repeats=1, height=64, width=80,
                          echo=lines.append)
    assert r.batch == 2 and r.single_ms > 0 and r.batch_ms > 0
    assert r.single_images_per_s == pytest.approx(2 / (r.single_ms / 1000))
    assert r.batch_images_per_s == pytest.approx(2 / (r.batch_ms / 1000))
    assert r.speedup == pytest.approx(r.batch_images_per_s / r.single_images_per_s)
    assert r.builder in format_throughput([r]) and "speedup" in "\n".join(lines)


def test_batch_must_be_positive():
    with pytest.raises(ValueError, match="--batch 0"):
        run_throughput(["ssdlite320_mobilenet_v3_large"], batch=0)
