"""The one-command GPU check, dry-run on the CPU in a fresh process: every section, in its JSON."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("gpu_check")
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torchdet.bench.gpu_check", "--device", "cpu", "--quick",
                           "--out", str(out), "--builders", "ssdlite320_mobilenet_v3_large"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads((out / "gpu_check.json").read_text())


def test_every_section_runs_and_passes(report: dict) -> None:
    assert list(report["sections"]) == ["environment", "ops", "golden", "latency", "train", "memory"]
    for name, section in report["sections"].items():
        assert section["status"] == "ok", (name, section.get("error"), section["results"])
        assert section["results"], name


def test_sections_hold_their_measurements(report: dict) -> None:
    sections = report["sections"]
    env = sections["environment"]["results"][0]
    assert env["torch"] and "torchvision" in env
    assert all(r["ok"] for r in sections["ops"]["results"])
    assert {r["name"] for r in sections["golden"]["results"]} == {"ssdlite320_mobilenet_v3_large"}
    assert all(r["eval"] == "match" and r["train"] == "match" for r in sections["golden"]["results"])
    latency = sections["latency"]["results"][0]["configs"]
    assert {(r["batch"], r["amp"]) for r in latency} == {(1, False), (1, True), (2, False), (2, True)}
    assert all(r["ours"]["ms"] > 0 for r in latency)
    assert sections["train"]["results"][0]["ours"]["losses"]
    assert len(sections["memory"]["results"]) == len(latency) + 1


def test_imports_nothing_beyond_torch_numpy_pil(report: dict) -> None:
    assert report["imported_third_party"] == []


def test_budget_skips_what_does_not_fit(tmp_path: Path) -> None:
    from torchdet.bench.gpu_check import GpuCheck

    check = GpuCheck(tmp_path, __import__("torch").device("cpu"), budget_s=1.0, quick=False)
    check.section("golden", lambda c, r: r["results"].append({"ok": True}), estimate_s=60.0)
    check.section("environment", lambda c, r: r["results"].append({"ok": True}), estimate_s=0.0)
    saved = json.loads((tmp_path / "gpu_check.json").read_text())["sections"]
    assert saved["golden"]["status"] == "skipped" and "60" in saved["golden"]["reason"]
    assert saved["environment"]["status"] == "ok"
