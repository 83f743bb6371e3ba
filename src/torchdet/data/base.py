"""The behaviour every torchdet detection dataset shares.

A dataset is a list of :class:`ImageRecord` (one per image, read from the annotation files at
construction) plus a way to build the target of one record. This base class does the rest:
decoding the image, applying the transforms, skipping bad images, aspect ratios for grouped
batching.

Skipping bad images (``skip_bad_images=True``) works in two stages:

1. At construction, every image file is checked cheaply (it exists and its header can be read,
   no pixel decoding). Failing images are removed from the dataset (so ``len``, ``image_ids`` and
   indices only cover good images), listed in ``skipped_images`` as ``(path, reason)``, and one
   warning gives their count.
2. A file whose header is fine but whose pixels cannot be decoded (e.g. a truncated JPEG) is only
   found when ``__getitem__`` reads it. Then the dataset warns (naming the file and the running
   count), remembers the index as bad, and returns the next good index instead, so a training
   loop never sees an exception. Such files are appended to ``skipped_images`` too.

With ``skip_bad_images=False`` (default) a missing or corrupt file raises ``FileNotFoundError``
or :class:`~torchdet.data.image_io.CorruptImageError` naming the file.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

import torch
from torch.utils.data import Dataset

from torchdet.data.image_io import read_image, read_image_size

Target = Dict[str, Any]
Transforms = Callable[[torch.Tensor, Target], Tuple[torch.Tensor, Target]]


@dataclass(frozen=True)
class RawBox:
    """One annotated box as the annotation file gives it, before clipping to the image or dropping.

    ``box`` is ``(x1, y1, x2, y2)`` in pixels of the full-size image, ``label`` the contiguous label
    (1..C, index into ``categories``) and ``where`` names it in the file for messages, e.g.
    ``"annotation id 17"``.
    """

    box: Tuple[float, float, float, float]
    label: int
    where: str


@dataclass
class ImageRecord:
    """One image of a dataset: its id, where it lives, and its size when the annotations give it."""

    image_id: int
    path: Path
    file_name: str
    width: Optional[int] = None
    height: Optional[int] = None
    extra: Dict[str, Any] = field(default_factory=dict)


class DetectionDataset(Dataset):
    """Base class: yields ``(image [3, H, W] float in 0..1, target dict)``.

    Subclasses fill ``self.records``, ``self.categories`` (index 0 is ``"__background__"``) and
    ``self.label_to_category_id``, call :meth:`_finish_init`, and implement :meth:`load_target`.
    """

    records: List[ImageRecord]
    categories: List[str]
    label_to_category_id: Dict[int, Any]

    def __init__(self, transforms: Optional[Transforms], skip_bad_images: bool) -> None:
        self.transforms = transforms
        self.skip_bad_images = skip_bad_images
        self.skipped_images: List[Tuple[str, str]] = []
        self._bad_indices: Set[int] = set()

    # -- to implement ---------------------------------------------------------------------------
    def load_target(self, idx: int, height: int, width: int) -> Target:
        """The target dict of image ``idx`` (image decoded at ``height`` x ``width``)."""
        raise NotImplementedError

    def raw_boxes(self, idx: int) -> List[RawBox]:
        """The boxes of image ``idx`` as written in the annotation files (no clipping, nothing dropped).

        Used by the dataset checker and the format converters; crowd regions and, for VOC,
        ``difficult`` objects the dataset leaves out of its targets are left out here too.
        """
        raise NotImplementedError

    # -- construction helpers -------------------------------------------------------------------
    def _finish_init(self, source: str) -> None:
        """Check the dataset is not empty and, with ``skip_bad_images``, drop unreadable images."""
        if not self.records:
            raise ValueError(f"{source} lists no images: the dataset is empty")
        if self.skip_bad_images:
            good: List[ImageRecord] = []
            for record in self.records:
                try:
                    height, width = read_image_size(record.path)
                except OSError as error:
                    self.skipped_images.append((str(record.path), str(error)))
                    continue
                if record.width is None or record.height is None:
                    record.width, record.height = width, height
                good.append(record)
            if self.skipped_images:
                first = self.skipped_images[0][0]
                warnings.warn(
                    f"{source}: skipped {len(self.skipped_images)} of {len(self.records)} images "
                    f"that are missing or unreadable (first: '{first}'); see .skipped_images",
                    stacklevel=3,
                )
            self.records = good
            if not self.records:
                raise ValueError(f"{source}: every image is missing or unreadable; nothing to load")

    # -- public API -----------------------------------------------------------------------------
    @property
    def image_ids(self) -> List[int]:
        """Image id of each index (for COCO, the file's own image ids)."""
        return [record.image_id for record in self.records]

    @property
    def num_classes(self) -> int:
        """Number of classes including the background (the models' ``num_classes``)."""
        return len(self.categories)

    @property
    def category_id_to_label(self) -> Dict[Any, int]:
        """The file's category id -> contiguous label (inverse of ``label_to_category_id``)."""
        return {category_id: label for label, category_id in self.label_to_category_id.items()}

    def image_info(self, idx: int) -> Dict[str, Any]:
        """``{"id", "file_name", "path", "width", "height"}`` of image ``idx`` (no decoding)."""
        record = self.records[idx]
        if record.width is None or record.height is None:
            record.height, record.width = read_image_size(record.path)
        info = {
            "id": record.image_id,
            "file_name": record.file_name,
            "path": str(record.path),
            "width": record.width,
            "height": record.height,
        }
        info.update(record.extra)
        return info

    def aspect_ratios(self) -> List[float]:
        """Width / height of every image, from the annotations (or image headers), no decoding."""
        ratios = []
        for idx in range(len(self.records)):
            info = self.image_info(idx)
            ratios.append(float(info["width"]) / float(info["height"]))
        return ratios

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, idx: int) -> Tuple[torch.Tensor, Target]:
        if idx < 0:
            idx += len(self)
        if not 0 <= idx < len(self):
            raise IndexError(f"index {idx} out of range for a dataset of {len(self)} images")
        image, idx = self._read_image(idx)
        target = self.load_target(idx, image.shape[-2], image.shape[-1])
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    def _read_image(self, idx: int) -> Tuple[torch.Tensor, int]:
        """Decode image ``idx``; with ``skip_bad_images`` fall through to the next good index."""
        if not self.skip_bad_images:
            return read_image(self.records[idx].path), idx
        for step in range(len(self)):
            candidate = (idx + step) % len(self)
            if candidate in self._bad_indices:
                continue
            try:
                return read_image(self.records[candidate].path), candidate
            except OSError as error:
                self._bad_indices.add(candidate)
                self.skipped_images.append((str(self.records[candidate].path), str(error)))
                warnings.warn(
                    f"skipping corrupt image '{self.records[candidate].path}' "
                    f"({len(self._bad_indices)} found while loading so far); "
                    f"returning the next good image instead",
                    stacklevel=3,
                )
        raise OSError("every image of the dataset failed to decode; see .skipped_images")

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(images={len(self)}, classes={len(self.categories) - 1}, "
            f"transforms={self.transforms!r})"
        )
