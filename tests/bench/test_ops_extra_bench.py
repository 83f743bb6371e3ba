"""ops_extra_bench runs without torchvision and compares what it times (no timing assertions)."""
import torch

from torchdet.bench import ops_extra_bench


def test_runs_without_torchvision_and_checks_outputs() -> None:
    tv = ops_extra_bench.torchvision_ops()  # None here: torchvision does not import with this torch
    rois = ops_extra_bench.detection_rois(16, torch.Generator().manual_seed(0))
    assert rois.shape == (16, 5) and bool((rois[:, 3:] > rois[:, 1:3]).all())
    ms = ops_extra_bench.bench_deform_conv(12, 1, backward=True, tv=tv)
    assert {"torchdet", "F.conv2d (yardstick)"} <= set(ms) and all(v > 0 for v in ms.values())
