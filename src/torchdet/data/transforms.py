"""Detection augmentations that move boxes, masks and keypoints together with the image.

Every transform is a callable ``(image, target) -> (image, target)``:

- ``image``: float tensor [C, H, W] in 0..1 (a PIL image or a uint8 tensor is converted first);
- ``target``: the dataset dict (``boxes`` [N, 4] xyxy pixels, ``labels`` [N], optional ``masks``
  [N, H, W], ``keypoints`` [N, K, 3], ``area`` [N], ``iscrowd`` [N], ``difficult`` [N]), or None
  at inference (geometric transforms then only move the image).

Per-instance fields (:data:`INSTANCE_KEYS`) are always indexed together, so dropping a box drops
its label, mask and keypoints. ``area`` keeps the annotation's value, scaled by resizes only (it
matters to COCO evaluation, which reads the original file anyway). All randomness comes from
torch's global generator: ``torch.manual_seed`` makes a pipeline reproducible.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from PIL import Image

from torchdet.data.image_io import pil_to_tensor

Target = Optional[Dict[str, Any]]
Sample = Tuple[torch.Tensor, Target]

#: Target keys holding one row per object; indexed together whenever objects are dropped.
INSTANCE_KEYS: Tuple[str, ...] = ("boxes", "labels", "masks", "keypoints", "area", "iscrowd", "difficult", "scores")

#: Keypoint order after a horizontal flip for the 17 COCO person keypoints (left <-> right).
COCO_PERSON_KEYPOINT_FLIP_INDICES: Tuple[int, ...] = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)

#: The SSD zoom-out canvas colour: the ImageNet mean pixel (123, 117, 104) / 255.
IMAGENET_MEAN_FILL: Tuple[float, float, float] = (123.0 / 255, 117.0 / 255, 104.0 / 255)


class DroppedBoxesWarning(UserWarning):
    """Warned when boxes are dropped for being empty after clipping (filter it to silence)."""


# -- helpers ------------------------------------------------------------------------------------


def to_image_tensor(image: Union[torch.Tensor, Image.Image]) -> torch.Tensor:
    """A PIL image, uint8 tensor [C, H, W] or float tensor [C, H, W] as a float tensor in 0..1."""
    if isinstance(image, Image.Image):
        return pil_to_tensor(image)
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image must be a PIL image or a tensor [C, H, W]; got {type(image).__name__}")
    if image.ndim != 3:
        raise ValueError(f"image tensor must have shape [C, H, W]; got shape {tuple(image.shape)}")
    if image.dtype == torch.uint8:
        return image.float().div_(255.0)
    if not image.is_floating_point():
        raise ValueError(f"image tensor must be uint8 or floating point; got dtype {image.dtype}")
    return image


def select_instances(target: Dict[str, Any], keep: torch.Tensor) -> Dict[str, Any]:
    """A copy of ``target`` whose per-instance fields keep only rows ``keep`` (bool [N] or indices)."""
    out = dict(target)
    for key in INSTANCE_KEYS:
        if key in out and isinstance(out[key], torch.Tensor):
            out[key] = out[key][keep]
    return out


def _check_range(name: str, value: Sequence[float], low: float = -math.inf) -> Tuple[float, float]:
    lo, hi = (float(v) for v in value)
    if not low <= lo <= hi:
        raise ValueError(f"{name}={tuple(value)}; expected (min, max) with {low} <= min <= max")
    return lo, hi


def _uniform(lo: float, hi: float) -> float:
    """One draw from U(lo, hi) with torch's global generator."""
    return lo + (hi - lo) * float(torch.rand(1))


def resize_sample(image: torch.Tensor, target: Target, size: Tuple[int, int]) -> Sample:
    """Resize ``image`` [C, H, W] to ``size`` (h, w) (bilinear, antialiased) and scale the target.

    Boxes and keypoints are scaled per axis, masks resized with nearest-exact, area by sx * sy.
    """
    height, width = image.shape[-2:]
    new_h, new_w = int(size[0]), int(size[1])
    if new_h < 1 or new_w < 1:
        raise ValueError(f"cannot resize a {height}x{width} image to {new_h}x{new_w}")
    if (new_h, new_w) == (height, width):
        return image, target
    image = F.interpolate(image[None], size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True)[0]
    image = image.clamp_(0.0, 1.0)
    if target is None:
        return image, None
    sx, sy = new_w / width, new_h / height
    target = dict(target)
    if "boxes" in target:
        target["boxes"] = target["boxes"] * torch.tensor([sx, sy, sx, sy], dtype=target["boxes"].dtype)
    if "masks" in target:
        masks = target["masks"]
        resized = F.interpolate(masks[:, None].float(), size=(new_h, new_w), mode="nearest-exact")[:, 0]
        target["masks"] = resized.to(masks.dtype)
    if "keypoints" in target:
        keypoints = target["keypoints"].clone()
        keypoints[..., 0] *= sx
        keypoints[..., 1] *= sy
        target["keypoints"] = keypoints
    if "area" in target:
        target["area"] = target["area"] * (sx * sy)
    return image, target


def _shift_target(target: Dict[str, Any], dx: float, dy: float) -> Dict[str, Any]:
    """Translate boxes and keypoints by (dx, dy) pixels (masks are handled by the caller)."""
    target = dict(target)
    if "boxes" in target:
        target["boxes"] = target["boxes"] + torch.tensor([dx, dy, dx, dy], dtype=target["boxes"].dtype)
    if "keypoints" in target:
        keypoints = target["keypoints"].clone()
        keypoints[..., 0] += dx
        keypoints[..., 1] += dy
        target["keypoints"] = keypoints
    return target


# -- transforms ---------------------------------------------------------------------------------


class Compose:
    """Apply ``transforms`` in order to ``(image, target)``."""

    def __init__(self, transforms: Sequence[Any]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: Any, target: Target = None) -> Sample:
        for transform in self.transforms:
            image, target = transform(image, target)
        return image, target

    def __repr__(self) -> str:
        inner = "".join(f"\n    {transform!r}," for transform in self.transforms)
        return f"Compose([{inner}\n])"


class ToTensor:
    """Convert a PIL image (any mode) or a uint8 tensor to a float tensor [C, H, W] in 0..1.

    Float tensors pass through unchanged, so this is harmless after a dataset that already
    returns tensors. The target is not touched.
    """

    def __call__(self, image: Any, target: Target = None) -> Sample:
        return to_image_tensor(image), target

    def __repr__(self) -> str:
        return "ToTensor()"


class RandomHorizontalFlip:
    """Mirror left-right with probability ``p``.

    Boxes become ``[W - x2, y1, W - x1, y2]``, masks are mirrored, keypoints get ``x -> W - x``
    and, with ``keypoint_flip_indices``, are re-ordered so that left and right parts swap names
    (:data:`COCO_PERSON_KEYPOINT_FLIP_INDICES` for COCO persons). Without flip indices keypoints
    keep their order.
    """

    def __init__(self, p: float = 0.5, keypoint_flip_indices: Optional[Sequence[int]] = None) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p={p}; expected a probability in [0, 1]")
        if keypoint_flip_indices is not None and sorted(keypoint_flip_indices) != list(range(len(keypoint_flip_indices))):
            raise ValueError(
                f"keypoint_flip_indices={list(keypoint_flip_indices)} is not a permutation of 0..K-1"
            )
        self.p = p
        self.keypoint_flip_indices = None if keypoint_flip_indices is None else list(keypoint_flip_indices)

    def __call__(self, image: Any, target: Target = None) -> Sample:
        image = to_image_tensor(image)
        if float(torch.rand(1)) >= self.p:
            return image, target
        width = image.shape[-1]
        image = image.flip(-1)
        if target is None:
            return image, None
        target = dict(target)
        if "boxes" in target:
            boxes = target["boxes"]
            target["boxes"] = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)
        if "masks" in target:
            target["masks"] = target["masks"].flip(-1)
        if "keypoints" in target:
            keypoints = target["keypoints"].clone()
            keypoints[..., 0] = width - keypoints[..., 0]
            if self.keypoint_flip_indices is not None:
                if keypoints.shape[1] != len(self.keypoint_flip_indices):
                    raise ValueError(
                        f"keypoints have K={keypoints.shape[1]} points but keypoint_flip_indices has "
                        f"{len(self.keypoint_flip_indices)} entries"
                    )
                keypoints = keypoints[:, self.keypoint_flip_indices]
            target["keypoints"] = keypoints
        return image, target

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p}, keypoint_flip_indices={self.keypoint_flip_indices})"


class RandomResize:
    """Resize so that the short side is one of ``min_size`` (picked uniformly), keeping the aspect.

    With ``max_size`` the long side is capped at it (the short side then ends up smaller): the
    multi-scale training resize of Faster R-CNN.
    """

    def __init__(self, min_size: Union[int, Sequence[int]], max_size: Optional[int] = None) -> None:
        self.min_size = [int(min_size)] if isinstance(min_size, int) else [int(size) for size in min_size]
        if not self.min_size or min(self.min_size) < 1:
            raise ValueError(f"min_size={min_size!r}; expected a positive int or a non-empty list of them")
        if max_size is not None and max_size < 1:
            raise ValueError(f"max_size={max_size}; expected a positive int or None")
        self.max_size = max_size

    def __call__(self, image: Any, target: Target = None) -> Sample:
        image = to_image_tensor(image)
        height, width = image.shape[-2:]
        short = self.min_size[int(torch.randint(len(self.min_size), (1,)))]
        scale = short / min(height, width)
        if self.max_size is not None:
            scale = min(scale, self.max_size / max(height, width))
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        return resize_sample(image, target, size)

    def __repr__(self) -> str:
        return f"RandomResize(min_size={self.min_size}, max_size={self.max_size})"


class ScaleJitter:
    """Large-scale jitter: fit the image into ``target_size`` (h, w), then scale by U(scale_range).

    The result keeps the aspect ratio; its size is ``target_fit * s`` with ``s`` in ``scale_range``
    (pair it with a crop or pad to a fixed size for the LSJ recipe).
    """

    def __init__(self, target_size: Tuple[int, int], scale_range: Tuple[float, float] = (0.1, 2.0)) -> None:
        self.target_size = (int(target_size[0]), int(target_size[1]))
        if min(self.target_size) < 1:
            raise ValueError(f"target_size={target_size!r}; expected (height, width) with positive sides")
        self.scale_range = _check_range("scale_range", scale_range, low=1e-6)

    def __call__(self, image: Any, target: Target = None) -> Sample:
        image = to_image_tensor(image)
        height, width = image.shape[-2:]
        scale = _uniform(*self.scale_range)
        ratio = min(self.target_size[0] / height, self.target_size[1] / width) * scale
        size = (max(1, int(height * ratio)), max(1, int(width * ratio)))
        return resize_sample(image, target, size)

    def __repr__(self) -> str:
        return f"ScaleJitter(target_size={self.target_size}, scale_range={self.scale_range})"


# -- photometric --------------------------------------------------------------------------------


def rgb_to_grayscale(image: torch.Tensor) -> torch.Tensor:
    """Luma of an RGB image [3, H, W] -> [1, H, W] (ITU-R 601 weights)."""
    r, g, b = image.unbind(0)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(0)


def rgb_to_hsv(image: torch.Tensor) -> torch.Tensor:
    """RGB [3, H, W] in 0..1 -> HSV [3, H, W], all channels in 0..1 (hue as a fraction of a turn)."""
    r, g, b = image.unbind(0)
    maxc, _ = image.max(dim=0)
    minc, _ = image.min(dim=0)
    delta = maxc - minc
    saturation = torch.where(maxc > 0, delta / maxc.clamp(min=1e-12), torch.zeros_like(maxc))
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    hue = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = torch.where(delta > 0, (hue / 6.0) % 1.0, torch.zeros_like(hue))
    return torch.stack([hue, saturation, maxc])


def hsv_to_rgb(image: torch.Tensor) -> torch.Tensor:
    """HSV [3, H, W] (channels in 0..1) -> RGB [3, H, W] in 0..1."""
    hue, saturation, value = image.unbind(0)
    sector = torch.floor(hue * 6.0)
    frac = hue * 6.0 - sector
    sector = sector.long() % 6
    p = value * (1.0 - saturation)
    q = value * (1.0 - saturation * frac)
    t = value * (1.0 - saturation * (1.0 - frac))
    r = torch.stack([value, q, p, p, t, value]).gather(0, sector[None])[0]
    g = torch.stack([t, value, value, q, p, p]).gather(0, sector[None])[0]
    b = torch.stack([p, p, t, value, value, q]).gather(0, sector[None])[0]
    return torch.stack([r, g, b])


def adjust_brightness(image: torch.Tensor, factor: float) -> torch.Tensor:
    return (image * factor).clamp(0.0, 1.0)


def adjust_contrast(image: torch.Tensor, factor: float) -> torch.Tensor:
    mean = rgb_to_grayscale(image).mean()
    return (factor * image + (1.0 - factor) * mean).clamp(0.0, 1.0)


def adjust_saturation(image: torch.Tensor, factor: float) -> torch.Tensor:
    return (factor * image + (1.0 - factor) * rgb_to_grayscale(image)).clamp(0.0, 1.0)


def adjust_hue(image: torch.Tensor, shift: float) -> torch.Tensor:
    """Rotate the hue by ``shift`` turns (in [-0.5, 0.5])."""
    hsv = rgb_to_hsv(image)
    hsv[0] = (hsv[0] + shift) % 1.0
    return hsv_to_rgb(hsv).clamp(0.0, 1.0)


class RandomPhotometricDistort:
    """SSD's colour distortion, on tensors: each step applied with probability ``p``.

    Brightness, then contrast either before or after (coin flip) saturation and hue, then a random
    channel permutation. Factors are drawn from the given ranges. Only the image changes.
    """

    def __init__(
        self,
        brightness: Tuple[float, float] = (0.875, 1.125),
        contrast: Tuple[float, float] = (0.5, 1.5),
        saturation: Tuple[float, float] = (0.5, 1.5),
        hue: Tuple[float, float] = (-0.05, 0.05),
        p: float = 0.5,
    ) -> None:
        self.brightness = _check_range("brightness", brightness, low=0.0)
        self.contrast = _check_range("contrast", contrast, low=0.0)
        self.saturation = _check_range("saturation", saturation, low=0.0)
        self.hue = _check_range("hue", hue, low=-0.5)
        if self.hue[1] > 0.5:
            raise ValueError(f"hue={hue}; shifts must lie in [-0.5, 0.5]")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p={p}; expected a probability in [0, 1]")
        self.p = p

    def __call__(self, image: Any, target: Target = None) -> Sample:
        image = to_image_tensor(image)
        if image.shape[0] != 3:
            raise ValueError(f"RandomPhotometricDistort needs an RGB image [3, H, W]; got shape {tuple(image.shape)}")
        draws = torch.rand(7).tolist()
        if draws[0] < self.p:
            image = adjust_brightness(image, _uniform(*self.brightness))
        contrast_first = draws[1] < 0.5
        if contrast_first and draws[2] < self.p:
            image = adjust_contrast(image, _uniform(*self.contrast))
        if draws[3] < self.p:
            image = adjust_saturation(image, _uniform(*self.saturation))
        if draws[4] < self.p:
            image = adjust_hue(image, _uniform(*self.hue))
        if not contrast_first and draws[5] < self.p:
            image = adjust_contrast(image, _uniform(*self.contrast))
        if draws[6] < self.p:
            image = image[torch.randperm(3)]
        return image, target

    def __repr__(self) -> str:
        return (
            f"RandomPhotometricDistort(brightness={self.brightness}, contrast={self.contrast}, "
            f"saturation={self.saturation}, hue={self.hue}, p={self.p})"
        )


# -- SSD geometric ------------------------------------------------------------------------------


class RandomZoomOut:
    """SSD's zoom out: with probability ``p`` place the image at a random spot of a canvas
    ``U(side_range)`` times larger, filled with ``fill`` (default the ImageNet mean pixel)."""

    def __init__(
        self,
        fill: Union[float, Sequence[float]] = IMAGENET_MEAN_FILL,
        side_range: Tuple[float, float] = (1.0, 4.0),
        p: float = 0.5,
    ) -> None:
        self.fill = [float(fill)] if isinstance(fill, (int, float)) else [float(v) for v in fill]
        self.side_range = _check_range("side_range", side_range, low=1.0)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p={p}; expected a probability in [0, 1]")
        self.p = p

    def __call__(self, image: Any, target: Target = None) -> Sample:
        image = to_image_tensor(image)
        if float(torch.rand(1)) >= self.p:
            return image, target
        channels, height, width = image.shape
        ratio = _uniform(*self.side_range)
        canvas_h, canvas_w = int(height * ratio), int(width * ratio)
        offsets = torch.rand(2).tolist()
        left, top = int((canvas_w - width) * offsets[0]), int((canvas_h - height) * offsets[1])
        if len(self.fill) not in (1, channels):
            raise ValueError(f"fill has {len(self.fill)} values for an image with {channels} channels")
        fill = torch.tensor(self.fill, dtype=image.dtype).reshape(-1, 1, 1)
        canvas = fill.expand(channels, canvas_h, canvas_w).clone()
        canvas[:, top : top + height, left : left + width] = image
        if target is None:
            return canvas, None
        target = _shift_target(target, left, top)
        if "masks" in target:
            masks = target["masks"]
            padded = masks.new_zeros((masks.shape[0], canvas_h, canvas_w))
            padded[:, top : top + height, left : left + width] = masks
            target["masks"] = padded
        return canvas, target

    def __repr__(self) -> str:
        return f"RandomZoomOut(fill={self.fill}, side_range={self.side_range}, p={self.p})"


def crop_sample(image: torch.Tensor, target: Target, top: int, left: int, height: int, width: int) -> Sample:
    """Crop ``image`` to rows top..top+height, cols left..left+width; move the target with it.

    Boxes are shifted and clipped to the crop (not dropped: see :class:`SanitizeBoxes`), masks
    cropped, keypoints shifted and those falling outside the crop marked invisible (v = 0).
    """
    image = image[:, top : top + height, left : left + width]
    if target is None:
        return image, None
    target = _shift_target(target, -left, -top)
    if "boxes" in target:
        boxes = target["boxes"].clone()
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        target["boxes"] = boxes
    if "masks" in target:
        target["masks"] = target["masks"][:, top : top + height, left : left + width]
    if "keypoints" in target:
        keypoints = target["keypoints"]
        x, y = keypoints[..., 0], keypoints[..., 1]
        outside = (x < 0) | (x > width) | (y < 0) | (y > height)
        keypoints[..., 2] = torch.where(outside, torch.zeros_like(keypoints[..., 2]), keypoints[..., 2])
    return image, target


class RandomIoUCrop:
    """SSD's random crop: pick a minimum IoU from ``sampler_options``; try up to ``trials`` crops of
    relative side U(min_scale, max_scale) and aspect in [min_aspect_ratio, max_aspect_ratio] until one
    holds the centre of at least one box and overlaps some such box with IoU >= the minimum.

    Boxes whose centre is outside the crop are dropped (with their labels, masks, keypoints); the
    rest are clipped. An option >= 1 keeps the image as it is. An image without boxes is unchanged.
    """

    def __init__(
        self,
        min_scale: float = 0.3,
        max_scale: float = 1.0,
        min_aspect_ratio: float = 0.5,
        max_aspect_ratio: float = 2.0,
        sampler_options: Optional[Sequence[float]] = None,
        trials: int = 40,
        max_attempts: int = 200,
    ) -> None:
        self.min_scale, self.max_scale = _check_range("(min_scale, max_scale)", (min_scale, max_scale), low=1e-6)
        self.min_aspect_ratio, self.max_aspect_ratio = _check_range(
            "(min_aspect_ratio, max_aspect_ratio)", (min_aspect_ratio, max_aspect_ratio), low=1e-6
        )
        self.options = [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0] if sampler_options is None else [float(v) for v in sampler_options]
        if not self.options:
            raise ValueError("sampler_options is empty; give minimum IoUs such as [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0]")
        if trials < 1 or max_attempts < 1:
            raise ValueError(f"trials={trials}, max_attempts={max_attempts}; both must be positive")
        self.trials = trials
        self.max_attempts = max_attempts

    def __call__(self, image: Any, target: Target = None) -> Sample:
        image = to_image_tensor(image)
        if target is None or "boxes" not in target:
            raise ValueError("RandomIoUCrop needs a target with 'boxes'")
        boxes = target["boxes"]
        if boxes.numel() == 0:
            return image, target
        height, width = image.shape[-2:]
        centers = (boxes[:, :2] + boxes[:, 2:]) / 2  # [N, 2]
        for _ in range(self.max_attempts):  # the reference loops forever; we give up eventually
            min_iou = self.options[int(torch.randint(len(self.options), (1,)))]
            if min_iou >= 1.0:
                return image, target
            for _ in range(self.trials):
                scales = self.min_scale + (self.max_scale - self.min_scale) * torch.rand(2)
                crop_w, crop_h = int(width * scales[0]), int(height * scales[1])
                if crop_w < 1 or crop_h < 1:
                    continue
                if not self.min_aspect_ratio <= crop_w / crop_h <= self.max_aspect_ratio:
                    continue
                offsets = torch.rand(2)
                left, top = int((width - crop_w) * offsets[0]), int((height - crop_h) * offsets[1])
                right, bottom = left + crop_w, top + crop_h
                inside = (
                    (left < centers[:, 0]) & (centers[:, 0] < right) & (top < centers[:, 1]) & (centers[:, 1] < bottom)
                )
                if not inside.any():
                    continue
                crop_box = torch.tensor([left, top, right, bottom], dtype=boxes.dtype)
                if _iou_with_window(boxes[inside], crop_box).max() < min_iou:
                    continue
                return crop_sample(image, select_instances(target, inside), top, left, crop_h, crop_w)
        return image, target

    def __repr__(self) -> str:
        return (
            f"RandomIoUCrop(min_scale={self.min_scale}, max_scale={self.max_scale}, "
            f"aspect=({self.min_aspect_ratio}, {self.max_aspect_ratio}), sampler_options={self.options}, "
            f"trials={self.trials})"
        )


def _iou_with_window(boxes: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """IoU of each xyxy box [N, 4] with one xyxy ``window`` [4] -> [N]."""
    lt = torch.maximum(boxes[:, :2], window[:2])
    rb = torch.minimum(boxes[:, 2:], window[2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    areas = (boxes[:, 2:] - boxes[:, :2]).prod(dim=1)
    window_area = (window[2:] - window[:2]).prod()
    return inter / (areas + window_area - inter)


class SanitizeBoxes:
    """Clip boxes to the image and drop those narrower or shorter than ``min_size`` pixels.

    Dropped boxes take their labels, masks, keypoints and other per-instance fields with them.
    Each call that drops boxes warns (:class:`DroppedBoxesWarning`) with the count; the running
    total is in ``num_dropped``. The default ``min_size=1`` (as torchvision's
    ``SanitizeBoundingBoxes``) also drops sub-pixel slivers left by crops; ``min_size=0`` drops
    only boxes of zero width or height.
    """

    def __init__(self, min_size: float = 1.0, warn: bool = True) -> None:
        if min_size < 0:
            raise ValueError(f"min_size={min_size}; expected a non-negative number of pixels")
        self.min_size = float(min_size)
        self.warn = warn
        self.num_dropped = 0

    def __call__(self, image: Any, target: Target = None) -> Sample:
        image = to_image_tensor(image)
        if target is None or "boxes" not in target:
            return image, target
        height, width = image.shape[-2:]
        boxes = target["boxes"].clone()
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        box_w, box_h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        keep = (box_w > 0) & (box_h > 0) & (box_w >= self.min_size) & (box_h >= self.min_size)
        dropped = int((~keep).sum())
        if dropped:
            self.num_dropped += dropped
            if self.warn:
                warnings.warn(
                    f"SanitizeBoxes dropped {dropped} of {len(keep)} boxes smaller than {self.min_size} px "
                    f"after clipping to the {height}x{width} image (image_id {target.get('image_id')})",
                    DroppedBoxesWarning,
                    stacklevel=2,
                )
        return image, select_instances({**target, "boxes": boxes}, keep)

    def __repr__(self) -> str:
        return f"SanitizeBoxes(min_size={self.min_size})"
