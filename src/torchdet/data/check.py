"""Check a detection dataset before training on it: `torchdet data check DATA`.

`check_dataset` walks every image of a torchdet dataset (COCO, VOC or YOLO) and reports:

- images that are missing or cannot be decoded;
- boxes as the annotation file gives them (before the loader clips or drops them) that are
  degenerate (negative or zero width/height), not finite, outside the image, or duplicated
  (same class, IoU >= ``duplicate_iou`` with another box of the image);
- images without objects, the number of boxes per class, and the distribution of box sizes
  (``sqrt(w * h)``), in the model's input pixels when a model is given, against its anchor sizes.

A finding is an *error* when training would fail on it or silently lose it (a missing or
corrupt image, a non-finite or negative-size box) and a *warning* otherwise (the loader clips
or drops the box, or the image simply has nothing in it).
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from torchdet.data.base import DetectionDataset, RawBox
from torchdet.data.image_io import read_image

__all__ = ["Finding", "DatasetReport", "check_dataset", "model_geometry", "plot_box_sizes"]

ERROR, WARNING = "error", "warning"
# Kinds in the order a report lists them.
KINDS = ("missing_image", "unreadable_image", "non_finite_box", "negative_size_box", "zero_size_box",
         "out_of_image_box", "duplicate_box", "image_without_objects")


@dataclass(frozen=True)
class Finding:
    """One problem: its ``kind`` (see ``KINDS``), ``severity``, the image's file name and what is wrong."""

    kind: str
    severity: str
    image: str
    detail: str


@dataclass
class DatasetReport:
    """What `check_dataset` found. ``box_sizes`` are ``sqrt(w * h)`` of the valid boxes, in model
    input pixels when ``anchor_sizes`` is set (else image pixels)."""

    source: str
    num_images: int
    num_boxes: int
    class_counts: Dict[str, int]
    box_sizes: List[float]
    findings: List[Finding] = field(default_factory=list)
    anchor_sizes: Optional[List[float]] = None

    @property
    def errors(self) -> List[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def ok(self) -> bool:
        """True when nothing would break training (warnings allowed)."""
        return not self.errors

    def counts(self) -> Dict[str, int]:
        """Number of findings per kind, in ``KINDS`` order, kinds with none left out."""
        counter = Counter(f.kind for f in self.findings)
        return {kind: counter[kind] for kind in KINDS if counter[kind]}

    def to_dict(self) -> Dict[str, Any]:
        out = asdict(self)
        out["counts"] = self.counts()
        out["ok"] = self.ok
        out["box_size_percentiles"] = _percentiles(self.box_sizes)
        return out

    def format(self, per_kind: int = 5) -> str:
        """A human-readable report: summary, class histogram, box sizes, findings (``per_kind`` each)."""
        lines = [f"{self.source}: {self.num_images} images, {self.num_boxes} boxes, {len(self.class_counts)} classes"]
        width = max((len(name) for name in self.class_counts), default=0)
        top = max(self.class_counts.values(), default=0) or 1
        lines.append("boxes per class:")
        for name, count in self.class_counts.items():
            lines.append(f"  {name:<{width}} {count:>7}  {'#' * round(30 * count / top)}")
        sizes = _percentiles(self.box_sizes)
        if sizes:
            unit = "model-input px" if self.anchor_sizes else "px"
            lines.append("box size sqrt(w*h) in " + unit + ": " + ", ".join(f"p{p} {v:.1f}" for p, v in sizes.items()))
        if self.anchor_sizes:
            lo, hi = min(self.anchor_sizes), max(self.anchor_sizes)
            below = sum(s < lo / 2 for s in self.box_sizes)
            above = sum(s > hi * 2 for s in self.box_sizes)
            lines.append(f"anchor sizes {[round(a, 1) for a in self.anchor_sizes]}: {below} box(es) under half the "
                         f"smallest, {above} over twice the largest")
        for kind, count in self.counts().items():
            shown = [f for f in self.findings if f.kind == kind][:per_kind]
            severity = shown[0].severity
            lines.append(f"{severity.upper()} {kind}: {count}")
            lines.extend(f"  {f.image}: {f.detail}" for f in shown)
            if count > len(shown):
                lines.append(f"  ... and {count - len(shown)} more (see the JSON report)")
        lines.append("OK: nothing here would break training" if self.ok else
                     f"FAILED: {len(self.errors)} error(s) would break training or silently lose annotations")
        return "\n".join(lines)


def _percentiles(values: Sequence[float]) -> Dict[int, float]:
    if not values:
        return {}
    t = torch.tensor(values, dtype=torch.float64)
    return {p: float(torch.quantile(t, p / 100)) for p in (5, 25, 50, 75, 95)}


def model_geometry(model: nn.Module) -> Tuple[Any, List[float]]:
    """``(scale_fn, anchor sizes)`` of a torchdet detector.

    ``scale_fn(height, width) -> (sx, sy)`` is how the model's transform resizes an image;
    the anchor sizes are in the resized image's pixels (for SSD's default boxes, ``scale * size``).
    """
    transform = getattr(model, "transform", None)
    if transform is None:
        raise ValueError(f"{type(model).__name__} has no .transform; pass a torchdet detector")
    fixed = getattr(transform, "fixed_size", None)
    if fixed is not None:
        fixed_w, fixed_h = fixed

        def scale(height: float, width: float) -> Tuple[float, float]:
            return fixed_w / width, fixed_h / height
    else:
        min_size, max_size = float(transform.min_size[-1]), float(transform.max_size)

        def scale(height: float, width: float) -> Tuple[float, float]:
            s = min(min_size / min(height, width), max_size / max(height, width))
            return s, s

    generator = getattr(getattr(model, "rpn", model), "anchor_generator", None)
    if generator is None:
        raise ValueError(f"{type(model).__name__} has no anchor generator to compare box sizes with")
    if hasattr(generator, "sizes"):
        anchors = sorted({float(s) for level in generator.sizes for s in level})
    else:  # SSD default boxes: relative scales of the (square) input
        side = float(fixed[0]) if fixed is not None else float(transform.min_size[-1])
        anchors = [float(s) * side for s in generator.scales[:-1]]
    return scale, anchors


def _box_findings(boxes: List[RawBox], image: str, width: int, height: int,
                  duplicate_iou: float) -> Tuple[List[Finding], List[RawBox]]:
    """Findings about one image's boxes, and the boxes that train as they are or after clipping."""
    findings, valid = [], []
    for b in boxes:
        x1, y1, x2, y2 = b.box
        text = f"{b.where} is [{x1:g}, {y1:g}, {x2:g}, {y2:g}] (xyxy)"
        if not all(math.isfinite(v) for v in b.box):
            findings.append(Finding("non_finite_box", ERROR, image, text))
            continue
        if x2 < x1 or y2 < y1:
            findings.append(Finding("negative_size_box", ERROR, image, text + ": negative width or height"))
            continue
        clipped = (max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height)))
        if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
            reason = "zero width or height" if x2 == x1 or y2 == y1 else f"outside the {width}x{height} image"
            findings.append(Finding("zero_size_box", WARNING, image, f"{text}: {reason}; dropped by the loader"))
            continue
        if x1 < -1 or y1 < -1 or x2 > width + 1 or y2 > height + 1:
            findings.append(Finding("out_of_image_box", WARNING, image,
                                    f"{text} runs outside the {width}x{height} image; clipped by the loader"))
        valid.append(RawBox(clipped, b.label, b.where))
    findings.extend(_duplicates(valid, image, duplicate_iou))
    return findings, valid


def _duplicates(boxes: List[RawBox], image: str, iou: float) -> List[Finding]:
    if len(boxes) < 2:
        return []
    from torchdet.ops.boxes import box_iou

    t = torch.tensor([b.box for b in boxes], dtype=torch.float64)
    labels = torch.tensor([b.label for b in boxes])
    overlap = box_iou(t, t).triu(diagonal=1)
    pairs = ((overlap >= iou) & (labels[:, None] == labels[None, :])).nonzero().tolist()
    return [Finding("duplicate_box", WARNING, image,
                    f"{boxes[j].where} repeats {boxes[i].where} (IoU {float(overlap[i, j]):.2f}, same class)")
            for i, j in pairs]


def check_dataset(
    dataset: DetectionDataset,
    *,
    decode: bool = True,
    model: Optional[nn.Module] = None,
    progress: bool = True,
    duplicate_iou: float = 0.95,
) -> DatasetReport:
    """Check every image and box of ``dataset`` (build it with ``skip_bad_images=True`` so that
    missing and unreadable images are listed instead of raised).

    Args:
        decode: decode every image (finds truncated files whose header reads fine); else headers only.
        model: a torchdet detector: box sizes are measured after its resize and compared with its anchors.
        duplicate_iou: same-class boxes overlapping at least this much count as duplicates.
    """
    from torchdet.progress import bars_enabled, progress as progress_bar

    findings: List[Finding] = []
    for path, reason in dataset.skipped_images:
        kind = "missing_image" if not Path(path).exists() else "unreadable_image"
        findings.append(Finding(kind, ERROR, Path(path).name, reason))
    scale, anchors = model_geometry(model) if model is not None else (None, None)
    names = list(dataset.categories[1:])
    class_counts = dict.fromkeys(names, 0)
    sizes: List[float] = []
    num_boxes = 0
    for idx in progress_bar(range(len(dataset)), desc="checking", enabled=bars_enabled() and progress):
        info = dataset.image_info(idx)
        image = str(info["file_name"])
        if decode:
            try:
                read_image(info["path"])
            except OSError as error:
                findings.append(Finding("unreadable_image", ERROR, image, str(error)))
                continue
        width, height = int(info["width"]), int(info["height"])
        boxes = dataset.raw_boxes(idx)
        num_boxes += len(boxes)
        image_findings, valid = _box_findings(boxes, image, width, height, duplicate_iou)
        findings.extend(image_findings)
        if not valid:
            findings.append(Finding("image_without_objects", WARNING, image, "no box to train on"))
        sx, sy = scale(height, width) if scale is not None else (1.0, 1.0)
        for b in valid:
            class_counts[names[b.label - 1]] += 1
            sizes.append(math.sqrt((b.box[2] - b.box[0]) * sx * (b.box[3] - b.box[1]) * sy))
    findings.sort(key=lambda f: KINDS.index(f.kind))
    return DatasetReport(str(getattr(dataset, "annotation_file", "") or type(dataset).__name__), len(dataset),
                         num_boxes, class_counts, sizes, findings, anchors)


def plot_box_sizes(report: DatasetReport, path: Path) -> Path:
    """Histogram of ``report.box_sizes`` (log scale) with the anchor sizes as vertical lines, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from torchdet.atomic import atomic_path

    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
    if report.box_sizes:
        lo, hi = max(min(report.box_sizes), 1.0), max(report.box_sizes)
        if report.anchor_sizes:
            lo, hi = min(lo, min(report.anchor_sizes) / 2), max(hi, max(report.anchor_sizes) * 2)
        bins = torch.logspace(math.log10(lo), math.log10(hi * 1.01), 40).tolist()
        ax.hist(report.box_sizes, bins=bins, color="#4c72b0", label=f"{len(report.box_sizes)} boxes")
        ax.set_xscale("log")
    for k, size in enumerate(report.anchor_sizes or []):
        ax.axvline(size, color="#dd8452", linestyle="--", label="anchor sizes" if k == 0 else None)
    unit = "model-input pixels" if report.anchor_sizes else "image pixels"
    ax.set_xlabel(f"box size sqrt(w*h), {unit}")
    ax.set_ylabel("boxes")
    ax.set_title(f"Box sizes: {Path(report.source).name}")
    ax.legend(loc="upper right")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
