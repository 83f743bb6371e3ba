"""Compile mode: a failing compile becomes a `failed: reason` row, never a crash (no real compile here)."""
import torch

from torchdet.bench import compile as bench_compile


def _raise(*args, **kwargs):
    raise RuntimeError("inductor exploded")


def test_a_failing_compile_is_a_row(monkeypatch):
    monkeypatch.setattr(bench_compile, "cxx_compiler", lambda: "/usr/bin/g++")
    monkeypatch.setattr(torch, "compile", _raise)
    lines = []
    (r,) = bench_compile.run_compile(["ssdlite320_mobilenet_v3_large"], repeats=1, height=64, width=64,
                                     echo=lines.append)
    assert r.eager_ms > 0 and r.compiled_ms is None
    assert r.error == "failed: RuntimeError: inductor exploded"
    assert "failed: RuntimeError: inductor exploded" in "\n".join(lines)


def test_no_cxx_compiler_is_reported(monkeypatch):
    monkeypatch.setattr(bench_compile, "cxx_compiler", lambda: None)
    (r,) = bench_compile.run_compile(["ssdlite320_mobilenet_v3_large"], repeats=1, height=64, width=64,
                                     echo=lambda _: None)
    assert r.error.startswith("failed: no C++ compiler")
    assert "no C++ compiler" in bench_compile.format_compile([r])


def test_detections_agree_ignores_order_but_not_values():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 20.0, 30.0]])
    a = {"boxes": boxes, "labels": torch.tensor([1, 2]), "scores": torch.tensor([0.9, 0.8])}
    swapped = {k: v.flip(0) for k, v in a.items()}
    assert bench_compile.detections_agree(a, swapped)
    moved = dict(a, boxes=boxes + torch.tensor([[0.0, 0.0, 0.0, 0.1], [0.0, 0.0, 0.0, 0.0]]))
    assert not bench_compile.detections_agree(a, moved)
    relabelled = dict(a, labels=torch.tensor([1, 3]))
    assert not bench_compile.detections_agree(a, relabelled)
    fewer = {k: v[:1] for k, v in a.items()}
    assert not bench_compile.detections_agree(a, fewer)
