"""Per-class precision-recall curves, read from pycocotools' own accumulated precision.

COCOeval's ``eval["precision"]`` ``[T, R, K, A, M]`` holds the interpolated precision at each
IoU threshold ``T``, recall point ``R`` (0, 0.01, ..., 1), category ``K``, area range ``A`` and
detection cap ``M``; COCO AP is its mean. The curves here are slices of that array (all areas,
the largest cap) at IoU 0.5 and averaged over 0.5:0.95, so the area under each is exactly the
AP50 / AP that `torchdet evaluate` prints for the class.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import numpy as np

__all__ = ["pr_curves", "plot_pr_curves"]


def pr_curves(evaluator: Any, coco_gt: Any) -> Dict[str, Any]:
    """``{"recall": [R], "classes": [{"id", "name", "precision50": [R], "precision": [R]}]}`` from
    an accumulated COCOeval; points without detections (-1 in COCOeval) become 0, and a class
    without ground truth gets empty lists."""
    precision = evaluator.eval["precision"][:, :, :, 0, -1]  # [T, R, K]
    t50 = int(np.argmin(np.abs(evaluator.params.iouThrs - 0.5)))
    classes: List[Dict[str, Any]] = []
    for k, cat_id in enumerate(evaluator.params.catIds):
        p = precision[:, :, k]
        has_gt = bool((p > -1).any())
        p = np.where(p > -1, p, 0.0)
        classes.append({
            "id": int(cat_id),
            "name": str(coco_gt.cats[cat_id].get("name", cat_id)),
            "precision50": p[t50].round(6).tolist() if has_gt else [],
            "precision": p.mean(axis=0).round(6).tolist() if has_gt else [],
        })
    return {"recall": [round(float(r), 6) for r in evaluator.params.recThrs], "classes": classes}


def plot_pr_curves(curves: Dict[str, Any], path: Path, title: str = "Precision-recall") -> Path:
    """One line per class at IoU 0.5 (solid) and averaged over 0.5:0.95 (dashed), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from torchdet.atomic import atomic_path

    fig, ax = plt.subplots(figsize=(6.5, 4.5), dpi=100)
    recall = curves["recall"]
    colours = plt.get_cmap("tab10")
    for k, c in enumerate(c for c in curves["classes"] if c["precision50"]):
        colour = colours(k % 10)
        ap50 = float(np.mean(c["precision50"]))
        ax.plot(recall, c["precision50"], color=colour, label=f"{c['name']} (AP50 {ap50:.3f})")
        ax.plot(recall, c["precision"], color=colour, linestyle="--", linewidth=0.8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"{title} (solid: IoU 0.5, dashed: 0.5:0.95)")
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)
