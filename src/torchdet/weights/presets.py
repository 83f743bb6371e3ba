"""The inference transforms that go with published weights: ``weights.transforms()``.

- ``ObjectDetection``: what the detection models expect, a float image in ``0..1``. The
  models resize and normalise internally (``GeneralizedRCNNTransform``), so this does nothing else.
- ``ImageClassification``: the ImageNet evaluation preset of the classification backbones
  (resize the shorter side, centre crop, scale to ``0..1``, normalise).
"""
from __future__ import annotations

from typing import Any, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ObjectDetection", "ImageClassification", "to_float_image", "pil_to_tensor", "IMAGENET_MEAN", "IMAGENET_STD"]

# ImageNet's per-channel mean and std of 0..1 RGB: the normalisation of the backbones' weights.
IMAGENET_MEAN: Tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: Tuple[float, float, float] = (0.229, 0.224, 0.225)


def _is_pil(img: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        return False
    return isinstance(img, Image.Image)


def pil_to_tensor(img: Any) -> Tensor:
    """A PIL image as a tensor ``[C, H, W]`` of its own dtype (uint8 for ``RGB``/``L``/``RGBA``...).

    Channels are the image's own (no conversion to RGB); a 1-bit image becomes uint8 0/255.
    """
    if img.mode == "1":
        img = img.convert("L")
    array = np.array(img, copy=True)
    if array.ndim == 2:
        array = array[:, :, None]  # [H, W, 1]
    if array.dtype == np.uint16:  # torch has no uint16 arithmetic on every version
        array = array.astype(np.int32)
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()  # [C, H, W]


def to_float_image(image: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """Integer images are scaled by ``1 / max`` of their dtype (uint8: ``1/255``); float images are cast.

    Any shape; values of float images are left as they are.
    """
    if image.is_floating_point():
        return image.to(dtype)
    if image.dtype == torch.bool:
        return image.to(dtype)
    return image.to(dtype) / float(torch.iinfo(image.dtype).max)


def _as_tensor(img: Any, who: str) -> Tensor:
    if _is_pil(img):
        return pil_to_tensor(img)
    if isinstance(img, Tensor):
        if img.ndim not in (3, 4):
            raise ValueError(f"{who} expects an image [C, H, W] or a batch [B, C, H, W], got a tensor of "
                             f"shape {tuple(img.shape)}")
        return img
    raise TypeError(f"{who} expects a PIL image or a torch.Tensor, got {type(img).__name__}")


class ObjectDetection(nn.Module):
    """Detection preset: PIL image or tensor ``[C, H, W]`` / ``[B, C, H, W]`` -> float32 in ``0..1``.

    uint8 is scaled by ``1/255``; float tensors are returned as float32, unchanged. Nothing else
    happens: the detection models resize and normalise their inputs themselves.
    """

    def forward(self, img: Any) -> Tensor:
        return to_float_image(_as_tensor(img, "ObjectDetection"))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}()"

    def describe(self) -> str:
        return ("Accepts PIL.Image, batched (B, C, H, W) and single (C, H, W) image torch.Tensor objects. "
                "The images are rescaled to [0.0, 1.0].")


class ImageClassification(nn.Module):
    """ImageNet evaluation preset: resize shorter side -> centre crop -> ``0..1`` -> normalise.

    Input: PIL image or tensor ``[C, H, W]`` / ``[B, C, H, W]``; output float32
    ``[..., 3, crop_size, crop_size]``. PIL images are resized with PIL (bilinear), tensors with
    ``F.interpolate(mode="bilinear", antialias=True)``.
    """

    def __init__(
        self,
        *,
        crop_size: int,
        resize_size: int = 256,
        mean: Tuple[float, ...] = IMAGENET_MEAN,
        std: Tuple[float, ...] = IMAGENET_STD,
        antialias: bool = True,
    ) -> None:
        super().__init__()
        self.crop_size = [crop_size]
        self.resize_size = [resize_size]
        self.mean = list(mean)
        self.std = list(std)
        self.antialias = antialias

    def forward(self, img: Any) -> Tensor:
        if _is_pil(img):
            img = _resize_pil(img, self.resize_size[0])
            x = pil_to_tensor(img)
        else:
            x = _as_tensor(img, "ImageClassification")
            x = _resize_tensor(x, self.resize_size[0], self.antialias)
        x = _center_crop(x, self.crop_size[0])
        x = to_float_image(x)
        mean = torch.tensor(self.mean, dtype=x.dtype).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype).view(-1, 1, 1)
        return (x - mean) / std

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(crop_size={self.crop_size}, resize_size={self.resize_size}, "
                f"mean={self.mean}, std={self.std}, antialias={self.antialias})")

    def describe(self) -> str:
        return (f"Accepts PIL.Image, batched (B, C, H, W) and single (C, H, W) image torch.Tensor objects. "
                f"The images are resized to resize_size={self.resize_size} (shorter side, bilinear), then "
                f"central-cropped to crop_size={self.crop_size}, rescaled to [0.0, 1.0] and normalised with "
                f"mean={self.mean} and std={self.std}.")


def _resized_hw(h: int, w: int, size: int) -> Tuple[int, int]:
    """Shorter side -> ``size``, the longer side keeps the aspect ratio (truncated)."""
    short, long = (h, w) if h <= w else (w, h)
    new_short, new_long = size, int(size * long / short)
    return (new_short, new_long) if h <= w else (new_long, new_short)


def _resize_pil(img: Any, size: int) -> Any:
    from PIL import Image

    h, w = _resized_hw(img.height, img.width, size)
    return img.resize((w, h), Image.BILINEAR)


def _resize_tensor(x: Tensor, size: int, antialias: bool) -> Tensor:
    """``[..., C, H, W]`` -> ``[..., C, H', W']``, bilinear."""
    h, w = _resized_hw(x.shape[-2], x.shape[-1], size)
    batched = x if x.ndim == 4 else x[None]
    y = F.interpolate(to_float_image(batched) if not batched.is_floating_point() else batched,
                      size=(h, w), mode="bilinear", align_corners=False, antialias=antialias)
    if not x.is_floating_point():  # back to the integer range so that to_float_image scales once
        y = (y * float(torch.iinfo(x.dtype).max)).round().clamp(0, torch.iinfo(x.dtype).max).to(x.dtype)
    return y if x.ndim == 4 else y[0]


def _center_crop(x: Tensor, size: int) -> Tensor:
    """``[..., H, W]`` -> ``[..., size, size]``, zero-padded first when smaller."""
    h, w = x.shape[-2:]
    if h < size or w < size:
        pad_h, pad_w = max(size - h, 0), max(size - w, 0)
        x = F.pad(x, [pad_w // 2, (pad_w + 1) // 2, pad_h // 2, (pad_h + 1) // 2])
        h, w = x.shape[-2:]
    top = int(round((h - size) / 2.0))
    left = int(round((w - size) / 2.0))
    return x[..., top:top + size, left:left + size]

