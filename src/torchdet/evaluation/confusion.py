"""The confusion matrix of a detector on a dataset, with a background row and column.

Detections at or above ``score_threshold`` are matched to the ground truth of their image in
decreasing score order: each takes the unmatched ground-truth box (of any class) it overlaps
most, if that IoU is at least ``iou_threshold``. Then

- a matched pair counts in ``matrix[true class, predicted class]`` (the diagonal when right);
- an unmatched detection counts in ``matrix[background, predicted class]`` (a false positive);
- an unmatched ground-truth box counts in ``matrix[true class, background]`` (a miss).

Crowd regions are neither matched nor missed; a detection that overlaps one is ignored. Rows
are the true classes and columns the predicted ones, in the dataset's category order, with the
background last.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Sequence

import torch

__all__ = ["ConfusionMatrix", "confusion_matrix", "plot_confusion_matrix"]

BACKGROUND = "background"


@dataclass
class ConfusionMatrix:
    """``matrix`` int64 ``[C + 1, C + 1]``: rows true class, columns predicted, background last."""

    names: List[str]
    matrix: torch.Tensor
    iou_threshold: float
    score_threshold: float

    def to_dict(self) -> Dict[str, Any]:
        return {"names": self.names + [BACKGROUND], "rows": "true class", "columns": "predicted class",
                "iou_threshold": self.iou_threshold, "score_threshold": self.score_threshold,
                "matrix": self.matrix.tolist()}


def _xyxy(xywh: Sequence[Sequence[float]]) -> torch.Tensor:
    t = torch.tensor(xywh, dtype=torch.float64).reshape(-1, 4)
    return torch.cat([t[:, :2], t[:, :2] + t[:, 2:]], dim=1)


def confusion_matrix(coco_gt: Any, results: Sequence[Dict[str, Any]], *, iou_threshold: float = 0.5,
                     score_threshold: float = 0.5) -> ConfusionMatrix:
    """Count matches between COCO ``results`` (``bbox`` [x, y, w, h], ``score``, ``category_id``,
    ``image_id``) and the ground truth of ``coco_gt`` (a pycocotools COCO), as the module says."""
    from torchdet.ops.boxes import box_iou

    if not 0.0 < iou_threshold <= 1.0 or not 0.0 <= score_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1] and score_threshold in [0, 1]; "
                         f"got {iou_threshold} and {score_threshold}")
    cat_ids = sorted(coco_gt.cats)
    index = {cat_id: k for k, cat_id in enumerate(cat_ids)}
    bg = len(cat_ids)
    matrix = torch.zeros((bg + 1, bg + 1), dtype=torch.int64)
    by_image: Dict[int, List[Dict[str, Any]]] = {}
    for r in results:
        if r["score"] >= score_threshold and r["category_id"] in index:
            by_image.setdefault(r["image_id"], []).append(r)
    for image_id in coco_gt.getImgIds():
        anns = coco_gt.imgToAnns.get(image_id, [])
        gts = [a for a in anns if not a.get("iscrowd", 0)]
        crowd = [a for a in anns if a.get("iscrowd", 0)]
        dets = sorted(by_image.get(image_id, []), key=lambda r: -r["score"])
        gt_boxes, gt_classes = _xyxy([a["bbox"] for a in gts]), [index[a["category_id"]] for a in gts]
        iou = box_iou(_xyxy([d["bbox"] for d in dets]), gt_boxes)  # [D, G]
        crowd_iou = box_iou(_xyxy([d["bbox"] for d in dets]), _xyxy([a["bbox"] for a in crowd]))
        taken = torch.zeros(len(gts), dtype=torch.bool)
        for d, det in enumerate(dets):
            predicted = index[det["category_id"]]
            overlap = iou[d].masked_fill(taken, -1.0)
            if len(gts) and float(overlap.max()) >= iou_threshold:
                g = int(overlap.argmax())
                taken[g] = True
                matrix[gt_classes[g], predicted] += 1
            elif not (len(crowd) and float(crowd_iou[d].max()) >= iou_threshold):
                matrix[bg, predicted] += 1
        for g in (~taken).nonzero().flatten().tolist():
            matrix[gt_classes[g], bg] += 1
    names = [str(coco_gt.cats[c].get("name", c)) for c in cat_ids]
    return ConfusionMatrix(names, matrix, iou_threshold, score_threshold)


def plot_confusion_matrix(cm: ConfusionMatrix, path: Path) -> Path:
    """The matrix as a PNG heat map, each row normalised by its true count, with the counts written in."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from torchdet.atomic import atomic_path

    labels = cm.names + [BACKGROUND]
    counts = cm.matrix.double()
    share = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    size = max(4.0, 0.6 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.85), dpi=100)
    image = ax.imshow(share.numpy(), cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            if cm.matrix[i, j]:
                ax.text(j, i, str(int(cm.matrix[i, j])), ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Confusion matrix (IoU >= {cm.iou_threshold:g}, score >= {cm.score_threshold:g})")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true row")
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)
