"""One command for a GPU machine: environment, op parity, golden parity, latency, AMP training, memory.

    PYTHONPATH=src python -m torchdet.bench.gpu_check --out DIR --budget-s 300
    PYTHONPATH=src python -m torchdet.bench.gpu_check --device cpu --quick --out DIR   # CI's dry run

Runs from a source tree with whatever python, torch and torchvision the machine has: it imports
only the standard library, torch, numpy, PIL and torchdet (torchvision when it imports). It
writes ``DIR/gpu_check.json`` after every step, so a timeout loses nothing. The JSON holds
``{"sections": {name: {"status": "ok" | "failed" | "skipped", "seconds", ..., "results"}}}`` in
this order:

- ``environment``: python, torch, CUDA, cuDNN, the device, torchvision, Triton, numpy;
- ``ops``: ``nms`` / ``batched_nms`` keep sets and ``roi_align`` forward and backward on the
  device against the CPU path and torchvision's ops;
- ``golden``: the twelve golden cases of ``tests/oracle`` (eval detections and training losses,
  the oracle's rules from ``tests/_oracle.py``), on the device with TF32 off;
- ``latency``: eval at batch 1 and 8, fp32 (TF32 off) and AMP, against torchvision;
- ``train``: an AMP training step against torchvision;
- ``memory``: the peak memory of each measurement above, ours and torchvision's.

``--budget-s`` bounds the whole run: a step whose estimate does not fit what is left is
recorded as skipped. The plan (estimates for one H200-class GPU) fits in about 5 minutes.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
import torch.hub  # torch's own optional imports (tqdm) are torch's, not ours

_WITH_TORCH = {name.split(".")[0] for name in sys.modules}

from torchdet.bench import device as dev  # noqa: E402
from torchdet.weights.registry import get_model_builder, registered_models  # noqa: E402

DETECTION_BUILDERS = [r.name for r in registered_models("detection", with_weights=True)]

__all__ = ["GpuCheck", "main"]

TRAIN_BUILDERS = ["fasterrcnn_resnet50_fpn", "retinanet_resnet50_fpn", "ssdlite320_mobilenet_v3_large"]
QUICK_BUILDERS = ["fasterrcnn_mobilenet_v3_large_320_fpn"]
SECTIONS = ("environment", "ops", "golden", "latency", "train", "memory")
# Seconds per step on one GPU, generous (model build + warm-up + timed runs, ours and torchvision's).
ESTIMATE_S = {"ops": 20.0, "golden": 8.0, "latency": 15.0, "train": 12.0}


def _tests_dir() -> Path:
    return Path(__file__).resolve().parents[3] / "tests"


class GpuCheck:
    """The run's state: the JSON document, the clock and the budget."""

    def __init__(self, out: Path, device: torch.device, budget_s: float, quick: bool,
                 builders: Optional[Sequence[str]] = None) -> None:
        self.out, self.device, self.budget_s, self.quick = out, device, budget_s, quick
        self.builders = list(builders) if builders else (QUICK_BUILDERS if quick else DETECTION_BUILDERS)
        self.start = time.perf_counter()
        self.doc: Dict[str, Any] = {"device": str(device), "quick": quick, "budget_s": budget_s, "sections": {}}
        out.mkdir(parents=True, exist_ok=True)

    @property
    def path(self) -> Path:
        return self.out / "gpu_check.json"

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.start)

    def fits(self, estimate_s: float) -> bool:
        return self.quick or estimate_s <= self.left()

    def write(self) -> None:
        self.doc["elapsed_s"] = round(time.perf_counter() - self.start, 2)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.doc, indent=1, default=str))
        os.replace(tmp, self.path)

    def section(self, name: str, fn: Callable[["GpuCheck", Dict[str, Any]], None], estimate_s: float) -> None:
        """Run one section into ``doc["sections"][name]``; skipped when ``estimate_s`` does not fit."""
        record: Dict[str, Any] = {"status": "running", "results": [], "skipped": []}
        self.doc["sections"][name] = record
        if not self.fits(estimate_s):
            record.update(status="skipped", reason=f"needs ~{estimate_s:.0f} s, {self.left():.0f} s left")
            self.write()
            return
        start = time.perf_counter()
        try:
            fn(self, record)
            record["status"] = "failed" if any(r.get("ok") is False for r in record["results"]) else "ok"
        except Exception as exc:  # one broken section must not lose the others
            record.update(status="failed", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
        record["seconds"] = round(time.perf_counter() - start, 2)
        self.write()

    def step(self, record: Dict[str, Any], label: str, estimate_s: float, fn: Callable[[], Dict[str, Any]],
             reserve_s: float = 0.0) -> None:
        """One item of a section: its result dict (``ok`` False on an exception), or a skip when
        ``estimate_s`` plus ``reserve_s`` (kept for the sections after) does not fit."""
        if not self.fits(estimate_s + reserve_s):
            record["skipped"].append(label)
            return
        start = time.perf_counter()
        try:
            result = fn()
        except Exception as exc:
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        result = {"name": label, **result, "seconds": round(time.perf_counter() - start, 2)}
        record["results"].append(result)
        self.write()


# ---------------------------------------------------------------- environment

def environment(check: GpuCheck, record: Dict[str, Any]) -> None:
    env: Dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform(),
                           "torch": torch.__version__, "cuda": torch.version.cuda,
                           "cuda_available": torch.cuda.is_available(), "threads": torch.get_num_threads()}
    if check.device.type == "cuda":
        props = torch.cuda.get_device_properties(check.device)
        env.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1),
                   capability=f"{props.major}.{props.minor}", cudnn=torch.backends.cudnn.version())
    for module in ("torchvision", "triton", "numpy", "PIL"):
        try:
            env[module] = getattr(__import__(module), "__version__", "?")
        except Exception as exc:
            env[module] = f"not importable ({type(exc).__name__}: {str(exc)[:120]})"
    record["results"].append({"name": "environment", "ok": True, **env})


# ---------------------------------------------------------------- ops

def _random_boxes(n: int, size: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * size
    wh = torch.rand(n, 2, generator=g) * size / 4 + 1
    return torch.cat([xy, xy + wh], dim=1)


def _torchvision_ops() -> Any:
    try:
        import torchvision.ops as ops
        return ops
    except Exception:
        return None


def ops_parity(check: GpuCheck, record: Dict[str, Any]) -> None:
    from torchdet.ops import batched_nms, nms, roi_align

    device, tv = check.device, _torchvision_ops()
    sizes = [50, 400] if check.quick else [100, 1000, 5000, 20000]
    for n in sizes:
        for threshold in (0.5, 0.7):
            def nms_case(n: int = n, threshold: float = threshold) -> Dict[str, Any]:
                boxes, scores = _random_boxes(n, 512.0, n), torch.rand(n, generator=torch.Generator().manual_seed(1))
                idxs = torch.randint(0, 10, (n,), generator=torch.Generator().manual_seed(2))
                cpu_keep = nms(boxes, scores, threshold)
                keep = nms(boxes.to(device), scores.to(device), threshold)
                cpu_batched = batched_nms(boxes, scores, idxs, threshold)
                batched = batched_nms(boxes.to(device), scores.to(device), idxs.to(device), threshold)
                result = {"n": n, "iou": threshold, "kept": len(cpu_keep), "device_keep": keep.device.type,
                          "same_as_cpu": torch.equal(keep.cpu(), cpu_keep),
                          "batched_same_as_cpu": torch.equal(batched.cpu(), cpu_batched)}
                ok = result["same_as_cpu"] and result["batched_same_as_cpu"]
                if tv is not None and device.type != "cpu":
                    ref = tv.nms(boxes.to(device), scores.to(device), threshold).cpu()
                    ref_batched = tv.batched_nms(boxes.to(device), scores.to(device), idxs.to(device), threshold).cpu()
                    result["same_as_torchvision"] = torch.equal(keep.cpu(), ref)
                    result["batched_same_as_torchvision"] = torch.equal(batched.cpu(), ref_batched)
                    ok = ok and result["same_as_torchvision"] and result["batched_same_as_torchvision"]
                return {"ok": bool(ok), **result}

            check.step(record, f"nms n={n} iou={threshold}", 2.0, nms_case)
    for sampling_ratio, aligned in ((-1, False), (2, True)):
        def roi_case(sampling_ratio: int = sampling_ratio, aligned: bool = aligned) -> Dict[str, Any]:
            g = torch.Generator().manual_seed(3)
            feats = torch.randn(2, 8 if check.quick else 64, 32, 40, generator=g, dtype=torch.float64)
            boxes = _random_boxes(16 if check.quick else 256, 120.0, 4).double()
            rois = torch.cat([torch.randint(0, 2, (len(boxes), 1), generator=g).double(), boxes], dim=1)
            grad = torch.randn(len(boxes), feats.shape[1], 7, 7, generator=g, dtype=torch.float64)
            outs = {}
            impls = {"cpu": (roi_align, torch.device("cpu")), "device": (roi_align, device)}
            if tv is not None and device.type != "cpu":
                impls["torchvision"] = (tv.roi_align, device)
            for label, (fn, where) in impls.items():
                x = feats.to(where).float().requires_grad_()
                y = fn(x, rois.to(where).float(), (7, 7), 0.25, sampling_ratio, aligned)
                y.backward(grad.to(where).float())
                outs[label] = (y.detach().cpu().double(), x.grad.cpu().double())
            result: Dict[str, Any] = {"sampling_ratio": sampling_ratio, "aligned": aligned}
            ok = True
            for label in outs:
                if label == "cpu":
                    continue
                fwd = float((outs[label][0] - outs["cpu"][0]).abs().max())
                bwd = float((outs[label][1] - outs["cpu"][1]).abs().max())
                result[f"{label}_vs_cpu_forward_max_abs"] = fwd
                result[f"{label}_vs_cpu_backward_max_abs"] = bwd
                ok = ok and fwd <= 1e-4 and bwd <= 1e-4
            return {"ok": ok, **result}

        check.step(record, f"roi_align sampling_ratio={sampling_ratio} aligned={aligned}", 2.0, roi_case)


# ---------------------------------------------------------------- golden

def _oracle() -> Any:
    tests = _tests_dir()
    if not (tests / "_oracle.py").exists():
        raise FileNotFoundError(f"no tests/_oracle.py under {tests.parent}; run from a source checkout")
    if str(tests) not in sys.path:
        sys.path.insert(0, str(tests))
    import _oracle  # noqa: E402  (tests/ is not a package)

    return _oracle


def _to(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to(v, device) for v in value)
    return value


def golden_case(name: str, device: torch.device) -> Dict[str, Any]:
    """One golden case on ``device``: eval detections and training losses by the oracle's rules."""
    oracle = _oracle()
    case = oracle.load_case(name)
    builder = get_model_builder(name)
    result: Dict[str, Any] = {}
    model = oracle.build_filled(builder, case["weights_seed"], **case["kwargs"]).to(device).eval()
    with torch.no_grad():
        detections = _to(model(_to(case["images"], device)), torch.device("cpu"))
    try:
        oracle.assert_detections_match(detections, case["eval_outputs"])
        result["eval"] = "match"
    except AssertionError as exc:
        result["eval"] = f"MISMATCH: {exc}"
    if case["train_kwargs"] != case["kwargs"]:
        model = builder(weights=None, weights_backbone=None, **case["train_kwargs"])
    oracle.fill_state_dict(model, case["weights_seed"])
    model.to(device).train()
    with torch.no_grad():
        losses = model(_to(case["images"], device), _to(case["targets"], device))
    try:
        oracle.assert_losses_match(losses, case["train_losses"])
        result["train"] = "match"
    except AssertionError as exc:
        result["train"] = f"MISMATCH: {exc}"
    return {"ok": result["eval"] == "match" and result["train"] == "match", **result}


def golden(check: GpuCheck, record: Dict[str, Any]) -> None:
    if check.device.type == "cuda":
        dev.set_tf32(False)
    _oracle()  # fail the section early, with its message, outside a source checkout
    for name in check.builders:
        check.step(record, name, ESTIMATE_S["golden"], lambda name=name: golden_case(name, check.device))


# ---------------------------------------------------------------- latency, train, memory

def _both(check: GpuCheck, name: str, fn: Callable[..., Any], **kwargs: Any) -> Dict[str, Any]:
    """``fn`` on our builder and on torchvision's (None when torchvision does not import)."""
    ours = fn(get_model_builder(name), check.device, **kwargs)
    tv_builder = dev.torchvision_builder(name)
    theirs = fn(tv_builder, check.device, **kwargs) if tv_builder is not None else None
    return {"ours": ours, "torchvision": theirs}


def _ratios(ours: Dict[str, Any], theirs: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    result: Dict[str, Any] = {"ours": ours, "torchvision": theirs}
    if theirs:
        result["ratio"] = ours["ms"] / theirs["ms"]
        if ours.get("peak_mb") and theirs.get("peak_mb"):
            result["memory_ratio"] = ours["peak_mb"] / theirs["peak_mb"]
    return result


def _sizes(check: GpuCheck) -> Dict[str, int]:
    if check.quick:
        return {"height": 96, "width": 128, "repeats": 1, "warmup": 0}
    return {"height": 480, "width": 640, "repeats": 5, "warmup": 2}


def latency(check: GpuCheck, record: Dict[str, Any]) -> None:
    """Per builder, one model (ours, torchvision's) timed at each batch size in fp32 and AMP."""
    if check.device.type == "cuda":
        dev.set_tf32(False)
    configs = [(batch, amp) for batch in ((1, 2) if check.quick else (1, 8)) for amp in (False, True)]

    def measure(name: str) -> Dict[str, Any]:
        both = _both(check, name, dev.eval_latencies, configs=configs, **_sizes(check))
        rows = []
        for i, (batch, amp) in enumerate(configs):
            theirs = both["torchvision"][i] if both["torchvision"] else None
            rows.append({"batch": batch, "amp": amp, **_ratios(both["ours"][i], theirs)})
        return {"builder": name, "configs": rows}

    for name in check.builders:
        check.step(record, name, ESTIMATE_S["latency"], lambda name=name: measure(name),
                   reserve_s=ESTIMATE_S["train"] * len(_train_builders(check.builders)))


def _train_builders(builders: List[str]) -> List[str]:
    """The three training benchmarks' builders for a full run, else those chosen (or the first)."""
    if builders == DETECTION_BUILDERS:
        return TRAIN_BUILDERS
    return [b for b in builders if b in TRAIN_BUILDERS] or builders[:1]


def train(check: GpuCheck, record: Dict[str, Any]) -> None:
    for name in _train_builders(check.builders):
        def measure(name: str = name) -> Dict[str, Any]:
            both = _both(check, name, dev.amp_train_step, **_sizes(check))
            return {"builder": name, **_ratios(both["ours"], both["torchvision"])}

        check.step(record, f"{name} amp train step", ESTIMATE_S["train"], measure)


def memory(check: GpuCheck, record: Dict[str, Any]) -> None:
    """Peak memory of every measurement so far (no new runs)."""
    measured = []
    for r in check.doc["sections"].get("latency", {}).get("results", []):
        measured += [(f"{r['name']} batch={c['batch']} {'amp' if c['amp'] else 'fp32'}", c) for c in r.get("configs", [])]
    measured += [(r["name"], r) for r in check.doc["sections"].get("train", {}).get("results", []) if "ours" in r]
    for name, r in measured:
        theirs = r.get("torchvision") or {}
        record["results"].append({"name": name, "ours_peak_mb": r["ours"].get("peak_mb"),
                                  "torchvision_peak_mb": theirs.get("peak_mb"), "memory_ratio": r.get("memory_ratio")})


def _torch_requirements() -> set:
    """Import names of torch's own dependencies (sympy, mpmath, ...): wherever torch runs, they are there."""
    import re
    from importlib import metadata

    names = {"mpmath"}  # sympy's dependency
    try:
        for requirement in metadata.requires("torch") or []:
            names.add(re.split(r"[ ;<>=!\[~]", requirement, maxsplit=1)[0].replace("-", "_").lower())
    except metadata.PackageNotFoundError:
        pass
    return names


def third_party_modules() -> List[str]:
    """Top-level modules imported since torch that are neither the standard library nor allowed here."""
    allowed = {"torch", "numpy", "PIL", "torchdet", "torchvision", "triton", "_oracle", "oracle"}
    allowed |= _WITH_TORCH | _torch_requirements()
    stdlib = getattr(sys, "stdlib_module_names", None)
    found = set()
    for name, module in list(sys.modules.items()):
        top = name.split(".")[0]
        if top in allowed or top.startswith("_") or module is None:
            continue
        if stdlib is not None and top in stdlib:
            continue
        path = getattr(module, "__file__", None) or ""
        if "site-packages" in path or "dist-packages" in path:
            found.add(top)
    return sorted(found)


def run(out: Path, device: torch.device, budget_s: float, quick: bool,
        sections: Sequence[str] = SECTIONS, builders: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    check = GpuCheck(out, device, budget_s, quick, builders)
    plan: Dict[str, Callable[[GpuCheck, Dict[str, Any]], None]] = {
        "environment": environment, "ops": ops_parity, "golden": golden, "latency": latency, "train": train,
        "memory": memory,
    }
    first_cost = {"environment": 0.0, "ops": 5.0, "golden": ESTIMATE_S["golden"], "latency": ESTIMATE_S["latency"],
                  "train": ESTIMATE_S["train"], "memory": 0.0}
    for name in SECTIONS:
        if name in sections:
            check.section(name, plan[name], first_cost[name])
    check.doc["imported_third_party"] = third_party_modules()
    check.write()
    return check.doc


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m torchdet.bench.gpu_check", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for gpu_check.json")
    parser.add_argument("--budget-s", type=float, default=300.0, help="seconds for the whole run (default 300)")
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:1, or cpu for a dry run")
    parser.add_argument("--quick", action="store_true", help="tiny inputs, one builder: a dry run of every section")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--builders", nargs="+", choices=DETECTION_BUILDERS, default=None,
                        help="golden cases and latency of these builders only (default: all twelve; "
                             f"--quick: {QUICK_BUILDERS[0]})")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch.cuda.is_available() is False; use --device cpu --quick for a dry run")
    doc = run(args.out, device, args.budget_s, args.quick, args.sections, args.builders)
    for name, record in doc["sections"].items():
        print(f"{name:12s} {record['status']:8s} {record.get('seconds', 0):7.1f} s  "
              f"{len(record['results'])} results, {len(record['skipped'])} skipped {record.get('error', '')}")
    print(f"wrote {args.out / 'gpu_check.json'} in {doc['elapsed_s']:.0f} s")
    return 0 if all(r["status"] != "failed" for r in doc["sections"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
