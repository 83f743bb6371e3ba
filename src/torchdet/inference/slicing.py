"""Sliced inference: small objects in large images, found tile by tile.

A detector resizes every input to its `min_size` (800 px for the R-CNNs), so a 12 px object in a
4000 px photo shrinks below what the network can see. `SlicedPredictor` runs the detector on
overlapping tiles instead (each tile is enlarged, not shrunk), optionally on the whole image
too, maps the detections back to the full image and merges the duplicates that overlapping
tiles produce:

    sliced = SlicedPredictor(model, tile_size=(512, 512), overlap=0.2)
    [detections] = sliced([image])                 # the model contract: list in, list of dicts out

Merging is class-wise NMS (`merge="nms"`) or greedy non-maximum merging (`merge="nmm"`, the
default), which replaces each group of matching boxes by their union with the best score, as
SAHI does. Boxes match by IoU or by IoS (intersection over the smaller box, the default), which
also joins the partial box of an object cut by a tile border with its full box; NMS by IoU
leaves such partial boxes as duplicates.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from torchdet.errors import InvalidInputError
from torchdet.ops.boxes import box_area, box_iou
from torchdet.ops.nms import batched_nms

MERGE_METHODS = ("nms", "nmm")
MATCH_METRICS = ("iou", "ios")


def tile_grid(height: int, width: int, tile_size: Union[int, Tuple[int, int]], overlap: float = 0.2) -> Tensor:
    """Tiles covering a `height` x `width` image, as int64 xyxy pixel boxes ``[T, 4]``, row by row.

    Neighbouring tiles overlap by `overlap` x the tile side (rounded); the last tile of each
    row and column is flush with the border, and a side shorter than the tile gets one tile
    of that side's length.
    """
    tile_h, tile_w = (tile_size, tile_size) if isinstance(tile_size, int) else tile_size
    if tile_h < 1 or tile_w < 1:
        raise InvalidInputError(f"tile size must be positive; got {tile_h} x {tile_w}")
    if not 0.0 <= overlap < 1.0:
        raise InvalidInputError(f"overlap is a fraction of the tile in [0, 1); got {overlap}")
    ys = _starts(height, tile_h, overlap)
    xs = _starts(width, tile_w, overlap)
    h, w = min(tile_h, height), min(tile_w, width)
    return torch.tensor([[x, y, x + w, y + h] for y in ys for x in xs], dtype=torch.int64).reshape(-1, 4)


def _starts(length: int, tile: int, overlap: float) -> List[int]:
    if length <= tile:
        return [0]
    stride = max(1, tile - int(round(tile * overlap)))
    return list(range(0, length - tile, stride)) + [length - tile]


def box_ios(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise intersection over the smaller box's area, ``[N, 4]`` x ``[M, 4]`` xyxy -> ``[N, M]``."""
    top_left = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])  # [N, M, 2]
    bottom_right = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])  # [N, M, 2]
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)  # [N, M]
    smaller = torch.min(box_area(boxes1)[:, None], box_area(boxes2)[None, :])  # [N, M]
    return inter / smaller.clamp(min=torch.finfo(inter.dtype).eps)


def greedy_clusters(boxes: Tensor, scores: Tensor, labels: Tensor, *, match_metric: str = "iou",
                    match_threshold: float = 0.5) -> List[Tensor]:
    """Group detections greedily: the best remaining box takes every remaining box of its class
    that matches it (`match_metric` > `match_threshold`).

    Args:
        boxes: ``[N, 4]`` xyxy; scores: ``[N]``; labels: ``[N]`` int.

    Returns:
        one int64 index tensor per group, the group's best box first (ties: the larger box);
        groups by decreasing score.
        The first boxes are what NMS keeps; non-maximum merging replaces each group by its union.
    """
    _check_match(match_metric, match_threshold)
    if len(boxes) == 0:
        return []
    # Best score first; among equal scores the larger box, so a whole view of an object leads the
    # group rather than a piece cut by a tile border.
    by_area = torch.sort(box_area(boxes.float()), descending=True, stable=True).indices
    order = by_area[torch.sort(scores[by_area], descending=True, stable=True).indices]
    ranked = boxes[order].float()
    pairwise = box_iou(ranked, ranked) if match_metric == "iou" else box_ios(ranked, ranked)  # [N, N]
    same_class = labels[order][:, None] == labels[order][None, :]
    matches = ((pairwise > match_threshold) & same_class).cpu()
    order = order.cpu()
    taken = torch.zeros(len(order), dtype=torch.bool)
    groups: List[Tensor] = []
    for i in range(len(order)):
        if taken[i]:
            continue
        taken[i] = True
        members = (matches[i] & ~taken).nonzero().flatten()
        taken[members] = True
        groups.append(order[torch.cat([torch.tensor([i]), members])])
    return groups


def _check_match(match_metric: str, match_threshold: float) -> None:
    if match_metric not in MATCH_METRICS:
        raise InvalidInputError(f"match_metric={match_metric!r}; choose one of {MATCH_METRICS}")
    if not 0.0 <= match_threshold <= 1.0:
        raise InvalidInputError(f"match_threshold must be in [0, 1]; got {match_threshold}")


class SlicedPredictor(nn.Module):
    """A detector run tile by tile; called like the detector (eval mode, no targets).

    Args:
        model: a torchdet detector: ``model(list of [3, H, W]) -> list of dicts`` with ``boxes``
            ``[N, 4]``, ``scores`` ``[N]``, ``labels`` ``[N]``, optional ``masks`` ``[N, 1, H, W]``
            and ``keypoints`` ``[N, K, 3]``, in the input's pixel coordinates.
        tile_size: tile (height, width) in pixels, or one int for square tiles.
        overlap: fraction of the tile shared with the next tile.
        full_image: also run the model on the whole image (catches objects larger than a tile).
        batch_size: tiles per model call.
        merge: ``"nms"`` keeps each group's best detection; ``"nmm"`` replaces the group by the
            union box with the best score (masks: their pixel-wise maximum).
        match_metric, match_threshold: when two detections of a class are duplicates (``"iou"``
            or ``"ios"``, intersection over the smaller box).
        max_detections: keep at most this many per image after merging (None: all).

    forward(images) -> one dict per image, as the model returns for a whole image: ``boxes``
    ``[K, 4]`` xyxy in the image's pixels, ``scores`` ``[K]`` (decreasing), ``labels`` ``[K]``, and
    ``masks`` ``[K, 1, H, W]`` / ``keypoints`` ``[K, P, 3]`` when the model gives them; any other
    per-detection entry (``keypoints_scores``) is that of each group's best detection.
    """

    def __init__(self, model: nn.Module, tile_size: Union[int, Tuple[int, int]] = 512, overlap: float = 0.2, *,
                 full_image: bool = False, batch_size: int = 4, merge: str = "nmm", match_metric: str = "ios",
                 match_threshold: float = 0.5, max_detections: Optional[int] = None) -> None:
        super().__init__()
        if merge not in MERGE_METHODS:
            raise InvalidInputError(f"merge={merge!r}; choose one of {MERGE_METHODS}")
        _check_match(match_metric, match_threshold)
        tile_grid(1, 1, tile_size, overlap)  # validates the tile size and overlap
        if batch_size < 1:
            raise InvalidInputError(f"batch_size must be at least 1; got {batch_size}")
        self.model = model
        self.tile_size = (tile_size, tile_size) if isinstance(tile_size, int) else tuple(tile_size)
        self.overlap = overlap
        self.full_image = full_image
        self.batch_size = batch_size
        self.merge = merge
        self.match_metric = match_metric
        self.match_threshold = match_threshold
        self.max_detections = max_detections

    @torch.no_grad()
    def forward(self, images: List[Tensor], targets: Optional[List[Dict[str, Tensor]]] = None
                ) -> List[Dict[str, Tensor]]:
        if self.training or targets is not None:
            raise InvalidInputError("SlicedPredictor predicts only; call .eval() and pass no targets "
                                    "(train the wrapped model itself)")
        return [self._predict_one(image) for image in images]

    def _predict_one(self, image: Tensor) -> Dict[str, Tensor]:
        height, width = int(image.shape[-2]), int(image.shape[-1])
        windows = tile_grid(height, width, self.tile_size, self.overlap).tolist()
        crops = [image[:, y1:y2, x1:x2] for x1, y1, x2, y2 in windows]
        outputs: List[Dict[str, Tensor]] = []
        for start in range(0, len(crops), self.batch_size):
            outputs += self.model(crops[start:start + self.batch_size])
        if self.full_image and len(windows) > 1:
            windows.append([0, 0, width, height])
            outputs += self.model([image])
        return self._merge(outputs, windows, height, width)

    def _merge(self, outputs: Sequence[Dict[str, Tensor]], windows: Sequence[Sequence[int]], height: int,
               width: int) -> Dict[str, Tensor]:
        """The tiles' detections in image coordinates, duplicates merged."""
        boxes, keypoints, origin = [], [], []
        for part, (out, (x1, y1, _, _)) in enumerate(zip(outputs, windows)):
            shift = out["boxes"].new_tensor([x1, y1, x1, y1])
            boxes.append(out["boxes"] + shift)
            if "keypoints" in out:
                points = out["keypoints"].clone()
                points[..., 0] += x1
                points[..., 1] += y1
                keypoints.append(points)
            n = len(out["boxes"])
            origin.append(torch.stack([torch.full((n,), part), torch.arange(n)], dim=1))  # [n, 2] (tile, row)
        all_boxes = torch.cat(boxes)
        scores = torch.cat([out["scores"] for out in outputs])
        labels = torch.cat([out["labels"] for out in outputs])
        origin_rows = torch.cat(origin)
        groups = self._groups(all_boxes, scores, labels)
        if self.max_detections is not None:
            groups = groups[: self.max_detections]
        keepers = torch.stack([g[0] for g in groups]) if groups else torch.zeros(0, dtype=torch.int64)
        keepers = keepers.to(all_boxes.device)
        result = {"boxes": all_boxes[keepers], "scores": scores[keepers], "labels": labels[keepers]}
        if self.merge == "nmm" and groups:
            result["boxes"] = torch.stack([_union_box(all_boxes[g.to(all_boxes.device)]) for g in groups])
        if keypoints:
            result["keypoints"] = torch.cat(keypoints)[keepers]
        for key in outputs[0].keys() - {"boxes", "scores", "labels", "masks", "keypoints"}:
            result[key] = torch.cat([out[key] for out in outputs])[keepers]  # e.g. keypoints_scores [N, K]
        if "masks" in outputs[0]:
            members = [g[:1] if self.merge == "nms" else g for g in groups]
            result["masks"] = _paste_masks(outputs, windows, origin_rows, members, height, width)
        return result

    def _groups(self, boxes: Tensor, scores: Tensor, labels: Tensor) -> List[Tensor]:
        if self.merge == "nms" and self.match_metric == "iou":
            keep = batched_nms(boxes.float(), scores.float(), labels, self.match_threshold)
            return [k.reshape(1) for k in keep.cpu()]
        return greedy_clusters(boxes, scores, labels, match_metric=self.match_metric,
                               match_threshold=self.match_threshold)


def _union_box(boxes: Tensor) -> Tensor:
    """``[G, 4]`` -> the ``[4]`` box enclosing them all."""
    return torch.cat([boxes[:, :2].min(dim=0).values, boxes[:, 2:].max(dim=0).values])


def _paste_masks(outputs: Sequence[Dict[str, Tensor]], windows: Sequence[Sequence[int]], origin: Tensor,
                 groups: Sequence[Tensor], height: int, width: int) -> Tensor:
    """``[K, 1, height, width]`` masks: each group's tile masks placed at their tiles, maximum over the group."""
    reference = outputs[0]["masks"]
    masks = reference.new_zeros((len(groups), 1, height, width))
    for k, group in enumerate(groups):
        for index in group.tolist():
            part, row = origin[index].tolist()
            x1, y1, x2, y2 = windows[part]
            region = masks[k, :, y1:y2, x1:x2]
            tile_mask = outputs[part]["masks"][row]
            region.copy_(region | tile_mask if region.dtype == torch.bool else torch.maximum(region, tile_mask))
    return masks


@torch.no_grad()
def sliced_predict(model: nn.Module, image: Tensor, tile_size: Union[int, Tuple[int, int]] = 512,
                   overlap: float = 0.2, **options: object) -> Dict[str, Tensor]:
    """Detections in one image ``[3, H, W]`` found tile by tile; `options` as `SlicedPredictor`'s."""
    return SlicedPredictor(model, tile_size, overlap, **options).eval()([image])[0]  # type: ignore[arg-type]
