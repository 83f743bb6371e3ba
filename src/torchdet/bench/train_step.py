"""One training step (forward, backward, SGD step) per builder, beside torchvision's figure.

torchvision's figure comes from `torchdet.bench.baseline` (live, or the ``train`` table of a
baseline file). Setup, as both are measured: ``weights=None, weights_backbone=None``
(so BatchNorm trains and every backbone layer is trainable), 2 images of 480x640 with 3 boxes
each, median of 5 steps after one warm-up step, the step also expressed in reference convs.
The boxes and labels come from a seeded generator (valid boxes, ``x1 < x2`` and ``y1 < y2``);
the model's initial weights from ``torch.manual_seed(0)``. The optimizer is SGD (lr 0.01,
momentum 0.9, weight decay 1e-4); its step is a small part of the total.

Besides the step, each of its parts (forward with the losses, backward, optimizer step incl.
zero_grad) is timed in the same runs; the medians of the parts need not add up to the median
of the steps.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch

from torchdet.bench.baseline import Baseline, resolve_baseline, torchvision_builder
from torchdet.bench.flops import count_call_flops
from torchdet.bench.latency import _opt, benchmark_image, flop_rate, load_builder, reference_conv_ms
from torchdet.models.registry import get_model_record

TRAIN_BUILDERS = ["fasterrcnn_resnet50_fpn", "retinanet_resnet50_fpn", "ssdlite320_mobilenet_v3_large"]
NUM_BOXES = 3


@dataclass
class TrainStepResult:
    builder: str
    images: int
    ms: float
    forward_ms: float
    backward_ms: float
    optimizer_ms: float
    conv_ref_ms: float
    in_conv_refs: float
    torchvision_in_conv_refs: Optional[float]
    ratio: Optional[float]
    losses: Dict[str, float]
    gflop: Optional[float] = None
    gflops: Optional[float] = None
    conv_ref_gflops: Optional[float] = None
    fraction: Optional[float] = None


def random_targets(num_images: int, height: int, width: int, num_boxes: int = NUM_BOXES,
                   num_classes: int = 91, masks: bool = False, num_keypoints: int = 0,
                   seed: int = 0) -> List[Dict[str, torch.Tensor]]:
    """Seeded targets: ``num_boxes`` boxes per image, each 10-40% of the image side, inside it.

    ``masks`` adds a ``[N, H, W]`` uint8 mask filling each box; ``num_keypoints`` adds visible
    ``[N, K, 3]`` keypoints inside each box.
    """
    g = torch.Generator().manual_seed(seed)
    size = torch.tensor([width, height, width, height], dtype=torch.float32)
    targets = []
    for _ in range(num_images):
        wh = 0.1 + 0.3 * torch.rand(num_boxes, 2, generator=g)  # fraction of the side
        x1y1 = (1.0 - wh) * torch.rand(num_boxes, 2, generator=g)
        boxes = torch.cat([x1y1, x1y1 + wh], dim=1) * size
        target = {"boxes": boxes,
                  "labels": torch.randint(1, num_classes, (num_boxes,), generator=g, dtype=torch.int64)}
        if masks:
            m = torch.zeros(num_boxes, height, width, dtype=torch.uint8)
            for i, (x1, y1, x2, y2) in enumerate(boxes.round().long().tolist()):
                m[i, y1:y2, x1:x2] = 1
            target["masks"] = m
        if num_keypoints:
            t = torch.rand(num_boxes, num_keypoints, 2, generator=g)
            xy = boxes[:, None, :2] + t * (boxes[:, None, 2:] - boxes[:, None, :2])
            target["keypoints"] = torch.cat([xy, torch.ones(num_boxes, num_keypoints, 1)], dim=2)
        targets.append(target)
    return targets


def _target_kinds(name: str, model: torch.nn.Module) -> Tuple[bool, int]:
    """(needs masks, number of keypoints) for the training targets of builder ``name``'s ``model``."""
    outputs = get_model_record(name).outputs
    keypoints = int(model.roi_heads.keypoint_predictor.out_channels) if "keypoints" in outputs else 0
    return "masks" in outputs, keypoints


@dataclass
class TrainSetup:
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    images: List[torch.Tensor]
    targets: List[Dict[str, torch.Tensor]]


def train_setup(name: str, num_images: int = 2, height: int = 480, width: int = 640, seed: int = 0,
                builder: Optional[Callable[..., torch.nn.Module]] = None) -> TrainSetup:
    """The model of ``builder`` (default: ours called ``name``) in train mode (random init, seeded),
    its SGD optimizer, images and targets."""
    torch.manual_seed(seed)
    model = (builder or load_builder(name))(weights=None, weights_backbone=None)
    model.train()
    masks, keypoints = _target_kinds(name, model)
    images = [benchmark_image(height, width, seed=i) for i in range(num_images)]
    targets = random_targets(num_images, height, width, masks=masks, num_keypoints=keypoints, seed=seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4)
    return TrainSetup(model, optimizer, images, targets)


def train_step(setup: TrainSetup, clock: Callable[[], float] = time.perf_counter) -> Tuple[List[float], Dict[str, float]]:
    """One step; returns the times [forward, backward, optimizer] in seconds and the losses."""
    t0 = clock()
    losses = setup.model(setup.images, setup.targets)
    loss = sum(losses.values())
    t1 = clock()
    loss.backward()
    t2 = clock()
    setup.optimizer.step()
    setup.optimizer.zero_grad(set_to_none=True)
    t3 = clock()
    return [t1 - t0, t2 - t1, t3 - t2], {k: float(v.detach()) for k, v in losses.items()}


def _step_ms(setup: TrainSetup, repeats: int, warmup: int, name: str) -> Tuple[float, List[float], Dict[str, float]]:
    """(median step ms, median [forward, backward, optimizer] ms, the last losses)."""
    for _ in range(warmup):
        train_step(setup)
    parts, totals, losses = [], [], {}
    for _ in range(repeats):
        times, losses = train_step(setup)
        parts.append(times)
        totals.append(sum(times))
    if not all(math.isfinite(v) for v in losses.values()):
        raise FloatingPointError(f"{name}: a loss is not finite after {warmup + repeats} steps: {losses}")
    return 1000 * statistics.median(totals), [1000 * statistics.median(p[i] for p in parts) for i in range(3)], losses


def torchvision_train_in_conv_refs(name: str, num_images: int, height: int, width: int, repeats: int, warmup: int,
                                   baseline: Optional[Baseline], conv_ms: float) -> Optional[float]:
    """torchvision's training step for ``name`` in reference convs: timed now on the same inputs (live),
    or the file's."""
    if baseline is None:
        return None
    if not baseline.live:
        return baseline.train_refs.get(name)
    builder = torchvision_builder(name)
    if builder is None:
        return None
    setup = train_setup(name, num_images, height, width, builder=builder)
    return _step_ms(setup, repeats, warmup, f"torchvision's {name}")[0] / conv_ms


def measure_train_step(name: str, num_images: int = 2, height: int = 480, width: int = 640,
                       repeats: int = 5, warmup: int = 1, flops: bool = True,
                       baseline: Optional[Baseline] = None) -> TrainStepResult:
    setup = train_setup(name, num_images, height, width)
    ms, (fwd, bwd, opt), losses = _step_ms(setup, repeats, warmup, name)
    conv_ms = reference_conv_ms()
    in_refs = ms / conv_ms
    tv = torchvision_train_in_conv_refs(name, num_images, height, width, repeats, warmup, baseline, conv_ms)
    result = TrainStepResult(builder=name, images=num_images, ms=ms, forward_ms=fwd, backward_ms=bwd,
                             optimizer_ms=opt, conv_ref_ms=conv_ms, in_conv_refs=in_refs,
                             torchvision_in_conv_refs=tv, ratio=(in_refs / tv) if tv else None, losses=losses)
    if flops:
        result.gflop = count_call_flops(lambda: train_step(setup)) / 1e9
        result.gflops, result.conv_ref_gflops, result.fraction = flop_rate(result.gflop, ms, conv_ms)
    return result


def format_train(results: List[TrainStepResult]) -> str:
    head = (f"{'builder':32s} {'step_ms':>9s} {'fwd_ms':>8s} {'bwd_ms':>8s} {'opt_ms':>7s} {'conv_ref':>8s} "
            f"{'in_refs':>8s} {'tv_refs':>8s} {'ratio':>6s} {'GFLOP':>7s} {'GFLOP/s':>8s} {'frac%':>6s}")
    lines = [head, "-" * len(head)]
    for r in results:
        frac = 100 * r.fraction if r.fraction is not None else None
        lines.append(
            f"{r.builder:32s} {r.ms:9.1f} {r.forward_ms:8.1f} {r.backward_ms:8.1f} {r.optimizer_ms:7.1f} "
            f"{r.conv_ref_ms:8.1f} {r.in_conv_refs:8.2f} {_opt(r.torchvision_in_conv_refs, 8, '.2f')} "
            f"{_opt(r.ratio, 6, '.2f')} {_opt(r.gflop, 7, '.1f')} {_opt(r.gflops, 8, '.1f')} {_opt(frac, 6, '.1f')}")
    return "\n".join(lines)


def run_train(builders: Optional[List[str]] = None, num_images: int = 2, repeats: int = 5,
              height: int = 480, width: int = 640, flops: bool = True,
              echo: Callable[[str], None] = print, baseline: Optional[Baseline] = None) -> List[TrainStepResult]:
    baseline = baseline or resolve_baseline()
    echo(f"\nTraining step: forward + backward + SGD step, {num_images} images of {height}x{width} with "
         f"{NUM_BOXES} boxes each, weights=None, median of {repeats}; ratio = ours / torchvision in reference "
         f"convs (target <= 1.0); GFLOP counts forward + backward")
    results = []
    for name in builders or TRAIN_BUILDERS:
        results.append(measure_train_step(name, num_images, height, width, repeats=repeats, flops=flops,
                                          baseline=baseline))
        table = format_train(results[-1:]).splitlines()
        echo("\n".join(table if len(results) == 1 else table[-1:]))
    return results
