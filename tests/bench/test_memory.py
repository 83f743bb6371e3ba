"""Peak-RSS benchmark: one fresh child process, figures in MiB that hang together."""
import pytest

from torchdet.bench.memory import format_memory, measure_in_subprocess


def test_memory_child_reports_consistent_mib():
    r = measure_in_subprocess("ssdlite320_mobilenet_v3_large", height=64, width=64, threads=1, runs=1)
    assert 50 < r.after_build_mib <= r.build_peak_mib + 1 and r.build_peak_mib <= r.peak_mib
    assert r.increment_mib == pytest.approx(r.peak_mib - r.after_build_mib)
    assert r.builder in format_memory([r])


def test_memory_child_failure_is_reported():
    with pytest.raises(RuntimeError, match="exited with"):
        measure_in_subprocess("no_such_builder")


def test_peak_is_this_process_own_and_at_least_the_current_rss():
    from torchdet.bench.memory import current_rss_mib, peak_rss_mib

    assert peak_rss_mib() >= current_rss_mib() > 0
