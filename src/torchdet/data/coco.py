"""COCO-format detection datasets (``instances_*.json``, Roboflow/CVAT ``_annotations.coco.json``).

A COCO file is one JSON object::

    {"images":      [{"id": 1, "file_name": "a.jpg", "width": 640, "height": 480}, ...],
     "annotations": [{"id": 7, "image_id": 1, "category_id": 3, "bbox": [x, y, w, h],
                      "area": 1234.5, "iscrowd": 0,
                      "segmentation": [[x1, y1, x2, y2, ...]] or {"size": [h, w], "counts": ...},
                      "keypoints": [x1, y1, v1, ...], "num_keypoints": 5}, ...],
     "categories":  [{"id": 3, "name": "cat", "keypoints": [...], "skeleton": [[1, 2], ...]}, ...]}

Category ids need not be contiguous: sorted by id, they become labels 1..C (0 is the background),
and ``label_to_category_id`` maps back for writing results in the file's own ids.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from torchdet.data.base import DetectionDataset, ImageRecord, RawBox, Target, Transforms
from torchdet.data.image_io import PathLike

_COCO_LAYOUT = (
    'a COCO detection file is a JSON object {"images": [{"id", "file_name", "width", "height"}, '
    '...], "annotations": [{"id", "image_id", "category_id", "bbox": [x, y, width, height]}, ...], '
    '"categories": [{"id", "name"}, ...]}'
)


def _require_pycocotools():
    try:
        from pycocotools import mask as mask_utils
        from pycocotools.coco import COCO
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "CocoDetection needs pycocotools: pip install 'pycocotools>=2.0.7' "
            "(or pip install 'torchdet[coco]')"
        ) from error
    return COCO, mask_utils


def load_coco_json(annotation_file: PathLike) -> Dict[str, Any]:
    """Read and validate a COCO detection file; return its JSON object.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not JSON, not a COCO detection file (the message says which keys
            are missing and what a COCO file looks like), or an entry lacks a required field.
    """
    path = Path(annotation_file)
    if not path.is_file():
        raise FileNotFoundError(f"COCO annotation file not found: '{path}'")
    try:
        with open(path, "r", encoding="utf-8") as handle:
            data = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"'{path}' is not a COCO annotation file: it is not valid JSON ({error}); {_COCO_LAYOUT}") from error
    if not isinstance(data, dict):
        raise ValueError(
            f"'{path}' is not a COCO annotation file: its top level is a {type(data).__name__}, "
            f"not an object (a list is a results file, not annotations); {_COCO_LAYOUT}"
        )
    missing = [key for key in ("images", "annotations", "categories") if not isinstance(data.get(key), list)]
    if missing:
        names = ", ".join(f"'{key}'" for key in missing)
        raise ValueError(f"'{path}' is not a COCO annotation file: missing list(s) {names}; {_COCO_LAYOUT}")
    _check_entries(path, data)
    return data


def _check_entries(path: Path, data: Dict[str, Any]) -> None:
    """Check that every image, category and annotation has the fields the dataset reads."""
    for kind, required in (("images", ("id", "file_name")), ("categories", ("id", "name"))):
        for position, entry in enumerate(data[kind]):
            absent = [key for key in required if key not in entry]
            if absent:
                raise ValueError(f"'{path}': {kind}[{position}] has no {absent} field: {entry!r:.200}")
    image_ids = {image["id"] for image in data["images"]}
    category_ids = {category["id"] for category in data["categories"]}
    for position, ann in enumerate(data["annotations"]):
        absent = [key for key in ("id", "image_id", "category_id", "bbox") if key not in ann]
        if absent:
            raise ValueError(f"'{path}': annotations[{position}] has no {absent} field: {ann!r:.200}")
        bbox = ann["bbox"]
        if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4):
            raise ValueError(
                f"'{path}': annotation id {ann['id']} has bbox {bbox!r}; expected [x, y, width, height]"
            )
        if ann["image_id"] not in image_ids:
            raise ValueError(f"'{path}': annotation id {ann['id']} refers to image_id {ann['image_id']}, which is not in 'images'")
        if ann["category_id"] not in category_ids:
            raise ValueError(
                f"'{path}': annotation id {ann['id']} has category_id {ann['category_id']}, which is not in "
                f"'categories' (ids {sorted(category_ids)})"
            )


def coco_bbox_to_xyxy(bboxes: torch.Tensor) -> torch.Tensor:
    """Convert COCO ``[x, y, width, height]`` boxes [N, 4] to ``[x1, y1, x2, y2]`` [N, 4]."""
    return torch.cat([bboxes[:, :2], bboxes[:, :2] + bboxes[:, 2:]], dim=1)


def segmentation_to_mask(segmentation: Any, height: int, width: int, *, annotation_id: Any = None) -> np.ndarray:
    """Rasterise a COCO segmentation (polygons, uncompressed or compressed RLE) to uint8 [H, W].

    Polygons with fewer than 3 points are ignored; an empty segmentation gives an all-zero mask.
    """
    _, mask_utils = _require_pycocotools()
    if isinstance(segmentation, dict):
        size = list(segmentation.get("size", []))
        if size != [height, width]:
            raise ValueError(
                f"annotation id {annotation_id}: RLE segmentation size {size} does not match the "
                f"image size [{height}, {width}]"
            )
        rle = segmentation
        if isinstance(segmentation.get("counts"), list):
            rle = mask_utils.frPyObjects(segmentation, height, width)
        return _decode(mask_utils, rle)
    polygons = [list(map(float, polygon)) for polygon in (segmentation or []) if len(polygon) >= 6]
    if not polygons:
        return np.zeros((height, width), dtype=np.uint8)
    rles = mask_utils.frPyObjects(polygons, height, width)
    return _decode(mask_utils, mask_utils.merge(rles))


def _decode(mask_utils, rle: Dict[str, Any]) -> np.ndarray:
    """pycocotools' RLE decode -> uint8 [H, W], without its NumPy 2 ``copy=False`` DeprecationWarning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*copy keyword", category=DeprecationWarning)
        return np.asarray(mask_utils.decode(rle), dtype=np.uint8)


class CocoDetection(DetectionDataset):
    """A COCO-format detection dataset yielding ``(image [3, H, W] float in 0..1, target)``.

    Target keys: ``boxes`` float32 [N, 4] xyxy pixels, ``labels`` int64 [N] (1..C), ``image_id``
    (the file's image id), ``area`` float32 [N], ``iscrowd`` int64 [N] (all 0: crowd regions are
    left out of training targets; the evaluator reads them from ``.coco``), and optionally
    ``masks`` uint8 [N, H, W] and ``keypoints`` float32 [N, K, 3] (x, y, visibility 0/1/2).

    Boxes are clipped to the image; annotations whose box has zero width or height after that are
    dropped, with one warning at construction giving their count.

    Args:
        annotation_file: the COCO json.
        images_dir: folder the images' ``file_name`` are relative to; defaults to the annotation
            file's folder (the export layout ``split/_annotations.coco.json`` + ``split/*.jpg``).
        transforms: callable ``(image, target) -> (image, target)`` applied last.
        with_masks: decode ``segmentation`` into ``masks``.
        with_keypoints: add ``keypoints`` (K = the longest category ``keypoints`` list).
        skip_bad_images: skip missing/corrupt images instead of raising (see
            :mod:`torchdet.data.base` for how).

    Attributes:
        coco: the ``pycocotools.coco.COCO`` index of the file (for ``COCOeval``).
        categories: ``["__background__", name of label 1, ...]``.
        label_to_category_id / category_id_to_label: contiguous label <-> the file's category id.
        keypoint_names, skeleton: from the categories (skeleton as 0-based index pairs).
    """

    def __init__(
        self,
        annotation_file: PathLike,
        images_dir: Optional[PathLike] = None,
        transforms: Optional[Transforms] = None,
        *,
        with_masks: bool = False,
        with_keypoints: bool = False,
        skip_bad_images: bool = False,
    ) -> None:
        super().__init__(transforms, skip_bad_images)
        COCO, _ = _require_pycocotools()
        self.annotation_file = Path(annotation_file)
        self.images_dir = Path(images_dir) if images_dir is not None else self.annotation_file.parent
        self.with_masks = with_masks
        self.with_keypoints = with_keypoints

        data = load_coco_json(self.annotation_file)
        if not data["images"]:
            raise ValueError(f"'{self.annotation_file}' has an empty 'images' list: the dataset is empty")
        self.coco = COCO()
        self.coco.dataset = data
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco.createIndex()

        sorted_categories = sorted(data["categories"], key=lambda category: category["id"])
        self.categories = ["__background__"] + [str(category["name"]) for category in sorted_categories]
        self.label_to_category_id = {label: category["id"] for label, category in enumerate(sorted_categories, start=1)}
        self._category_to_label = self.category_id_to_label
        self.keypoint_names: List[str] = []
        self.skeleton: List[tuple] = []
        for category in sorted_categories:
            if len(category.get("keypoints") or []) > len(self.keypoint_names):
                self.keypoint_names = list(category["keypoints"])
                self.skeleton = [(int(a) - 1, int(b) - 1) for a, b in category.get("skeleton") or []]
        self.num_keypoints = len(self.keypoint_names) or self._keypoints_in_annotations(data["annotations"])
        if with_keypoints and self.num_keypoints == 0:
            raise ValueError(
                f"with_keypoints=True but '{self.annotation_file}' has no keypoints (no category lists "
                "'keypoints' and no annotation has a 'keypoints' field)"
            )

        self.records = [
            ImageRecord(
                image_id=image["id"],
                path=self.images_dir / image["file_name"],
                file_name=image["file_name"],
                width=image.get("width"),
                height=image.get("height"),
            )
            for image in sorted(data["images"], key=lambda image: image["id"])
        ]
        self._warn_degenerate_boxes()
        self._finish_init(f"COCO file '{self.annotation_file}'")

    @staticmethod
    def _keypoints_in_annotations(annotations: Sequence[Dict[str, Any]]) -> int:
        lengths = [len(ann["keypoints"]) // 3 for ann in annotations if ann.get("keypoints")]
        return max(lengths, default=0)

    def _warn_degenerate_boxes(self) -> None:
        """Warn once about the (non-crowd) boxes that will be dropped, naming the file and their ids.

        A box is dropped when it has no area after conversion to xyxy and clipping to the image:
        a negative or zero ``width``/``height`` in the file, or a box entirely outside the image.
        """
        sizes = {record.image_id: (record.width or np.inf, record.height or np.inf) for record in self.records}
        anns = [ann for ann in self.coco.dataset["annotations"] if not ann.get("iscrowd", 0)]
        if not anns:
            return
        xywh = np.asarray([ann["bbox"] for ann in anns], dtype=np.float64).reshape(-1, 4)
        limits = np.asarray([sizes.get(ann["image_id"], (np.inf, np.inf)) for ann in anns], dtype=np.float64)
        x1, y1 = np.clip(xywh[:, 0], 0, limits[:, 0]), np.clip(xywh[:, 1], 0, limits[:, 1])
        x2 = np.clip(xywh[:, 0] + xywh[:, 2], 0, limits[:, 0])
        y2 = np.clip(xywh[:, 1] + xywh[:, 3], 0, limits[:, 1])
        dropped = np.flatnonzero((x2 <= x1) | (y2 <= y1))
        if len(dropped):
            negative = int(((xywh[dropped, 2] < 0) | (xywh[dropped, 3] < 0)).sum())
            ids = [anns[i].get("id") for i in dropped[:5]]
            more = f" and {len(dropped) - 5} more" if len(dropped) > 5 else ""
            warnings.warn(
                f"'{self.annotation_file}': dropping {len(dropped)} annotation(s) whose box has no area "
                f"({negative} with a negative width or height, the rest zero-sized or outside the image): "
                f"annotation id(s) {ids}{more}. `torchdet data check` lists them all.",
                stacklevel=3,
            )

    def _training_annotations(self, image_id: int) -> List[Dict[str, Any]]:
        return [ann for ann in self.coco.imgToAnns.get(image_id, []) if not ann.get("iscrowd", 0)]

    @staticmethod
    def _valid_boxes(anns: List[Dict[str, Any]], height: Optional[int], width: Optional[int]):
        """Return ``(boxes xyxy [N, 4] clipped to the image when its size is known, keep [N] bool)``."""
        boxes = coco_bbox_to_xyxy(torch.tensor([ann["bbox"] for ann in anns], dtype=torch.float32).reshape(-1, 4))
        if width is not None and height is not None:
            boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
            boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return boxes, keep

    def load_target(self, idx: int, height: int, width: int) -> Target:
        """Build the target of image ``idx`` decoded at ``height`` x ``width`` (see class doc)."""
        record = self.records[idx]
        anns = self._training_annotations(record.image_id)
        boxes, keep = self._valid_boxes(anns, height, width)
        anns = [ann for ann, kept in zip(anns, keep.tolist()) if kept]
        boxes = boxes[keep]
        target: Target = {
            "boxes": boxes,
            "labels": torch.tensor([self._category_to_label[ann["category_id"]] for ann in anns], dtype=torch.int64),
            "image_id": record.image_id,
            "area": torch.tensor(
                [float(ann.get("area", 0.0)) or float((b[2] - b[0]) * (b[3] - b[1])) for ann, b in zip(anns, boxes.tolist())],
                dtype=torch.float32,
            ),
            "iscrowd": torch.zeros(len(anns), dtype=torch.int64),
        }
        if self.with_masks:
            masks = [segmentation_to_mask(ann.get("segmentation"), height, width, annotation_id=ann["id"]) for ann in anns]
            target["masks"] = (
                torch.from_numpy(np.stack(masks)) if masks else torch.zeros((0, height, width), dtype=torch.uint8)
            )
        if self.with_keypoints:
            target["keypoints"] = self._keypoints(anns)
        return target

    def raw_boxes(self, idx: int) -> List[RawBox]:
        """The image's non-crowd boxes as the file gives them (``bbox`` [x, y, w, h] -> xyxy)."""
        anns = self._training_annotations(self.records[idx].image_id)
        return [
            RawBox((float(x), float(y), float(x) + float(w), float(y) + float(h)),
                   self._category_to_label[ann["category_id"]], f"annotation id {ann.get('id')}")
            for ann in anns
            for x, y, w, h in [ann["bbox"]]
        ]

    def _keypoints(self, anns: List[Dict[str, Any]]) -> torch.Tensor:
        """Keypoints float32 [N, K, 3]; annotations without keypoints get all-zero (invisible) rows."""
        keypoints = torch.zeros((len(anns), self.num_keypoints, 3), dtype=torch.float32)
        for row, ann in enumerate(anns):
            values = ann.get("keypoints") or []
            if len(values) % 3 or len(values) // 3 > self.num_keypoints:
                raise ValueError(
                    f"annotation id {ann['id']} has {len(values)} keypoint values; expected 3 * {self.num_keypoints}"
                )
            if values:
                keypoints[row, : len(values) // 3] = torch.tensor(values, dtype=torch.float32).reshape(-1, 3)
        return keypoints
