"""Reading images from disk into the dataset contract: float RGB tensors [3, H, W] in 0..1.

Every dataset goes through these functions, so a missing or corrupt file always fails the same
way: a :class:`FileNotFoundError` or :class:`CorruptImageError` (both ``OSError``) naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Tuple, Union

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

PathLike = Union[str, Path]

#: File suffixes treated as images when a dataset lists a folder (lower case).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")


class CorruptImageError(OSError):
    """An image file exists but cannot be decoded (truncated, not an image, unsupported format)."""


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """Convert a PIL image of any mode to a float RGB tensor.

    Grayscale, palette, RGBA (alpha dropped), CMYK and 16-bit images are converted to 8-bit RGB first.

    Returns:
        Tensor [3, H, W], float32, values in 0..1.
    """
    if image.mode != "RGB":
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            array = np.asarray(image, dtype=np.float32)
            peak = 65535.0 if array.max(initial=0.0) > 255 else 255.0
            gray = torch.from_numpy(array / peak).clamp_(0.0, 1.0)
            return gray.unsqueeze(0).expand(3, -1, -1).contiguous()
        image = image.convert("RGB")
    array = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def read_image(path: PathLike) -> torch.Tensor:
    """Decode the image at ``path`` into a float RGB tensor [3, H, W] in 0..1.

    Raises:
        FileNotFoundError: the file does not exist (the message names it).
        CorruptImageError: the file cannot be decoded (the message names it and says why).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: '{path}'")
    try:
        with Image.open(path) as image:
            image.load()
            return pil_to_tensor(image)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise CorruptImageError(
            f"cannot decode image file '{path}' ({type(error).__name__}: {error}); "
            "the file is truncated or not an image. Re-export it, or skip such files: "
            "--skip-bad-images on the torchdet command line, skip_bad_images=True for a dataset in Python"
        ) from error


def read_image_size(path: PathLike) -> Tuple[int, int]:
    """Return ``(height, width)`` of the image at ``path`` from its header, without decoding pixels.

    Raises:
        FileNotFoundError / CorruptImageError: as :func:`read_image`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: '{path}'")
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise CorruptImageError(
            f"cannot read the header of image file '{path}' ({type(error).__name__}: {error})"
        ) from error
    return height, width
