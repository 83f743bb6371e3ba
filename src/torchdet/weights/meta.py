"""Category and keypoint names that the published weights were trained with.

Label ``i`` of a COCO detector is ``COCO_CATEGORIES[i]``: index 0 is the background and the
other 90 indices are the COCO category ids, so the ids COCO never used are ``"N/A"``
placeholders. A detector trained on COCO therefore has ``num_classes = 91``.
"""
from typing import List

from torchdet.weights._imagenet_categories import IMAGENET_CATEGORIES

__all__ = [
    "COCO_CATEGORIES",
    "COCO_PERSON_CATEGORIES",
    "COCO_PERSON_KEYPOINT_NAMES",
    "IMAGENET_CATEGORIES",
    "COCO_UNUSED_IDS",
]

# COCO ids 1..90 that the 2014/2017 annotations never use.
COCO_UNUSED_IDS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)

_COCO_NAMES_BY_ID = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # the 80 used categories, in increasing id order


def _coco_categories() -> List[str]:
    """91 names indexed by COCO id: ``__background__`` at 0, ``N/A`` at the unused ids."""
    names = iter(_COCO_NAMES_BY_ID)
    out = ["__background__"]
    for coco_id in range(1, 91):
        out.append("N/A" if coco_id in COCO_UNUSED_IDS else next(names))
    return out


COCO_CATEGORIES: List[str] = _coco_categories()

COCO_PERSON_CATEGORIES: List[str] = ["no person", "person"]

COCO_PERSON_KEYPOINT_NAMES: List[str] = [
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
]
