"""A/B timings of the eager fast paths of the core ops against their plain forms.

    PYTHONPATH=src .venv/bin/python -m torchdet.bench.ops_bench [--threads N] [--repeats R] [--quick]

Each pair runs interleaved in this process (A, B, B, A, ...) and the medians are printed, so a
busy machine slows both alike. The cases:

- ``batched_nms``: the postprocessing inputs of ssdlite320_mobilenet_v3_large and ssd300_vgg16
  (a random 480x640 image, weights from ``fill_state_dict(model, 3)``; captured by running the
  builder, or synthetic 90 classes x 300 boxes with ``--quick``). A: the classes' greedy passes
  one after the other (``_greedy_keep``); B: side by side (``_greedy_keep_classes``). The kept
  indices are checked equal.
- ``sigmoid_focal_loss`` forward + backward on RetinaNet's ``[120000, 91]`` logits, reduction
  "sum". A: the plain formula through autograd; B: the analytic-gradient function.
- ``MultiScaleRoIAlign`` forward + backward on Faster R-CNN box-head shapes (2 images x 512
  RoIs, 256 channels, FPN levels 200x272 ... 25x34, 7x7, sampling_ratio 2). A: per-level
  channels-last copies concatenated, autograd's ``embedding_bag`` backward; B: the one-copy
  ``_pixel_tables`` and ``_WeightedBagSum``'s transposed bag sum.
"""
from __future__ import annotations

import argparse
import importlib
import statistics
import time
from typing import Callable, Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from torchdet.ops.losses import sigmoid_focal_loss

nms_module = importlib.import_module("torchdet.ops._nms_numpy")
roi_align_module = importlib.import_module("torchdet.ops.roi_align")

NMSCall = Tuple[Tensor, Tensor, Tensor, float]


def interleaved_ms(variants: Dict[str, Callable[[], object]], repeats: int) -> Dict[str, float]:
    """Median wall time in ms of each variant, run in alternating order after one warm-up each."""
    for fn in variants.values():
        fn()
    times: Dict[str, List[float]] = {name: [] for name in variants}
    names = list(variants)
    for i in range(repeats):
        for name in names if i % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            variants[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def captured_nms_calls(builder_name: str) -> List[NMSCall]:
    """The final-NMS arguments of one eval forward of an SSD builder on a random image.

    The one-stage models call ``batched_nms_top`` (the head of ``batched_nms``); its boxes,
    scores, classes and threshold are what ``bench_nms`` then runs through ``batched_nms``.
    """
    from torchdet.bench.fill import fill_state_dict
    from torchdet.models import dense_prediction
    from torchdet.models.registry import get_model_builder

    calls: List[NMSCall] = []
    original = dense_prediction.batched_nms_top

    def spy(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float, max_kept: int) -> Tensor:
        calls.append((boxes.clone(), scores.clone(), idxs.clone(), iou_threshold))
        return original(boxes, scores, idxs, iou_threshold, max_kept)

    model = get_model_builder(builder_name)(weights=None, weights_backbone=None).eval()
    fill_state_dict(model, 3)
    image = torch.rand(3, 480, 640, generator=torch.Generator().manual_seed(0))
    dense_prediction.batched_nms_top = spy
    try:
        with torch.no_grad():
            model([image])
    finally:
        dense_prediction.batched_nms_top = original
    if not calls:
        raise RuntimeError(f"{builder_name} made no batched_nms_top call to capture; has its postprocess changed?")
    return calls


def synthetic_nms_call(classes: int = 90, per_class: int = 300, size: float = 320.0) -> NMSCall:
    g = torch.Generator().manual_seed(0)
    n = classes * per_class
    xy = torch.rand(n, 2, generator=g) * size
    wh = torch.rand(n, 2, generator=g) * 150 + 4
    boxes = torch.cat([xy, xy + wh], 1).clamp(max=size)
    return boxes, torch.rand(n, generator=g), torch.arange(1, classes + 1).repeat_interleave(per_class), 0.55


def bench_nms(cases: Dict[str, NMSCall], repeats: int) -> None:
    minimum = nms_module._MIN_GROUPS_SIDE_BY_SIDE

    def run(boxes: Tensor, scores: Tensor, idxs: Tensor, thr: float, side_by_side: bool) -> Tensor:
        nms_module._MIN_GROUPS_SIDE_BY_SIDE = minimum if side_by_side else 1 << 62
        try:
            return nms_module.batched_nms(boxes, scores, idxs, thr)
        finally:
            nms_module._MIN_GROUPS_SIDE_BY_SIDE = minimum

    for name, (boxes, scores, idxs, thr) in cases.items():
        kept = run(boxes, scores, idxs, thr, True)
        assert torch.equal(kept, run(boxes, scores, idxs, thr, False)), "the two passes disagree"
        ms = interleaved_ms(
            {
                "sequential": lambda: run(boxes, scores, idxs, thr, False),
                "side by side": lambda: run(boxes, scores, idxs, thr, True),
            },
            repeats,
        )
        print(f"batched_nms {name}: {boxes.shape[0]} boxes, {int(idxs.unique().numel())} classes, iou>{thr}, "
              f"kept {kept.numel()}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in ms.items()))


def plain_focal_loss(inputs: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    p = torch.sigmoid(inputs)
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * ((1 - p_t) ** gamma)
    return ((alpha * targets + (1 - alpha) * (1 - targets)) * loss).sum()


def bench_focal_loss(anchors: int, repeats: int) -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(anchors, 91, generator=g) * 2 - 4
    targets = torch.zeros_like(logits)
    positives = torch.arange(0, anchors, 60)
    targets[positives, torch.randint(0, 91, positives.shape, generator=g)] = 1.0

    def step(loss_fn: Callable[[Tensor, Tensor], Tensor]) -> None:
        x = logits.clone().requires_grad_()
        loss_fn(x, targets).backward()

    ms = interleaved_ms(
        {
            "autograd formula": lambda: step(plain_focal_loss),
            "analytic gradient": lambda: step(lambda x, t: sigmoid_focal_loss(x, t, reduction="sum")),
        },
        repeats,
    )
    print(f"sigmoid_focal_loss forward+backward [{anchors}, 91]: " + ", ".join(f"{k} {v:.1f} ms" for k, v in ms.items()))


def fpn_boxes(n: int, g: torch.Generator, width: int = 1088, height: int = 800) -> Tensor:
    """Proposal-sized boxes: sides 16-360 px, aspect 1:2 to 2:1."""
    side = 16 * 2 ** (torch.rand(n, generator=g) * 4.5)
    aspect = 2 ** (torch.rand(n, generator=g) * 2 - 1)
    w, h = side * aspect.sqrt(), side / aspect.sqrt()
    cx, cy = torch.rand(n, generator=g) * width, torch.rand(n, generator=g) * height
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1).clamp(min=0)


def bench_roi_align(rois_per_image: int, repeats: int) -> None:
    poolers = importlib.import_module("torchdet.ops.poolers")

    g = torch.Generator().manual_seed(0)
    sizes = [(200, 272), (100, 136), (50, 68), (25, 34)]
    features = {str(i): torch.randn(2, 256, h, w, generator=g) for i, (h, w) in enumerate(sizes)}
    boxes = [fpn_boxes(rois_per_image, g), fpn_boxes(rois_per_image, g)]
    fast, fast_table = roi_align_module._weighted_bag_sum, poolers._pixel_tables

    def concatenated_table(maps: List[Tensor], dtype: torch.dtype) -> Tensor:
        return torch.cat([roi_align_module._pixel_table(m, dtype) for m in maps], dim=0)

    def autograd_bag(entries: Tensor, table: Tensor, offsets: Tensor, weights: Tensor) -> Tensor:
        return F.embedding_bag(entries, table, offsets, mode="sum", per_sample_weights=weights)

    for output, count in ((7, rois_per_image), (14, rois_per_image // 4)):
        pool = poolers.MultiScaleRoIAlign(list(features), output, 2)
        some = [b[:count] for b in boxes]
        grads: Dict[str, List[Tensor]] = {}

        def step(name: str, bag: Callable[..., Tensor], table: Callable[..., Tensor]) -> None:
            roi_align_module._weighted_bag_sum, poolers._pixel_tables = bag, table
            try:
                leaves = {k: v.clone().requires_grad_() for k, v in features.items()}
                pool(leaves, some, [(800, 1088)] * 2).sum().backward()
                grads[name] = [leaves[k].grad for k in sorted(leaves)]
            finally:
                roi_align_module._weighted_bag_sum, poolers._pixel_tables = fast, fast_table

        ms = interleaved_ms(
            {
                "concatenated table + autograd backward": lambda: step("a", autograd_bag, concatenated_table),
                "one-copy table + transposed bag": lambda: step("b", fast, fast_table),
            },
            repeats,
        )
        for a, b in zip(grads["a"], grads["b"]):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
        print(f"MultiScaleRoIAlign forward+backward, 2x{count} RoIs, 256 ch, {output}x{output}: "
              + ", ".join(f"{k} {v:.1f} ms" for k, v in ms.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--quick", action="store_true", help="synthetic NMS inputs, smaller loss and RoI batches")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats} interleaved runs")
    if args.quick:
        cases = {"synthetic SSD-like": synthetic_nms_call()}
    else:
        cases = {name: captured_nms_calls(name)[0] for name in ("ssdlite320_mobilenet_v3_large", "ssd300_vgg16")}
    bench_nms(cases, args.repeats)
    bench_focal_loss(20000 if args.quick else 120000, args.repeats)
    bench_roi_align(128 if args.quick else 512, args.repeats)


if __name__ == "__main__":
    main()
