"""Eval latency of the detection builders, in milliseconds and in reference convs.

The reference conv is `conv2d(x [1,256,100,136], w [256,256,3,3], padding=1)` in float32
(16.04 GFLOP), timed in the same process as the models: absolute times drift between
machines and runs, the ratio `latency / conv_ref` holds much better. torchvision's figure comes
from `torchdet.bench.baseline`: measured live on the same image where torchvision imports, or
read from a baseline file; `ratio = ours_in_conv_refs / torchvision_in_conv_refs`.

The share of time spent in nms and roi_align comes from one more run, timed by the ops
themselves (`torchdet.ops._profiling.op_timer`). The FLOPs of the forward come from one more
run under `torch.utils.flop_counter.FlopCounterMode` (see `torchdet.bench.flops`); divided by
the latency they give the achieved GFLOP/s, shown beside the reference conv's GFLOP/s.
"""
from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch

from torchdet.bench.baseline import Baseline, resolve_baseline, torchvision_builder
from torchdet.bench.fill import fill_state_dict
from torchdet.models.registry import get_model_record, registered_models
from torchdet.ops._profiling import op_timer

PROFILED_OPS = ("nms", "roi_align")
REFERENCE_CONV_GFLOP = 2 * 256 * 256 * 9 * 100 * 136 / 1e9  # 16.04


@dataclass
class LatencyResult:
    builder: str
    ms: float
    conv_ref_ms: float
    in_conv_refs: float
    torchvision_in_conv_refs: Optional[float]
    ratio: Optional[float]
    op_share: Dict[str, float]
    detections: int
    gflop: Optional[float] = None
    gflops: Optional[float] = None
    conv_ref_gflops: Optional[float] = None
    fraction: Optional[float] = None


def zoo_builders() -> List[str]:
    """The detectors with published weights (torchvision's twelve), in the registry's order."""
    return [r.name for r in registered_models("detection", with_weights=True)]


def load_builder(name: str) -> Callable[..., torch.nn.Module]:
    """The zoo builder called ``name`` (an error naming the choices for anything else)."""
    if name not in zoo_builders():
        raise ValueError(f"unknown builder {name!r}; choose from {', '.join(zoo_builders())}")
    return get_model_record(name).builder


def _median_ms(fn: Callable[[], object], repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def settle_allocator() -> None:
    """Let glibc's malloc serve blocks up to its 32 MiB cap from the heap from now on.

    glibc hands blocks above a moving threshold (128 KiB at start) to mmap and returns them on
    free, so every call pays fresh zeroed pages for them; freeing a block raises the threshold
    to that block's size, up to 32 MiB. The reference conv's buffers (about 27 MB) thus cost
    about 10k page faults per call in a fresh process, and none once a model has run (a visibly
    faster conv). Freeing one 30 MiB block first puts every measurement in the second state, so
    the reference conv is timed at its fault-free speed: the conservative choice, since a slow
    reference would flatter every ratio. Harmless elsewhere.
    """
    block = torch.empty(30 * 2**20 // 4)
    block.fill_(0)  # touch it, so it is really allocated
    del block


def reference_conv_ms(repeats: int = 5, warmup: int = 2) -> float:
    """Median time of the reference conv (16.04 GFLOP) in this process, without page faults
    (see `settle_allocator`)."""
    settle_allocator()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 256, 100, 136, generator=g)
    w = torch.randn(256, 256, 3, 3, generator=g)
    with torch.no_grad():
        return _median_ms(lambda: torch.nn.functional.conv2d(x, w, padding=1), repeats, warmup)


def benchmark_image(height: int = 480, width: int = 640, seed: int = 0) -> torch.Tensor:
    """A fixed [3, H, W] image in 0..1 (smooth noise, so detectors see some structure)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, height // 16, width // 16, generator=g)
    return torch.nn.functional.interpolate(low, size=(height, width), mode="bilinear", align_corners=False)[0]


def op_shares(model: torch.nn.Module, images: List[torch.Tensor]) -> Dict[str, float]:
    """Fraction of one eval forward spent inside each profiled op (see torchdet.ops._profiling)."""
    with torch.no_grad(), op_timer() as seconds:
        start = time.perf_counter()
        model(images)
        total = time.perf_counter() - start
    return {op: seconds.get(op, 0.0) / total for op in PROFILED_OPS}


def build_eval_model(name: str, builder: Optional[Callable[..., torch.nn.Module]] = None) -> torch.nn.Module:
    """The builder (default: ours called ``name``) with default kwargs and the baseline's weights (fill
    seed 3), in eval mode."""
    model = (builder or load_builder(name))(weights=None, weights_backbone=None)
    fill_state_dict(model, 3)
    return model.eval()


def torchvision_in_conv_refs(name: str, image: torch.Tensor, baseline: Optional[Baseline], repeats: int,
                             warmup: int, conv_ms: float) -> Optional[float]:
    """torchvision's latency for ``name`` in reference convs: timed now on ``image`` (live), or the file's."""
    if baseline is None:
        return None
    if not baseline.live:
        return baseline.eval_refs.get(name)
    builder = torchvision_builder(name)
    if builder is None:
        return None
    model = build_eval_model(name, builder)
    with torch.no_grad():
        return _median_ms(lambda: model([image]), repeats, warmup) / conv_ms


def measure_builder(name: str, image: torch.Tensor, repeats: int = 5, warmup: int = 1,
                    baseline: Optional[Baseline] = None, flops: bool = True) -> LatencyResult:
    """Build with the baseline's weights (fill seed 3), then time eval on one image.

    With ``flops``, also count the forward's FLOPs and report the achieved GFLOP/s, the
    reference conv's GFLOP/s and their ratio (``fraction``).
    """
    from torchdet.bench.flops import count_flops

    model = build_eval_model(name)
    with torch.no_grad():
        ms = _median_ms(lambda: model([image]), repeats, warmup)
        detections = len(model([image])[0]["boxes"])
    conv_ms = reference_conv_ms()
    in_refs = ms / conv_ms
    tv = torchvision_in_conv_refs(name, image, baseline, repeats, warmup, conv_ms)
    result = LatencyResult(
        builder=name, ms=ms, conv_ref_ms=conv_ms, in_conv_refs=in_refs,
        torchvision_in_conv_refs=tv, ratio=(in_refs / tv) if tv else None,
        op_share=op_shares(model, [image]), detections=detections,
    )
    if flops:
        result.gflop = count_flops(model, [image]) / 1e9
        result.gflops, result.conv_ref_gflops, result.fraction = flop_rate(result.gflop, ms, conv_ms)
    return result


def flop_rate(gflop: float, ms: float, conv_ms: float) -> Tuple[float, float, float]:
    """``(GFLOP/s, the reference conv's GFLOP/s, their ratio)`` for ``gflop`` done in ``ms``."""
    gflops = gflop / (ms / 1000)
    conv_ref_gflops = REFERENCE_CONV_GFLOP / (conv_ms / 1000)
    return gflops, conv_ref_gflops, gflops / conv_ref_gflops


def _opt(value: Optional[float], width: int, spec: str) -> str:
    return f"{value:{width}{spec}}" if value is not None else f"{'-':>{width}s}"


def format_table(results: List[LatencyResult]) -> str:
    head = (f"{'builder':40s} {'ms':>9s} {'conv_ref':>9s} {'in_refs':>8s} {'tv_refs':>8s} "
            f"{'ratio':>6s} {'nms%':>6s} {'roi%':>6s} {'dets':>5s} {'GFLOP':>7s} {'GFLOP/s':>8s} "
            f"{'ref/s':>6s} {'frac%':>6s}")
    lines = [head, "-" * len(head)]
    for r in results:
        frac = 100 * r.fraction if r.fraction is not None else None
        lines.append(
            f"{r.builder:40s} {r.ms:9.1f} {r.conv_ref_ms:9.1f} {r.in_conv_refs:8.2f} "
            f"{_opt(r.torchvision_in_conv_refs, 8, '.2f')} {_opt(r.ratio, 6, '.2f')} "
            f"{100 * r.op_share['nms']:6.1f} {100 * r.op_share['roi_align']:6.1f} {r.detections:5d} "
            f"{_opt(r.gflop, 7, '.1f')} {_opt(r.gflops, 8, '.1f')} {_opt(r.conv_ref_gflops, 6, '.0f')} "
            f"{_opt(frac, 6, '.1f')}"
        )
    return "\n".join(lines)


def run_latency(builders: Optional[List[str]] = None, threads: int = 2, repeats: int = 5,
                height: int = 480, width: int = 640, json_out: Optional[Path] = None,
                echo: Callable[[str], None] = print, flops: bool = True,
                baseline: Optional[Baseline] = None) -> List[LatencyResult]:
    """Time each builder (default: the zoo) beside torchvision's figure (``baseline``; default
    ``resolve_baseline()``)."""
    torch.set_num_threads(threads)
    names = builders or zoo_builders()
    baseline = baseline or resolve_baseline()
    image = benchmark_image(height, width)
    echo(f"torch {torch.__version__}, {threads} threads, one {height}x{width} image, median of {repeats}; "
         f"ratio = ours / torchvision, both in reference convs (<= 1.0 is faster); torchvision: {baseline.source}")
    if flops:
        echo("GFLOP: forward FLOPs (FlopCounterMode); GFLOP/s = GFLOP / latency; ref/s: the reference "
             "conv's GFLOP/s in this process; frac% = GFLOP/s / ref/s")
    results = []
    for name in names:
        results.append(measure_builder(name, image, repeats=repeats, baseline=baseline, flops=flops))
        echo(format_table(results[-1:]).splitlines()[-1] if results[:-1] else format_table(results[-1:]))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps([asdict(r) for r in results], indent=1))
    return results
