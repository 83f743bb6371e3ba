"""torch.compile and AOTInductor against eager, per builder: graph breaks, compile time, latency, parity.

    PYTHONPATH=src:tests python scripts/compile_report.py fasterrcnn_mobilenet_v3_large_320_fpn ssdlite320_mobilenet_v3_large
    PYTHONPATH=src:tests python scripts/compile_report.py --aoti ssdlite320_mobilenet_v3_large

Weights are the parity oracle's deterministic fill; the image is the oracle's first. For each
builder: ``torch._dynamo.explain`` (graphs, graph breaks and their first reasons), the first
compiled call (compile time), then the median of ``--repeat`` calls of eager and of the compiled
model, and whether the compiled detections match eager's by the oracle rule. With ``--aoti``,
the same for an AOTInductor package (``torchdet.export.aoti``). Needs the repository's tests/
on the path (the oracle's golden cases).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, List

import torch

from _oracle import assert_detections_match, build_filled, load_case
from torchdet.models.registry import get_model_builder as get_builder


def _median_ms(fn: Callable[[], object], repeat: int) -> float:
    times: List[float] = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def _matches(got, expected) -> str:  # type: ignore[no-untyped-def]
    try:
        assert_detections_match(got, expected)
        return "yes"
    except AssertionError as e:
        return f"NO ({str(e)[:60]})"


def report_compile(name: str, repeat: int) -> str:
    case = load_case(name)
    model = build_filled(get_builder(name), case["weights_seed"], **case["kwargs"]).eval()
    images = [case["images"][0]]
    with torch.no_grad():
        expected = model(images)
        explanation = torch._dynamo.explain(model)(images)
        torch._dynamo.reset()
        compiled = torch.compile(model)
        start = time.perf_counter()
        got = compiled(images)
        compile_s = time.perf_counter() - start
        eager_ms = _median_ms(lambda: model(images), repeat)
        compiled_ms = _median_ms(lambda: compiled(images), repeat)
    reasons = sorted({str(b.reason).splitlines()[0][:70] for b in explanation.break_reasons})
    torch._dynamo.reset()
    return (f"| {name} | {explanation.graph_count} | {explanation.graph_break_count} | {compile_s:.0f} s | "
            f"{eager_ms:.0f} | {compiled_ms:.0f} | {_matches(got, expected)} | {'; '.join(reasons[:2])} |")


def report_aoti(name: str, repeat: int) -> str:
    from torchdet.export.aoti import load_aoti, to_aoti, unpad_detections

    case = load_case(name)
    model = build_filled(get_builder(name), case["weights_seed"], **case["kwargs"]).eval()
    image = case["images"][0]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        path = to_aoti(model, Path(tmp) / "model.pt2", image_size=(224, 256))
        compile_s = time.perf_counter() - start
        runner = load_aoti(path)
        with torch.no_grad():
            expected = model([image])
            got = unpad_detections(runner(image[None]))
            eager_ms = _median_ms(lambda: model([image]), repeat)
            aoti_ms = _median_ms(lambda: runner(image[None]), repeat)
    return f"| {name} | {compile_s:.0f} s | {eager_ms:.0f} | {aoti_ms:.0f} | {_matches(got, expected)} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("builders", nargs="+")
    parser.add_argument("--aoti", action="store_true", help="report AOTInductor packages instead of torch.compile")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if args.aoti:
        print("| builder | export + compile | eager ms | AOTI ms | eager's detections |\n|---|---|---|---|---|")
    else:
        print("| builder | graphs | graph breaks | first call | eager ms | compiled ms | eager's detections | "
              "break reasons |\n|---|---|---|---|---|---|---|---|")
    for name in args.builders:
        print(report_aoti(name, args.repeat) if args.aoti else report_compile(name, args.repeat), flush=True)


if __name__ == "__main__":
    main()
