"""torchdet detections to and from `supervision.Detections`, for supervision's annotators, zones and counters.

    import supervision as sv
    from torchdet.inference.supervision import to_supervision
    detections = to_supervision(model([image])[0], categories=categories)
    frame = sv.BoxAnnotator().annotate(frame, detections)

supervision is an optional dependency (``pip install supervision``); it is imported on first use.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from torchdet.errors import InvalidInputError


def _supervision() -> Any:
    try:
        import supervision
    except ImportError as error:
        raise ImportError("the supervision interop needs the supervision package: pip install supervision") from error
    return supervision


def to_supervision(detections: Dict[str, Tensor], *, categories: Optional[Sequence[str]] = None,
                   mask_thresh: float = 0.5) -> Any:
    """One image's detections as a `supervision.Detections`.

    Args:
        detections: ``boxes`` ``[N, 4]`` xyxy, optional ``scores`` ``[N]``, ``labels`` ``[N]``,
            ``masks`` ``[N, 1, H, W]`` or ``[N, H, W]`` (probabilities, thresholded at `mask_thresh`,
            or bool), ``keypoints`` ``[N, K, 3]`` and ``track_ids`` ``[N]`` (from a tracker).
        categories: class names by label; fills ``data["class_name"]``.

    Returns:
        ``Detections(xyxy, mask, confidence, class_id, tracker_id)``; keypoints go to ``data["keypoints"]``.
    """
    sv = _supervision()
    if "boxes" not in detections:
        raise InvalidInputError(f"detections must hold 'boxes' [N, 4]; got keys {sorted(detections)}")
    boxes = detections["boxes"].detach().cpu().float().numpy().reshape(-1, 4)

    def column(key: str, dtype: Any) -> Optional[np.ndarray]:
        value = detections.get(key)
        if value is None:
            return None
        value = value.detach().cpu().numpy().astype(dtype)
        if len(value) != len(boxes):
            raise InvalidInputError(f"detections hold {len(boxes)} boxes but {len(value)} {key}; they must match")
        return value

    mask = None
    if detections.get("masks") is not None:
        masks = detections["masks"].detach().cpu()
        masks = masks[:, 0] if masks.dim() == 4 else masks
        mask = (masks > mask_thresh if masks.is_floating_point() else masks.bool()).numpy()
    labels = column("labels", np.int64)
    data: Dict[str, np.ndarray] = {}
    if categories is not None and labels is not None:
        data["class_name"] = np.array([categories[i] if 0 <= i < len(categories) else str(i) for i in labels])
    if detections.get("keypoints") is not None:
        data["keypoints"] = column("keypoints", np.float32)
    return sv.Detections(xyxy=boxes, mask=mask, confidence=column("scores", np.float32), class_id=labels,
                         tracker_id=column("track_ids", np.int64), data=data)


def from_supervision(detections: Any) -> Dict[str, Tensor]:
    """A `supervision.Detections` as torchdet's dict: ``boxes`` ``[N, 4]`` float32, ``scores`` ``[N]``
    (1.0 where it has no confidence), ``labels`` ``[N]`` int64 (0 where it has no class ids), and when
    present ``masks`` ``[N, 1, H, W]`` float (0 or 1), ``track_ids`` ``[N]`` and ``keypoints``."""
    sv = _supervision()
    if not isinstance(detections, sv.Detections):
        raise InvalidInputError(f"expected a supervision.Detections; got {type(detections).__name__}")
    n = len(detections)
    out = {"boxes": torch.as_tensor(np.asarray(detections.xyxy, dtype=np.float32)).reshape(n, 4),
           "scores": torch.ones(n) if detections.confidence is None
           else torch.as_tensor(np.asarray(detections.confidence, dtype=np.float32)),
           "labels": torch.zeros(n, dtype=torch.int64) if detections.class_id is None
           else torch.as_tensor(np.asarray(detections.class_id, dtype=np.int64))}
    if detections.mask is not None:
        out["masks"] = torch.as_tensor(np.asarray(detections.mask, dtype=bool)).float()[:, None]
    if detections.tracker_id is not None:
        out["track_ids"] = torch.as_tensor(np.asarray(detections.tracker_id, dtype=np.int64))
    if "keypoints" in detections.data:
        out["keypoints"] = torch.as_tensor(np.asarray(detections.data["keypoints"], dtype=np.float32))
    return out
