"""Datasets, augmentations, batching and a synthetic dataset for detection.

Every dataset yields ``(image, target)``: ``image`` a float tensor [3, H, W] in 0..1 and
``target`` a dict with ``boxes`` float32 [N, 4] (xyxy pixels), ``labels`` int64 [N] (1..C),
``image_id`` and optionally ``masks`` uint8 [N, H, W] and ``keypoints`` float32 [N, K, 3].
`open_dataset` opens one the way the commands name it (a format and a path);
`torchdet.data.loaders` batches them for training and evaluation.
"""

from torchdet.data.base import DetectionDataset
from torchdet.data.coco import CocoDetection
from torchdet.data.collate import collate_fn
from torchdet.data.formats import FORMATS, open_dataset
from torchdet.data.image_io import CorruptImageError, read_image
from torchdet.data.samplers import GroupedBatchSampler, create_aspect_ratio_groups
from torchdet.data.synthetic import (
    SHAPE_CLASSES,
    SHAPES_KEYPOINT_FLIP_INDICES,
    SHAPES_KEYPOINT_NAMES,
    SHAPES_SKELETON,
    make_shapes_dataset,
)
from torchdet.data.transforms import (
    COCO_PERSON_KEYPOINT_FLIP_INDICES,
    Compose,
    DroppedBoxesWarning,
    RandomHorizontalFlip,
    RandomIoUCrop,
    RandomPhotometricDistort,
    RandomResize,
    RandomZoomOut,
    SanitizeBoxes,
    ScaleJitter,
    ToTensor,
)
from torchdet.data.voc import VOC_CLASSES, VOCDetection
from torchdet.data.yolo import YOLODetection

__all__ = [
    "COCO_PERSON_KEYPOINT_FLIP_INDICES",
    "CocoDetection",
    "Compose",
    "CorruptImageError",
    "DetectionDataset",
    "DroppedBoxesWarning",
    "FORMATS",
    "GroupedBatchSampler",
    "RandomHorizontalFlip",
    "RandomIoUCrop",
    "RandomPhotometricDistort",
    "RandomResize",
    "RandomZoomOut",
    "SHAPES_KEYPOINT_FLIP_INDICES",
    "SHAPES_KEYPOINT_NAMES",
    "SHAPES_SKELETON",
    "SHAPE_CLASSES",
    "SanitizeBoxes",
    "ScaleJitter",
    "ToTensor",
    "VOCDetection",
    "VOC_CLASSES",
    "YOLODetection",
    "collate_fn",
    "create_aspect_ratio_groups",
    "make_shapes_dataset",
    "open_dataset",
    "read_image",
]
