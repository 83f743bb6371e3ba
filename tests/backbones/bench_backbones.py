"""Eval speed of the backbone fast paths, A/B in one process (run by hand, not by pytest).

    PYTHONPATH=src .venv/bin/python tests/backbones/bench_backbones.py [--builders ...] [--rounds 5]

For each builder (built with weights=None, filled like the benchmark, one 480x640 image, 2 threads)
it times the whole eval forward with the fast paths off (NCHW, batch norm unfused) and on, round
robin so that load from other processes hits both alike, and prints the medians, the reference
conv's time (`conv2d(x[1,256,100,136], w[256,256,3,3])`, 16.04 GFLOP) measured between rounds, and
the FLOP rate of the whole forward (FLOPs from torch.utils.flop_counter.FlopCounterMode) as a
fraction of the reference conv's.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, Dict, List

import torch
from torch.utils.flop_counter import FlopCounterMode

from torchdet.bench.fill import fill_state_dict
from torchdet.bench.latency import REFERENCE_CONV_GFLOP, benchmark_image, load_builder, reference_conv_ms
from torchdet.ops import fusion


def _set_channels_last(model: torch.nn.Module, on: bool) -> None:
    for m in model.modules():
        if hasattr(m, "channels_last"):
            m.channels_last = on


def _ms(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def bench(name: str, rounds: int) -> None:
    model = load_builder(name)(weights=None, weights_backbone=None)
    fill_state_dict(model, 3)
    model.eval()
    image = benchmark_image()
    with torch.no_grad():
        with FlopCounterMode(display=False) as counter:
            model([image])
        gflop = counter.get_total_flops() / 1e9
        times: Dict[bool, List[float]] = {False: [], True: []}
        ref: List[float] = []
        for on in (False, True):  # warm-up (and the fold cache)
            _set_channels_last(model, on)
            with fusion.folding(on):
                model([image])
        for _ in range(rounds):
            ref.append(reference_conv_ms(repeats=1, warmup=0))
            for on in (False, True):
                _set_channels_last(model, on)
                with fusion.folding(on):
                    times[on].append(_ms(lambda: model([image])))
    _set_channels_last(model, True)
    ref_ms = statistics.median(ref)
    ref_rate = REFERENCE_CONV_GFLOP / ref_ms * 1000
    print(f"{name}: {gflop:.1f} GFLOP per forward; reference conv {ref_ms:.0f} ms ({ref_rate:.1f} GFLOP/s)")
    for on in (False, True):
        ms = statistics.median(times[on])
        rate = gflop / ms * 1000
        print(f"  fast paths {'on ' if on else 'off'}: {ms:8.0f} ms = {ms / ref_ms:6.2f} reference convs, "
              f"{rate:6.1f} GFLOP/s = {rate / ref_rate:5.2f} of the reference conv's rate   "
              f"(all: {[round(t) for t in times[on]]})")
    print(f"  on/off: {statistics.median(times[True]) / statistics.median(times[False]):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builders", nargs="+", default=["fasterrcnn_resnet50_fpn", "ssd300_vgg16"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.builders:
        bench(name, args.rounds)


if __name__ == "__main__":
    main()
