"""Opt-in `torch.compile` mode: compile time apart from steady-state latency, beside eager.

For each builder, in one process: eager eval latency (median), then ``torch.compile`` (default
inductor, ``mode=None``) of the backbone (``target="backbone"``, the default) or of the whole
model (``target="model"``). The first compiled call's time minus the steady-state latency is
reported as the compile time; the steady state is the median of the later calls. A builder
whose compile or compiled run raises is reported as ``failed: <reason>`` and the next builder
runs. Inductor on CPU needs a C++ compiler; when none is found every row says so.
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass
from typing import Callable, List, Optional

import torch

from torchdet.bench.latency import _median_ms, benchmark_image, build_eval_model, reference_conv_ms
from torchdet.weights.registry import DETECTION_BUILDERS

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


def compile_target(model: torch.nn.Module, target: str) -> torch.nn.Module:
    """Compile ``model.backbone`` in place (returns the model) or the whole model (returns the wrapper)."""
    if target == "backbone":
        model.backbone = torch.compile(model.backbone, mode=None)
        return model
    if target == "model":
        return torch.compile(model, mode=None)
    raise ValueError(f"compile target {target!r}: choose from {', '.join(COMPILE_TARGETS)}")


def measure_compile(name: str, image: torch.Tensor, target: str = "backbone", repeats: int = 5,
                    warmup: int = 1) -> CompileResult:
    model = build_eval_model(name)
    with torch.no_grad():
        eager_ms = _median_ms(lambda: model([image]), repeats, warmup)
        eager_out = model([image])[0]
    result = CompileResult(builder=name, target=target, eager_ms=eager_ms, conv_ref_ms=reference_conv_ms())
    if cxx_compiler() is None:
        result.error = "failed: no C++ compiler (g++/cc) found for inductor on CPU"
        return result
    _reset_dynamo()
    try:
        compiled = compile_target(model, target)
        with torch.no_grad():
            start = time.perf_counter()
            out = compiled([image])[0]
            first_ms = (time.perf_counter() - start) * 1000
            compiled_ms = _median_ms(lambda: compiled([image]), repeats, warmup)
    except Exception as e:  # any failure of compile or of the compiled run is a row, not a crash
        result.error = f"failed: {_short(e)}"
        return result
    finally:
        _reset_dynamo()
    result.compile_s = max(first_ms - compiled_ms, 0.0) / 1000
    result.compiled_ms = compiled_ms
    result.speedup = eager_ms / compiled_ms
    result.compiled_in_conv_refs = compiled_ms / result.conv_ref_ms
    result.same_detections = (len(out["boxes"]) == len(eager_out["boxes"])
                              and torch.allclose(out["boxes"], eager_out["boxes"], atol=1e-2, rtol=1e-3))
    return result


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
    for name in builders or DETECTION_BUILDERS:
        results.append(measure_compile(name, image, target, repeats=repeats))
        table = format_compile(results[-1:]).splitlines()
        echo("\n".join(table if len(results) == 1 else table[-1:]))
    return results
