"""CLEAR-MOT counts for the tracking tests: misses, false positives, identity switches, MOTA."""
from __future__ import annotations

from typing import Dict, List, Sequence


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def clear_mot(truth: List[Dict[int, Sequence[float]]], predicted: List[Dict[int, Sequence[float]]],
              iou: float = 0.5) -> Dict[str, float]:
    """Per frame {id: xyxy} for the truth and the tracker. A correspondence from the last frame is
    kept while its IoU holds; the rest are matched greedily by IoU. An identity switch is a true
    object matched to another tracker id than at its previous match."""
    last: Dict[int, int] = {}  # truth id -> tracker id at its latest match
    misses = false_positives = switches = total = 0
    for gt, pred in zip(truth, predicted):
        total += len(gt)
        pairs = {g: p for g, p in last.items() if g in gt and p in pred and _iou(gt[g], pred[p]) >= iou}
        free_g = [g for g in gt if g not in pairs]
        free_p = [p for p in pred if p not in pairs.values()]
        scored = sorted(((_iou(gt[g], pred[p]), g, p) for g in free_g for p in free_p), reverse=True)
        for overlap, g, p in scored:
            if overlap < iou:
                break
            if g in pairs or p in pairs.values():
                continue
            pairs[g] = p
            if g in last and last[g] != p:
                switches += 1
        last.update(pairs)
        misses += len(gt) - len(pairs)
        false_positives += len(pred) - len(pairs)
    return {"mota": 1.0 - (misses + false_positives + switches) / max(total, 1), "id_switches": switches,
            "misses": misses, "false_positives": false_positives, "objects": total}
