"""COCO evaluation through pycocotools: bbox, segm and keypoints AP/AR, and a per-class table.

Detections in the COCO results format (`torchdet.inference.coco_results`: the dataset's own
image and category ids, boxes as [x, y, w, h], masks as RLE) are scored by pycocotools'
COCOeval. No metric is computed here by hand beyond reading COCOeval's arrays.
"""
from __future__ import annotations

import contextlib
import copy
import io
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from torchdet.inference.coco_results import IOU_TYPES

# Names of COCOeval.stats, in order.
BOX_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
KEYPOINT_STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")


def _require_pycocotools() -> None:
    try:
        import pycocotools  # noqa: F401
    except ImportError as e:
        raise ImportError("COCO evaluation needs pycocotools: pip install 'pycocotools>=2.0.7' "
                          "(or pip install 'torchdet[coco]')") from e


def sanitize_ground_truth(dataset: Mapping[str, Any]) -> Dict[str, Any]:
    """A copy of a COCO ground-truth dict with what COCOeval needs filled in.

    Adds ``iscrowd`` (0) and ``area`` (box area) where missing, an ``id`` per annotation and
    ``info``/``licenses``, so hand-written annotation files evaluate without KeyErrors.
    """
    gt = {k: copy.deepcopy(v) for k, v in dataset.items() if k != "annotations"}
    annotations = []
    for i, ann in enumerate(dataset.get("annotations", [])):
        ann = dict(ann)
        ann.setdefault("id", i + 1)
        ann.setdefault("iscrowd", 0)
        if "area" not in ann and "bbox" in ann:
            ann["area"] = float(ann["bbox"][2]) * float(ann["bbox"][3])
        annotations.append(ann)
    gt["annotations"] = annotations
    gt.setdefault("info", {})
    gt.setdefault("licenses", [])
    return gt


def make_coco(dataset: Mapping[str, Any]) -> Any:
    """A pycocotools COCO object from an in-memory dict, without its prints."""
    _require_pycocotools()
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = sanitize_ground_truth(dataset)
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def load_results(coco_gt: Any, results: List[Dict[str, Any]], iou_type: str) -> Any:
    """COCO results object for `results` (an empty list is fine, unlike COCO.loadRes)."""
    if results:
        with contextlib.redirect_stdout(io.StringIO()):
            return coco_gt.loadRes(copy.deepcopy(results))
    from pycocotools.coco import COCO

    empty = COCO()
    empty.dataset = {"images": list(coco_gt.dataset["images"]),
                     "categories": copy.deepcopy(coco_gt.dataset.get("categories", [])), "annotations": []}
    with contextlib.redirect_stdout(io.StringIO()):
        empty.createIndex()
    return empty


@dataclass
class CocoMetrics:
    """The result of one evaluation.

    `metrics[iou_type]` maps stat names (AP, AP50, ... AR100) to floats; `per_class[iou_type]`
    lists, per category, {"id", "name", "AP", "AP50", "instances"} (AP is NaN for a category
    without ground truth); `summary[iou_type]` is pycocotools' printed summary; `pr_curves[iou_type]`
    the per-class precision-recall curves (see `torchdet.evaluation.pr_curves`).
    """

    metrics: Dict[str, Dict[str, float]] = field(default_factory=dict)
    per_class: Dict[str, List[Dict[str, Any]]] = field(default_factory=dict)
    summary: Dict[str, str] = field(default_factory=dict)
    pr_curves: Dict[str, Dict[str, Any]] = field(default_factory=dict)


def gt_iou_types(coco_gt: Any) -> List[str]:
    """The iou types the ground truth supports: bbox always, segm/keypoints when annotated."""
    anns = coco_gt.dataset.get("annotations", [])
    types = ["bbox"]
    if anns and all("segmentation" in a and a["segmentation"] for a in anns):
        types.append("segm")
    if anns and any("keypoints" in a for a in anns):
        types.append("keypoints")
    return types


def evaluate_coco(coco_gt: Any, results: List[Dict[str, Any]], iou_types: Sequence[str] = ("bbox",),
                  image_ids: Optional[Sequence[int]] = None) -> CocoMetrics:
    """Score COCO `results` against `coco_gt` with COCOeval for each of `iou_types`.

    Args:
        coco_gt: pycocotools COCO holding the ground truth (see `make_coco`).
        results: COCO result dicts (see `to_coco_results`).
        iou_types: subset of "bbox", "segm", "keypoints".
        image_ids: evaluate these images only (default: every image of `coco_gt`).
    """
    _require_pycocotools()
    from pycocotools.cocoeval import COCOeval

    from torchdet.evaluation.pr_curves import pr_curves

    out = CocoMetrics()
    for iou_type in iou_types:
        if iou_type not in IOU_TYPES:
            raise ValueError(f"unknown iou type {iou_type!r}; choose from {IOU_TYPES}")
        typed = [r for r in results if iou_type == "bbox" or _result_key(iou_type) in r]
        coco_dt = load_results(coco_gt, typed, iou_type)
        evaluator = COCOeval(coco_gt, coco_dt, iouType=iou_type)
        if image_ids is not None:
            evaluator.params.imgIds = sorted(int(i) for i in image_ids)
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            evaluator.evaluate()
            evaluator.accumulate()
        summary = io.StringIO()
        with contextlib.redirect_stdout(summary):
            evaluator.summarize()
        names = KEYPOINT_STAT_NAMES if iou_type == "keypoints" else BOX_STAT_NAMES
        out.metrics[iou_type] = {n: max(float(v), 0.0) if v != -1 else float("nan")
                                 for n, v in zip(names, evaluator.stats)}
        out.per_class[iou_type] = _per_class(evaluator, coco_gt)
        out.summary[iou_type] = summary.getvalue()
        out.pr_curves[iou_type] = pr_curves(evaluator, coco_gt)
    return out


def _result_key(iou_type: str) -> str:
    return {"segm": "segmentation", "keypoints": "keypoints"}.get(iou_type, "bbox")


def _per_class(evaluator: Any, coco_gt: Any) -> List[Dict[str, Any]]:
    """Per-category AP (IoU .50:.95) and AP50 from COCOeval's precision array [T, R, K, A, M]."""
    precision = evaluator.eval["precision"]
    iou_thrs = evaluator.params.iouThrs
    t50 = int(np.argmin(np.abs(iou_thrs - 0.5)))
    rows = []
    for k, cat_id in enumerate(evaluator.params.catIds):
        p = precision[:, :, k, 0, -1]  # all areas, most detections
        valid = p[p > -1]
        valid50 = p[t50][p[t50] > -1]
        rows.append({
            "id": int(cat_id),
            "name": coco_gt.cats[cat_id].get("name", str(cat_id)),
            "AP": float(valid.mean()) if valid.size else float("nan"),
            "AP50": float(valid50.mean()) if valid50.size else float("nan"),
            "instances": len(coco_gt.getAnnIds(catIds=[cat_id], iscrowd=False)),
        })
    return rows


def format_metrics(metrics: CocoMetrics) -> str:
    """The headline metrics and the per-class table, as printed by `torchdet evaluate`."""
    lines = []
    for iou_type, stats in metrics.metrics.items():
        head = "  ".join(f"{n} {v:.3f}" for n, v in stats.items() if n in ("AP", "AP50", "AP75", "APs", "APm",
                                                                          "APl", "AR100", "AR"))
        lines.append(f"[{iou_type}] {head}")
        rows = metrics.per_class.get(iou_type, [])
        if rows:
            width = max(8, *(len(r["name"]) for r in rows))
            lines.append(f"  {'category':<{width}}  {'id':>5}  {'instances':>9}  {'AP':>6}  {'AP50':>6}")
            for r in rows:
                lines.append(f"  {r['name']:<{width}}  {r['id']:>5}  {r['instances']:>9}  "
                             f"{_fmt(r['AP']):>6}  {_fmt(r['AP50']):>6}")
    return "\n".join(lines)


def _fmt(v: float) -> str:
    return "-" if v != v else f"{v:.3f}"
