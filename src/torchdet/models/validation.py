"""Boundary checks shared by every detector: images in, targets in, clear errors out.

Each detector's ``forward`` calls :func:`validate_inputs` once, before any work, so a bad input
fails with a ``ValueError`` that names the image (and box) at fault and says what to do,
instead of an index error deep inside a head. The errors are ``ValueError`` and also what
torchvision raises for the same input (``AssertionError``; ``TypeError`` for a wrong type or
dtype; ``KeyError`` for a missing target key): see :mod:`torchdet.errors`.

Accepted images: a list of float ``[C, H, W]`` tensors (sizes may differ) or one batched
``[B, C, H, W]`` tensor. Accepted targets: a list with one dict per image holding
``boxes`` (float ``[N, 4]``, ``x1 < x2`` and ``y1 < y2``) and ``labels`` (int64 ``[N]``), plus
``masks`` (``[N, H, W]``) for Mask R-CNN and ``keypoints`` (``[N, K, 3]``) for Keypoint R-CNN.
An image with no objects has ``boxes`` of shape ``[0, 4]``.

Scripted models call :func:`validate_image_list` instead: the same checks on what TorchScript
can hold (a ``List[Tensor]`` of images, ``List[Dict[str, Tensor]]`` targets), without the
Python type checks.
"""
from typing import Dict, List, Optional, Sequence, Union

import torch
from torch import Tensor

from torchdet.errors import InvalidInputError, InvalidInputTypeError, MissingInputKeyError

Images = Union[Tensor, Sequence[Tensor]]
Targets = Sequence[Dict[str, Tensor]]


@torch.jit.unused
def as_image_list(images: Images) -> List[Tensor]:
    """Images as a list of ``[C, H, W]`` tensors; a batched ``[B, C, H, W]`` tensor is split."""
    if isinstance(images, Tensor):
        if images.dim() == 4:
            return list(images.unbind(0))
        raise InvalidInputError(
            f"images must be a list of [C, H, W] tensors or one [B, C, H, W] tensor; got a single "
            f"tensor of shape {list(images.shape)}. Wrap one image in a list: model([image])."
        )
    if not isinstance(images, (list, tuple)):
        raise InvalidInputTypeError(
            f"images must be a list of [C, H, W] tensors or one [B, C, H, W] tensor; got {type(images).__name__}."
        )
    return list(images)


def check_image_list(images: List[Tensor]) -> None:
    """Every image is a floating-point ``[3, H, W]`` tensor with ``H, W > 0`` (scriptable)."""
    if len(images) == 0:
        raise InvalidInputError("images is empty; pass at least one [3, H, W] image.")
    for i, image in enumerate(images):
        shape = list(image.shape)
        if image.dim() != 3:
            raise InvalidInputError(
                f"image {i} has shape {shape}; each image must be [C, H, W] with 3 dimensions "
                "(pass a list of [3, H, W] tensors or one [B, 3, H, W] tensor)."
            )
        if shape[0] != 3:
            raise InvalidInputError(
                f"image {i} has {shape[0]} channels (shape {shape}); convert to RGB with 3 channels "
                "(e.g. image[:3] for RGBA, image.expand(3, -1, -1) for grayscale)."
            )
        if shape[1] == 0 or shape[2] == 0:
            raise InvalidInputError(f"image {i} is empty (shape {shape}); every image needs H > 0 and W > 0.")
        if not image.is_floating_point():
            raise InvalidInputTypeError(
                f"image {i} has dtype {image.dtype}; images must be floating point in [0, 1] "
                "(e.g. image.float() / 255)."
            )


@torch.jit.unused
def check_images(images: Sequence[Tensor]) -> None:
    """Every image is a floating-point ``[3, H, W]`` tensor with ``H, W > 0``."""
    for i, image in enumerate(images):
        if not isinstance(image, Tensor):
            raise InvalidInputTypeError(
                f"image {i} is a {type(image).__name__}, not a tensor; pass [3, H, W] float tensors.")
    check_image_list(list(images))


def _box_text(box: Tensor) -> str:
    """``[x1, y1, x2, y2]`` of one ``[4]`` box, for error messages."""
    if torch.jit.is_scripting():
        return str([float(v) for v in box.unbind(0)])
    return str(box.tolist())


def _check_boxes(i: int, boxes: Tensor) -> int:
    """Check one image's boxes; return their count."""
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise InvalidInputError(f"target boxes of image {i} must be a tensor of shape [N, 4]; got {list(boxes.shape)}.")
    if not boxes.is_floating_point():
        raise InvalidInputTypeError(
            f"target boxes of image {i} have dtype {boxes.dtype}; boxes must be floating point "
            "(e.g. boxes.float())."
        )
    finite = torch.isfinite(boxes).all(dim=1)  # [N]
    if bool(~finite.all()):
        j = int((~finite).nonzero()[0, 0])
        raise InvalidInputError(f"target boxes must be finite; image {i}, box {j} is {_box_text(boxes[j])}.")
    degenerate = (boxes[:, 2:] <= boxes[:, :2]).any(dim=1)  # [N]
    if bool(degenerate.any()):
        j = int(degenerate.nonzero()[0, 0])
        raise InvalidInputError(
            f"target boxes must satisfy x1 < x2 and y1 < y2 (format [x1, y1, x2, y2]); "
            f"image {i}, box {j} is {_box_text(boxes[j])}."
        )
    return boxes.shape[0]


def _check_labels(i: int, labels: Tensor, num_boxes: int) -> None:
    if labels.dim() != 1:
        raise InvalidInputError(f"target labels of image {i} must be a 1-D int64 tensor; got {list(labels.shape)}.")
    if labels.dtype != torch.int64:
        raise InvalidInputTypeError(
            f"target labels of image {i} have dtype {labels.dtype}; labels must be int64 (labels.long())."
        )
    if labels.shape[0] != num_boxes:
        raise InvalidInputError(
            f"image {i} has {labels.shape[0]} labels for {num_boxes} boxes; give one label per box."
        )


def _check_masks(i: int, masks: Tensor, num_boxes: int, image: Tensor) -> None:
    height, width = image.shape[-2], image.shape[-1]
    if masks.dim() != 3:
        raise InvalidInputError(
            f"target masks of image {i} must be a tensor of shape [N, H, W]; got {list(masks.shape)}.")
    if masks.shape[0] != num_boxes:
        raise InvalidInputError(f"image {i} has {masks.shape[0]} masks for {num_boxes} boxes; give one mask per box.")
    if masks.shape[1] != height or masks.shape[2] != width:
        raise InvalidInputError(
            f"target masks of image {i} have size {list(masks.shape[1:])} but the image is "
            f"{[height, width]}; masks must be [N, H, W] at the image's resolution."
        )


def _check_keypoints(i: int, keypoints: Tensor, num_boxes: int) -> None:
    if keypoints.dim() != 3 or keypoints.shape[-1] != 3:
        raise InvalidInputError(
            f"target keypoints of image {i} must be a tensor of shape [N, K, 3] (x, y, visibility); "
            f"got {list(keypoints.shape)}."
        )
    # An image without objects may carry any empty keypoints tensor (torchvision's own tests use [17, 0, 3]).
    if keypoints.shape[0] != num_boxes and not (num_boxes == 0 and keypoints.numel() == 0):
        raise InvalidInputError(
            f"image {i} has keypoints for {keypoints.shape[0]} instances and {num_boxes} boxes; "
            "give one [K, 3] set per box."
        )
    if not keypoints.is_floating_point():
        raise InvalidInputTypeError(
            f"target keypoints of image {i} have dtype {keypoints.dtype}; keypoints must be float32 (keypoints.float())."
        )


def check_target_list(images: List[Tensor], targets: List[Dict[str, Tensor]], require_masks: bool = False,
                      require_keypoints: bool = False) -> None:
    """The checks of :func:`check_targets` on typed targets (scriptable)."""
    if len(targets) != len(images):
        raise InvalidInputError(f"got {len(targets)} targets for {len(images)} images; give one target dict per image.")
    for i, target in enumerate(targets):
        required = ["boxes", "labels"]
        if require_masks:
            required.append("masks")
        if require_keypoints:
            required.append("keypoints")
        missing: List[str] = []
        for k in required:
            if k not in target:
                missing.append(k)
        if len(missing) > 0:
            raise MissingInputKeyError(f"target of image {i} lacks {missing}; it has {sorted(target.keys())}.")
        num_boxes = _check_boxes(i, target["boxes"])
        _check_labels(i, target["labels"], num_boxes)
        if "masks" in target:
            _check_masks(i, target["masks"], num_boxes, images[i])
        if "keypoints" in target:
            _check_keypoints(i, target["keypoints"], num_boxes)


@torch.jit.unused
def check_targets(images: Sequence[Tensor], targets: Optional[Targets], *,
                  require_masks: bool = False, require_keypoints: bool = False) -> None:
    """Targets match the images one to one and hold well-formed boxes, labels, masks and keypoints.

    ``masks`` and ``keypoints`` are checked whenever present, and must be present when required.
    """
    if targets is None:
        raise InvalidInputError(
            "targets are required in training mode; pass one dict per image with 'boxes' and 'labels'.")
    if not isinstance(targets, (list, tuple)):
        raise InvalidInputTypeError(f"targets must be a list of dicts, one per image; got {type(targets).__name__}.")
    if len(targets) != len(images):
        raise InvalidInputError(f"got {len(targets)} targets for {len(images)} images; give one target dict per image.")
    typed = []
    for i, target in enumerate(targets):
        if not isinstance(target, dict):
            raise InvalidInputTypeError(
                f"target of image {i} is a {type(target).__name__}; each target must be a dict.")
        kept = dict(target)
        for key, shape in (("boxes", "[N, 4]"), ("labels", "[N] int64"), ("masks", "[N, H, W]"),
                           ("keypoints", "[N, K, 3]")):
            value = target.get(key)
            required = key in ("boxes", "labels") or (key == "masks" and require_masks) or (
                key == "keypoints" and require_keypoints)
            if key in target and not isinstance(value, Tensor):
                if not required:
                    del kept[key]  # an optional entry that is not a tensor (e.g. None) is ignored
                    continue
                raise InvalidInputTypeError(
                    f"target {key} of image {i} must be a tensor of shape {shape}; got {type(value).__name__}."
                )
        typed.append(kept)
    check_target_list(list(images), typed, require_masks, require_keypoints)


def validate_image_list(images: List[Tensor], targets: Optional[List[Dict[str, Tensor]]], training: bool,
                        require_masks: bool = False, require_keypoints: bool = False) -> List[Tensor]:
    """:func:`validate_inputs` for scripted models: a ``List[Tensor]`` of images, typed targets."""
    check_image_list(images)
    if training and targets is None:
        raise InvalidInputError(
            "targets are required in training mode; pass one dict per image with 'boxes' and 'labels'.")
    if targets is not None:
        check_target_list(images, targets, require_masks and training, require_keypoints and training)
    return images


@torch.jit.unused
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
