"""Detections as COCO results: one dict per detection in the dataset's own ids.

The format `torchdet evaluate` scores and `torchdet predict` writes: boxes as [x, y, w, h],
masks as RLE, keypoints as flat [x, y, v, ...].
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence

import numpy as np
import torch

IOU_TYPES = ("bbox", "segm", "keypoints")


def xyxy_to_xywh(boxes: torch.Tensor) -> torch.Tensor:
    """[N, 4] corners (x1, y1, x2, y2) -> [N, 4] COCO boxes (x, y, w, h)."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([x1, y1, x2 - x1, y2 - y1], dim=-1)


def encode_masks(masks: torch.Tensor, threshold: float = 0.5) -> List[Dict[str, Any]]:
    """[N, 1, H, W] (or [N, H, W]) mask probabilities -> N COCO RLEs (counts as str)."""
    from pycocotools import mask as mask_util

    if masks.dim() == 4:
        masks = masks[:, 0]
    binary = (masks > threshold).cpu().numpy().astype(np.uint8)
    rles = []
    for m in binary:
        rle = mask_util.encode(np.asfortranarray(m))
        rle["counts"] = rle["counts"].decode("ascii")
        rles.append(rle)
    return rles


def to_coco_results(image_id: int, output: Mapping[str, torch.Tensor], label_to_category_id: Sequence[int],
                    iou_types: Sequence[str] = IOU_TYPES) -> List[Dict[str, Any]]:
    """One image's model output -> COCO result dicts (one per detection).

    Args:
        image_id: the dataset's id of the image.
        output: the model's dict: boxes [N, 4] xyxy, labels [N], scores [N], optionally
            masks [N, 1, H, W] and keypoints [N, K, 3].
        label_to_category_id: `label_to_category_id[label]` is the dataset's category id
            (index 0, the background, is never looked up).
        iou_types: which of "segmentation" / "keypoints" to include when the output has them.
    """
    boxes = xyxy_to_xywh(output["boxes"].detach().float().cpu()).tolist()
    labels = output["labels"].cpu().tolist()
    scores = output["scores"].detach().float().cpu().tolist()
    results = []
    for box, label, score in zip(boxes, labels, scores):
        if not 0 < label < len(label_to_category_id):
            raise ValueError(f"the model predicted label {label}, beyond the {len(label_to_category_id) - 1} "
                             "categories of the dataset; the checkpoint does not match this dataset")
        results.append({"image_id": int(image_id), "category_id": int(label_to_category_id[label]),
                        "bbox": [round(v, 3) for v in box], "score": round(score, 5)})
    if "segm" in iou_types and "masks" in output and len(results):
        for result, rle in zip(results, encode_masks(output["masks"])):
            result["segmentation"] = rle
    if "keypoints" in iou_types and "keypoints" in output and len(results):
        kps = output["keypoints"].detach().float().cpu()
        for result, kp in zip(results, kps):
            result["keypoints"] = [round(v, 2) for v in kp.reshape(-1).tolist()]
    return results
