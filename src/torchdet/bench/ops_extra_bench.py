"""CPU timings of the heavy torchvision.ops twins: roi_pool, ps_roi_pool, ps_roi_align, deform_conv2d.

    PYTHONPATH=src .venv/bin/python -m torchdet.bench.ops_extra_bench [--threads N] [--repeats R] [--quick] [--backward]

Each case times torchdet's op and, when ``torchvision`` imports, torchvision's compiled kernel on
the same inputs (interleaved, median of ``--repeats``; outputs checked equal). ``deform_conv2d``
is also timed against ``F.conv2d`` of the same shape as a yardstick: a deformable convolution
does the same matmul plus a bilinear gather. The cases:

- ``roi_pool``: 512 RoIs, 7x7, on a ``[1, 256, 50, 68]`` stride-16 map (Fast R-CNN);
- ``ps_roi_pool`` / ``ps_roi_align``: 512 RoIs, 7x7 bins of 8 channels (``[1, 392, 50, 68]``,
  R-FCN), ``ps_roi_align`` with ``sampling_ratio`` 2 and adaptive;
- ``deform_conv2d``: 64 -> 64 channels, 3x3, padding 1, offsets and mask, on ``[1, 64, 100, 100]``.

``--backward`` times forward + backward instead of forward only.
"""
from __future__ import annotations

import argparse
from types import ModuleType
from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from torchdet.bench.ops_bench import interleaved_ms
from torchdet.ops import deform_conv2d, ps_roi_align, ps_roi_pool, roi_pool


def torchvision_ops() -> Optional[ModuleType]:
    """``torchvision.ops`` when torchvision (with its compiled ops) imports here, else None."""
    try:
        import torchvision.ops as tv_ops

        torch.ops.torchvision.roi_pool  # noqa: B018 - raises when the compiled ops are missing
        return tv_ops
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return None


def detection_rois(count: int, g: torch.Generator, width: int = 1088, height: int = 800) -> Tensor:
    """``[count, 5]`` RoIs on image 0 with sizes from 16 to 512 px, as a detector proposes them."""
    size = torch.exp(torch.empty(count, 2).uniform_(2.77, 6.24, generator=g))  # 16 .. 512 px
    corner = torch.rand(count, 2, generator=g) * (torch.tensor([width, height]) - size).clamp(min=1)
    return torch.cat([torch.zeros(count, 1), corner, corner + size], dim=1)


def _timed(fn: Callable[[], Tensor], backward: bool) -> Callable[[], object]:
    def run() -> object:
        if not backward:
            with torch.no_grad():
                return fn()
        out = fn()
        out.backward(torch.ones_like(out))
        return out

    return run


def _compare(name: str, variants: Dict[str, Callable[[], Tensor]], repeats: int, backward: bool) -> Dict[str, float]:
    with torch.no_grad():
        outputs = {k: f() for k, f in variants.items()}
    reference = outputs["torchdet"]
    for k, out in outputs.items():
        if k.startswith("torchvision"):
            torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-4, msg=lambda m: f"{name} {k}: {m}")
    ms = interleaved_ms({k: _timed(f, backward) for k, f in variants.items()}, repeats)
    print(f"{name:<34}" + ", ".join(f"{k} {v:.1f} ms" for k, v in ms.items()))
    return ms


def bench_rois(rois_count: int, repeats: int, backward: bool, tv: Optional[ModuleType]) -> Dict[str, Dict[str, float]]:
    g = torch.Generator().manual_seed(0)
    rois = detection_rois(rois_count, g)
    scale = 1.0 / 16
    feature = torch.randn(1, 256, 50, 68, generator=g).requires_grad_(backward)
    ps_feature = torch.randn(1, 8 * 49, 50, 68, generator=g).requires_grad_(backward)
    results = {}
    cases: Dict[str, Tuple[Callable[[], Tensor], Optional[Callable[[], Tensor]]]] = {
        f"roi_pool {rois_count}x7x7 C256": (
            lambda: roi_pool(feature, rois, 7, scale),
            (lambda: tv.roi_pool(feature, rois, 7, scale)) if tv else None,
        ),
        f"ps_roi_pool {rois_count}x7x7 C392": (
            lambda: ps_roi_pool(ps_feature, rois, 7, scale),
            (lambda: tv.ps_roi_pool(ps_feature, rois, 7, scale)) if tv else None,
        ),
        f"ps_roi_align sr=2 {rois_count}x7x7": (
            lambda: ps_roi_align(ps_feature, rois, 7, scale, 2),
            (lambda: tv.ps_roi_align(ps_feature, rois, 7, scale, 2)) if tv else None,
        ),
        f"ps_roi_align sr=-1 {rois_count}x7x7": (
            lambda: ps_roi_align(ps_feature, rois, 7, scale, -1),
            (lambda: tv.ps_roi_align(ps_feature, rois, 7, scale, -1)) if tv else None,
        ),
    }
    for name, (ours, theirs) in cases.items():
        variants = {"torchdet": ours}
        if theirs is not None:
            variants["torchvision"] = theirs
        results[name] = _compare(name, variants, repeats, backward)
    return results


def bench_deform_conv(size: int, repeats: int, backward: bool, tv: Optional[ModuleType]) -> Dict[str, float]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 64, size, size, generator=g).requires_grad_(backward)
    weight = (torch.randn(64, 64, 3, 3, generator=g) * 0.05).requires_grad_(backward)
    bias = torch.zeros(64).requires_grad_(backward)
    offset = torch.randn(1, 18, size, size, generator=g).requires_grad_(backward)
    mask = torch.rand(1, 9, size, size, generator=g).requires_grad_(backward)
    variants: Dict[str, Callable[[], Tensor]] = {
        "torchdet": lambda: deform_conv2d(x, offset, weight, bias, padding=1, mask=mask),
        "F.conv2d (yardstick)": lambda: F.conv2d(x, weight, bias, padding=1),
    }
    if tv is not None:
        variants["torchvision"] = lambda: tv.deform_conv2d(x, offset, weight, bias, padding=1, mask=mask)
    return _compare(f"deform_conv2d 64->64 3x3 {size}x{size}", variants, repeats, backward)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--quick", action="store_true", help="128 RoIs and a 40x40 deform_conv2d input")
    parser.add_argument("--backward", action="store_true", help="time forward + backward")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tv = torchvision_ops()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats} interleaved runs, "
        f"{'forward + backward' if args.backward else 'forward'}; torchvision: "
        f"{'available' if tv is not None else 'not importable, skipped'}"
    )
    bench_rois(128 if args.quick else 512, args.repeats, args.backward, tv)
    bench_deform_conv(40 if args.quick else 100, args.repeats, args.backward, tv)


if __name__ == "__main__":
    main()
