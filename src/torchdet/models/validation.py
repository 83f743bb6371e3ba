"""Boundary checks shared by every detector: images in, targets in, clear errors out.

Each detector's ``forward`` calls :func:`validate_inputs` once, before any work, so a bad input
fails with a ``ValueError`` that names the image (and box) at fault and says what to do,
instead of an index error deep inside a head.

Accepted images: a list of float ``[C, H, W]`` tensors (sizes may differ) or one batched
``[B, C, H, W]`` tensor. Accepted targets: a list with one dict per image holding
``boxes`` (float ``[N, 4]``, ``x1 < x2`` and ``y1 < y2``) and ``labels`` (int64 ``[N]``), plus
``masks`` (``[N, H, W]``) for Mask R-CNN and ``keypoints`` (``[N, K, 3]``) for Keypoint R-CNN.
An image with no objects has ``boxes`` of shape ``[0, 4]``.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Union

import torch
from torch import Tensor

Images = Union[Tensor, Sequence[Tensor]]
Targets = Sequence[Dict[str, Tensor]]


def as_image_list(images: Images) -> List[Tensor]:
    """Images as a list of ``[C, H, W]`` tensors; a batched ``[B, C, H, W]`` tensor is split."""
    if isinstance(images, Tensor):
        if images.dim() == 4:
            return list(images.unbind(0))
        raise ValueError(
            f"images must be a list of [C, H, W] tensors or one [B, C, H, W] tensor; got a single "
            f"tensor of shape {list(images.shape)}. Wrap one image in a list: model([image])."
        )
    if not isinstance(images, (list, tuple)):
        raise ValueError(
            f"images must be a list of [C, H, W] tensors or one [B, C, H, W] tensor; got {type(images).__name__}."
        )
    return list(images)


def check_images(images: Sequence[Tensor]) -> None:
    """Every image is a floating-point ``[3, H, W]`` tensor with ``H, W > 0``."""
    if len(images) == 0:
        raise ValueError("images is empty; pass at least one [3, H, W] image.")
    for i, image in enumerate(images):
        if not isinstance(image, Tensor):
            raise ValueError(f"image {i} is a {type(image).__name__}, not a tensor; pass [3, H, W] float tensors.")
        shape = list(image.shape)
        if image.dim() != 3:
            raise ValueError(
                f"image {i} has shape {shape}; each image must be [C, H, W] with 3 dimensions "
                "(pass a list of [3, H, W] tensors or one [B, 3, H, W] tensor)."
            )
        if shape[0] != 3:
            raise ValueError(
                f"image {i} has {shape[0]} channels (shape {shape}); convert to RGB with 3 channels "
                "(e.g. image[:3] for RGBA, image.expand(3, -1, -1) for grayscale)."
            )
        if shape[1] == 0 or shape[2] == 0:
            raise ValueError(f"image {i} is empty (shape {shape}); every image needs H > 0 and W > 0.")
        if not image.is_floating_point():
            raise ValueError(
                f"image {i} has dtype {image.dtype}; images must be floating point in [0, 1] "
                "(e.g. image.float() / 255)."
            )


def _check_boxes(i: int, boxes: object) -> int:
    """Check one image's boxes; return their count."""
    if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[-1] != 4:
        got = list(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
        raise ValueError(f"target boxes of image {i} must be a tensor of shape [N, 4]; got {got}.")
    if not boxes.is_floating_point():
        raise ValueError(
            f"target boxes of image {i} have dtype {boxes.dtype}; boxes must be floating point "
            "(e.g. boxes.float())."
        )
    finite = torch.isfinite(boxes).all(dim=1)  # [N]
    if not bool(finite.all()):
        j = int((~finite).nonzero()[0, 0])
        raise ValueError(f"target boxes must be finite; image {i}, box {j} is {boxes[j].tolist()}.")
    degenerate = (boxes[:, 2:] <= boxes[:, :2]).any(dim=1)  # [N]
    if bool(degenerate.any()):
        j = int(degenerate.nonzero()[0, 0])
        raise ValueError(
            f"target boxes must satisfy x1 < x2 and y1 < y2 (format [x1, y1, x2, y2]); "
            f"image {i}, box {j} is {boxes[j].tolist()}."
        )
    return int(boxes.shape[0])


def _check_labels(i: int, labels: object, num_boxes: int) -> None:
    if not isinstance(labels, Tensor) or labels.dim() != 1:
        got = list(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"target labels of image {i} must be a 1-D int64 tensor; got {got}.")
    if labels.dtype != torch.int64:
        raise ValueError(
            f"target labels of image {i} have dtype {labels.dtype}; labels must be int64 (labels.long())."
        )
    if labels.shape[0] != num_boxes:
        raise ValueError(
            f"image {i} has {labels.shape[0]} labels for {num_boxes} boxes; give one label per box."
        )


def _check_masks(i: int, masks: object, num_boxes: int, image: Tensor) -> None:
    height, width = int(image.shape[-2]), int(image.shape[-1])
    if not isinstance(masks, Tensor) or masks.dim() != 3:
        got = list(masks.shape) if isinstance(masks, Tensor) else type(masks).__name__
        raise ValueError(f"target masks of image {i} must be a tensor of shape [N, H, W]; got {got}.")
    if masks.shape[0] != num_boxes:
        raise ValueError(f"image {i} has {masks.shape[0]} masks for {num_boxes} boxes; give one mask per box.")
    if (int(masks.shape[1]), int(masks.shape[2])) != (height, width):
        raise ValueError(
            f"target masks of image {i} have size {list(masks.shape[1:])} but the image is "
            f"{[height, width]}; masks must be [N, H, W] at the image's resolution."
        )


def _check_keypoints(i: int, keypoints: object, num_boxes: int) -> None:
    if not isinstance(keypoints, Tensor) or keypoints.dim() != 3 or keypoints.shape[-1] != 3:
        got = list(keypoints.shape) if isinstance(keypoints, Tensor) else type(keypoints).__name__
        raise ValueError(
            f"target keypoints of image {i} must be a tensor of shape [N, K, 3] (x, y, visibility); got {got}."
        )
    if keypoints.shape[0] != num_boxes:
        raise ValueError(
            f"image {i} has keypoints for {keypoints.shape[0]} instances and {num_boxes} boxes; "
            "give one [K, 3] set per box."
        )
    if not keypoints.is_floating_point():
        raise ValueError(
            f"target keypoints of image {i} have dtype {keypoints.dtype}; keypoints must be float32 (keypoints.float())."
        )


def check_targets(images: Sequence[Tensor], targets: Optional[Targets], *,
                  require_masks: bool = False, require_keypoints: bool = False) -> None:
    """Targets match the images one to one and hold well-formed boxes, labels, masks and keypoints.

    ``masks`` and ``keypoints`` are checked whenever present, and must be present when required.
    """
    if targets is None:
        raise ValueError("targets are required in training mode; pass one dict per image with 'boxes' and 'labels'.")
    if not isinstance(targets, (list, tuple)):
        raise ValueError(f"targets must be a list of dicts, one per image; got {type(targets).__name__}.")
    if len(targets) != len(images):
        raise ValueError(f"got {len(targets)} targets for {len(images)} images; give one target dict per image.")
    for i, (image, target) in enumerate(zip(images, targets)):
        if not isinstance(target, dict):
            raise ValueError(f"target of image {i} is a {type(target).__name__}; each target must be a dict.")
        required = ["boxes", "labels"] + (["masks"] if require_masks else []) + (["keypoints"] if require_keypoints else [])
        missing = [k for k in required if k not in target]
        if missing:
            raise ValueError(f"target of image {i} lacks {missing}; it has {sorted(target)}.")
        num_boxes = _check_boxes(i, target["boxes"])
        _check_labels(i, target["labels"], num_boxes)
        if "masks" in target and (require_masks or isinstance(target["masks"], Tensor)):
            _check_masks(i, target["masks"], num_boxes, image)
        if "keypoints" in target and (require_keypoints or isinstance(target["keypoints"], Tensor)):
            _check_keypoints(i, target["keypoints"], num_boxes)


def validate_inputs(images: Images, targets: Optional[Targets], *, training: bool,
                    require_masks: bool = False, require_keypoints: bool = False) -> List[Tensor]:
    """Check a detector's inputs once, at the boundary; return the images as a list.

    Targets are required in training; in eval they are optional and checked when given.
    """
    image_list = as_image_list(images)
    check_images(image_list)
    if training or targets is not None:
        check_targets(image_list, targets, require_masks=require_masks and training,
                      require_keypoints=require_keypoints and training)
    return image_list
