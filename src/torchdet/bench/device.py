"""Eval latency, AMP training steps and peak memory on an accelerator, beside torchvision.

Every timed region is bracketed by ``synchronize(device)`` (CUDA kernels run asynchronously:
without it the clock stops when the last launch returns, not when it finishes). Peak memory is
``torch.cuda.max_memory_allocated`` after a reset, per measurement. ``set_tf32(False)`` turns
off TF32 for matmuls and cuDNN convs, which parity runs need (TF32 rounds inputs to 10 bits).
torchvision's builders, when importable, get the same weights (same state_dict keys, filled by
``fill_state_dict``) and the same inputs.

Runs on the CPU too (no synchronisation, no memory figure), which is how CI dry-runs it.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from torchdet.amp import amp_dtype, inference_autocast
from torchdet.bench.fill import fill_state_dict
from torchdet.bench.latency import benchmark_image, load_builder

__all__ = ["set_tf32", "synchronize", "torchvision_builder", "eval_latency", "eval_latencies", "amp_train_step", "DeviceRow",
           "run_device_benchmark", "format_device_rows"]


def set_tf32(enabled: bool) -> None:
    """TF32 for CUDA matmuls and cuDNN convolutions on or off (parity needs it off)."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing elsewhere."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mb(device: torch.device) -> Optional[float]:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def torchvision_builder(name: str) -> Optional[Callable[..., torch.nn.Module]]:
    """torchvision's builder of that name, or None when torchvision does not import."""
    try:
        import torchvision.models.detection as detection
    except Exception:  # not installed, or built for another torch
        return None
    return getattr(detection, name, None)


def _model(builder: Callable[..., torch.nn.Module], device: torch.device, train: bool,
           **kwargs: Any) -> torch.nn.Module:
    torch.manual_seed(0)
    model = builder(weights=None, weights_backbone=None, **kwargs)
    fill_state_dict(model, 3)
    return model.to(device).train(train)


def _timed(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int) -> float:
    """Median milliseconds of ``fn()``, synchronised before and after each call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def eval_latency(builder: Callable[..., torch.nn.Module], device: torch.device, batch: int = 1,
                 amp: bool = False, repeats: int = 5, warmup: int = 2, height: int = 480, width: int = 640,
                 **kwargs: Any) -> Dict[str, Optional[float]]:
    """``{"ms", "peak_mb"}`` of an eval forward of ``batch`` images (AMP: autocast in the device's dtype)."""
    return eval_latencies(builder, device, [(batch, amp)], repeats, warmup, height, width, **kwargs)[0]


def eval_latencies(builder: Callable[..., torch.nn.Module], device: torch.device,
                   configs: Sequence[Tuple[int, bool]], repeats: int = 5, warmup: int = 2, height: int = 480,
                   width: int = 640, **kwargs: Any) -> List[Dict[str, Optional[float]]]:
    """:func:`eval_latency` for each ``(batch, amp)`` of ``configs``, building the model once."""
    model = _model(builder, device, False, **kwargs)
    images = [benchmark_image(height, width, seed=i).to(device) for i in range(max(b for b, _ in configs))]
    results = []
    for batch, amp in configs:
        def forward(batch: int = batch, amp: bool = amp) -> None:
            with torch.no_grad(), inference_autocast(device, amp):
                model(images[:batch])

        _reset_peak(device)
        ms = _timed(forward, device, repeats, warmup)
        results.append({"ms": ms, "peak_mb": _peak_mb(device), "batch": batch, "amp": amp})
    return results


def amp_train_step(builder: Callable[..., torch.nn.Module], device: torch.device, amp: bool = True,
                   num_images: int = 2, repeats: int = 5, warmup: int = 2, height: int = 480, width: int = 640,
                   **kwargs: Any) -> Dict[str, Any]:
    """``{"ms", "peak_mb", "losses"}`` of SGD steps: forward under autocast, scaled backward (CUDA), step."""
    from torchdet.bench.train_step import random_targets, target_kinds

    model = _model(builder, device, True, **kwargs)
    masks, keypoints = target_kinds(model)
    images = [benchmark_image(height, width, seed=i).to(device) for i in range(num_images)]
    targets = [{k: v.to(device) for k, v in t.items()}
               for t in random_targets(num_images, height, width, masks=masks, num_keypoints=keypoints)]
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    scaler = _grad_scaler(device, amp)
    losses: Dict[str, float] = {}

    def step() -> None:
        with inference_autocast(device, amp):
            loss_dict = model(images, targets)
        loss = sum(loss_dict.values())
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        losses.update({k: float(v.detach()) for k, v in loss_dict.items()})

    _reset_peak(device)
    ms = _timed(step, device, repeats, warmup)
    return {"ms": ms, "peak_mb": _peak_mb(device), "losses": dict(losses)}


def _grad_scaler(device: torch.device, amp: bool) -> Any:
    """A GradScaler for float16 autocast (CUDA); bfloat16 needs none."""
    if not amp or amp_dtype(device) != torch.float16:
        return None
    amp_module = getattr(torch, "amp", None)
    if amp_module is not None and hasattr(amp_module, "GradScaler"):
        return amp_module.GradScaler(device.type)
    return torch.cuda.amp.GradScaler()  # pragma: no cover - older torch


@dataclass
class DeviceRow:
    builder: str
    section: str  # "eval fp32", "eval amp", "train amp"
    batch: int
    ms: float
    peak_mb: Optional[float]
    torchvision_ms: Optional[float] = None
    torchvision_peak_mb: Optional[float] = None

    @property
    def ratio(self) -> Optional[float]:
        return self.ms / self.torchvision_ms if self.torchvision_ms else None


def _measure(name: str, fn: Callable[..., Any], device: torch.device, compare: bool,
             **kwargs: Any) -> Dict[str, Any]:
    ours = fn(load_builder(name), device, **kwargs)
    tv_builder = torchvision_builder(name) if compare else None
    theirs = fn(tv_builder, device, **kwargs) if tv_builder is not None else {}
    return {"ours": ours, "theirs": theirs}


def run_device_benchmark(builders: Sequence[str], device: torch.device, batches: Sequence[int] = (1, 8),
                         repeats: int = 5, tf32: Optional[bool] = False, train: bool = True, compare: bool = True,
                         height: int = 480, width: int = 640,
                         echo: Callable[[str], None] = print) -> List[DeviceRow]:
    """Eval at each batch size in fp32 and AMP, and an AMP training step, per builder (and torchvision's).

    ``tf32``: True/False set TF32 for matmuls and cuDNN; None leaves torch's defaults.
    """
    if device.type == "cuda" and tf32 is not None:
        set_tf32(tf32)
    state = "torch's defaults" if tf32 is None else ("on" if tf32 else "off")
    echo(f"torch {torch.__version__} on {device}; TF32 {state}; torchvision "
         f"{'compared' if compare and torchvision_builder('fasterrcnn_resnet50_fpn') else 'not importable'}")
    rows: List[DeviceRow] = []
    configs = [(batch, amp) for batch in batches for amp in (False, True)]
    for name in builders:
        r = _measure(name, eval_latencies, device, compare, configs=configs, repeats=repeats, height=height,
                     width=width)
        for i, (batch, amp) in enumerate(configs):
            theirs = r["theirs"][i] if r["theirs"] else {}
            rows.append(DeviceRow(name, f"eval {'amp' if amp else 'fp32'}", batch, r["ours"][i]["ms"],
                                  r["ours"][i]["peak_mb"], theirs.get("ms"), theirs.get("peak_mb")))
            echo(format_device_rows(rows[-1:], head=len(rows) == 1))
        if train:
            r = _measure(name, amp_train_step, device, compare, repeats=repeats, height=height, width=width)
            rows.append(DeviceRow(name, "train amp", 2, r["ours"]["ms"], r["ours"]["peak_mb"],
                                  r["theirs"].get("ms"), r["theirs"].get("peak_mb")))
            echo(format_device_rows(rows[-1:], head=False))
    return rows


def _opt(value: Optional[float], spec: str, width: int) -> str:
    return f"{value:{width}{spec}}" if value is not None else f"{'-':>{width}s}"


def format_device_rows(rows: List[DeviceRow], head: bool = True) -> str:
    lines = []
    if head:
        title = (f"{'builder':40s} {'section':10s} {'batch':>5s} {'ms':>8s} {'tv_ms':>8s} {'ratio':>6s} "
                 f"{'peak_MB':>8s} {'tv_MB':>8s}")
        lines += [title, "-" * len(title)]
    for r in rows:
        lines.append(f"{r.builder:40s} {r.section:10s} {r.batch:5d} {r.ms:8.1f} {_opt(r.torchvision_ms, '.1f', 8)} "
                     f"{_opt(r.ratio, '.2f', 6)} {_opt(r.peak_mb, '.0f', 8)} {_opt(r.torchvision_peak_mb, '.0f', 8)}")
    return "\n".join(lines)
