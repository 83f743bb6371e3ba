"""Opt-in `torch.compile` mode: compile time apart from steady-state latency, beside eager.

For each builder, in one process: ``torch.compile`` (default inductor, ``mode=None``) of the
backbone (``target="backbone"``, the default) or of the whole model (``target="model"``), then
eager and compiled eval runs interleaved (median of each). The first compiled call's time
minus the steady-state latency is reported as the compile time. A builder
whose compile or compiled run raises is reported as ``failed: <reason>`` and the next builder
runs. Inductor on CPU needs a C++ compiler; when none is found every row says so.
"""
from __future__ import annotations

import os
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch

from torchdet.bench.latency import _median_ms, benchmark_image, build_eval_model, reference_conv_ms, zoo_builders

COMPILE_TARGETS = ("backbone", "model")


@dataclass
class CompileResult:
    builder: str
    target: str
    eager_ms: float
    conv_ref_ms: float
    compile_s: Optional[float] = None
    compiled_ms: Optional[float] = None
    speedup: Optional[float] = None  # eager_ms / compiled_ms
    compiled_in_conv_refs: Optional[float] = None
    same_detections: Optional[bool] = None
    error: Optional[str] = None


def cxx_compiler() -> Optional[str]:
    """The C++ compiler inductor would use on CPU ($CXX, else g++, c++, clang++, cc), or None."""
    for candidate in (os.environ.get("CXX"), "g++", "c++", "clang++", "cc"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:160]}"


def _reset_dynamo() -> None:
    """Drop compiled graphs between builders (only if dynamo was ever loaded: importing it takes seconds)."""
    if "torch._dynamo" in sys.modules:
        sys.modules["torch._dynamo"].reset()


def compiled_runner(model: torch.nn.Module, target: str) -> Callable[[bool, List[torch.Tensor]], object]:
    """``run(compiled, images)``: the model with its backbone (or itself) compiled or eager.

    Both versions stay available, so eager and compiled runs can be interleaved.
    """
    if target == "backbone":
        eager_backbone = model.backbone
        compiled_backbone = torch.compile(eager_backbone, mode=None)

        def run(compiled: bool, images: List[torch.Tensor]) -> object:
            model.backbone = compiled_backbone if compiled else eager_backbone
            return model(images)

        return run
    if target == "model":
        compiled_model = torch.compile(model, mode=None)
        return lambda compiled, images: (compiled_model if compiled else model)(images)
    raise ValueError(f"compile target {target!r}: choose from {', '.join(COMPILE_TARGETS)}")


def measure_compile(name: str, image: torch.Tensor, target: str = "backbone", repeats: int = 5,
                    warmup: int = 1) -> CompileResult:
    """Compile, then time eager and compiled eval interleaved (median of each)."""
    model = build_eval_model(name)
    with torch.no_grad():
        eager_out = model([image])[0]
    result = CompileResult(builder=name, target=target, eager_ms=0.0, conv_ref_ms=reference_conv_ms())
    if cxx_compiler() is None:
        with torch.no_grad():
            result.eager_ms = _median_ms(lambda: model([image]), repeats, warmup)
        result.error = "failed: no C++ compiler (g++/cc) found for inductor on CPU"
        return result
    _reset_dynamo()
    try:
        run = compiled_runner(model, target)
        with torch.no_grad():
            start = time.perf_counter()
            out = run(True, [image])[0]
            first_ms = (time.perf_counter() - start) * 1000
            times: Dict[bool, List[float]] = {False: [], True: []}
            for i in range(warmup + repeats):
                for compiled in (False, True):
                    start = time.perf_counter()
                    run(compiled, [image])
                    if i >= warmup:
                        times[compiled].append((time.perf_counter() - start) * 1000)
    except Exception as e:  # any failure of compile or of the compiled run is a row, not a crash
        with torch.no_grad():
            model = build_eval_model(name)
            result.eager_ms = _median_ms(lambda: model([image]), repeats, warmup)
        result.error = f"failed: {_short(e)}"
        return result
    finally:
        _reset_dynamo()
    result.eager_ms = statistics.median(times[False])
    result.compiled_ms = statistics.median(times[True])
    result.compile_s = max(first_ms - result.compiled_ms, 0.0) / 1000
    result.speedup = result.eager_ms / result.compiled_ms
    result.compiled_in_conv_refs = result.compiled_ms / result.conv_ref_ms
    result.same_detections = detections_agree(out, eager_out)
    return result


def detections_agree(a: Dict[str, torch.Tensor], b: Dict[str, torch.Tensor], score_tol: float = 1e-3,
                     box_tol: float = 0.05, min_fraction: float = 0.99) -> bool:
    """The parity oracle's rule for one image's detections: equal counts, and at least
    ``min_fraction`` of ``a``'s boxes have a box in ``b`` with the same label, a score within
    ``score_tol`` and every corner within ``box_tol`` px. Order does not matter: near-equal
    scores may swap places when the arithmetic changes (as a compiled graph's does).
    """
    if a["boxes"].shape != b["boxes"].shape:
        return False
    if a["boxes"].shape[0] == 0:
        return True
    corners = (a["boxes"][:, None, :] - b["boxes"][None, :, :]).abs().amax(dim=-1) <= box_tol  # [Na, Nb]
    labels = a["labels"][:, None] == b["labels"][None, :]
    scores = (a["scores"][:, None] - b["scores"][None, :]).abs() <= score_tol
    return bool((corners & labels & scores).any(dim=1).float().mean() >= min_fraction)


def format_compile(results: List[CompileResult]) -> str:
    head = (f"{'builder':40s} {'target':>8s} {'eager_ms':>9s} {'compile_s':>9s} {'steady_ms':>9s} "
            f"{'speedup':>8s} {'in_refs':>8s} {'same':>5s}")
    lines = [head, "-" * len(head)]
    for r in results:
        row = f"{r.builder:40s} {r.target:>8s} {r.eager_ms:9.1f} "
        if r.error is not None:
            lines.append(row + r.error)
            continue
        lines.append(row + f"{r.compile_s:9.1f} {r.compiled_ms:9.1f} {r.speedup:7.2f}x "
                           f"{r.compiled_in_conv_refs:8.2f} {'yes' if r.same_detections else 'no':>5s}")
    return "\n".join(lines)


def run_compile(builders: Optional[List[str]] = None, target: str = "backbone", repeats: int = 5,
                height: int = 480, width: int = 640,
                echo: Callable[[str], None] = print) -> List[CompileResult]:
    if target not in COMPILE_TARGETS:
        raise ValueError(f"compile target {target!r}: choose from {', '.join(COMPILE_TARGETS)}")
    compiler = cxx_compiler()
    echo(f"\ntorch.compile (inductor, mode=None) of the {target}, one {height}x{width} image, median of {repeats}; "
         f"compile_s = first compiled call - steady_ms; speedup = eager / compiled; "
         f"C++ compiler: {compiler or 'none found'}")
    image = benchmark_image(height, width)
    results = []
    for name in builders or zoo_builders():
        results.append(measure_compile(name, image, target, repeats=repeats))
        table = format_compile(results[-1:]).splitlines()
        echo("\n".join(table if len(results) == 1 else table[-1:]))
    return results
