"""Open a training or validation dataset the way the commands name it: a format and a path.

- ``coco``: ``--data`` is the annotation JSON, ``--images`` the image folder (default: the
  JSON's folder);
- ``voc``: ``--data`` is a VOCdevkit year folder (or a flat folder of XML files), ``--split``
  the ImageSets/Main split;
- ``yolo``: ``--data`` is a ``data.yaml`` (its ``train``/``val`` entries and ``names``) or an
  images folder (labels in the Ultralytics layout, names from ``classes.txt``).

Every dataset exposes its categories by label (index 0 the background) and their ids
(`category_ids`, ints: the file's ids for COCO, the class indices for YOLO, the labels
themselves for VOC, whose categories are names).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from torchdet.data.transforms import (Compose, RandomHorizontalFlip, RandomIoUCrop, RandomPhotometricDistort,
                                      RandomZoomOut)

FORMATS = ("coco", "voc", "yolo")
# Training augmentations by name, in the order they are applied.
AUGMENTATIONS = ("photometric", "zoom_out", "iou_crop", "hflip")


def build_augmentation(names: Sequence[str], keypoint_flip: Optional[List[int]] = None) -> Optional[Compose]:
    """The training transform of ``names`` (a subset of `AUGMENTATIONS`, applied in that order).

    - ``photometric``: SSD's colour distortion (brightness, contrast, saturation, hue);
    - ``zoom_out``: with probability 0.5, the image on a canvas up to 1.5x larger (objects shrink);
    - ``iou_crop``: SSD's random crop around objects (objects grow);
    - ``hflip``: horizontal flip with probability 0.5 (keypoints swap sides by ``keypoint_flip``).
    """
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown:
        raise ValueError(f"unknown augmentation(s) {unknown}; choose from {AUGMENTATIONS}")
    steps = {"photometric": lambda: RandomPhotometricDistort(),
             "zoom_out": lambda: RandomZoomOut(side_range=(1.0, 1.5), p=0.5),
             "iou_crop": lambda: RandomIoUCrop(),
             "hflip": lambda: RandomHorizontalFlip(0.5, keypoint_flip)}
    chosen = [steps[name]() for name in AUGMENTATIONS if name in names]
    return Compose(chosen) if chosen else None


def open_dataset(fmt: str, data: str, *, role: str = "train", images: Optional[str] = None,
                 split: Optional[str] = None, categories: Optional[Sequence[str]] = None,
                 with_masks: bool = False, with_keypoints: bool = False, skip_bad_images: bool = False,
                 augment: Union[bool, Sequence[str]] = False) -> Any:
    """The dataset named by (`fmt`, `data`), for `role` "train" or "val".

    Args:
        categories: class names by label (without the background) to keep labels in the
            order a model was trained with (VOC, YOLO); COCO takes its own.
        augment: training augmentations by name (see `build_augmentation`); True means flips only.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown dataset format {fmt!r}; choose one of {FORMATS}")
    if fmt == "coco":
        from torchdet.data.coco import CocoDetection

        dataset = CocoDetection(data, images, with_masks=with_masks, with_keypoints=with_keypoints,
                                skip_bad_images=skip_bad_images)
    elif fmt == "voc":
        from torchdet.data.voc import VOCDetection

        names = list(categories) if categories else voc_class_names(data)
        dataset = VOCDetection(data, split, categories=names, keep_difficult=role == "val", images_dir=images,
                               skip_bad_images=skip_bad_images)
    else:
        dataset = _open_yolo(data, role, images, categories, skip_bad_images)
    names = ("hflip",) if augment is True else tuple(augment or ())
    if names:
        dataset.transforms = build_augmentation(names, keypoint_flip_indices(
            getattr(dataset, "keypoint_names", None)) if with_keypoints else None)
    return dataset


def _open_yolo(data: str, role: str, images: Optional[str], categories: Optional[Sequence[str]],
               skip_bad_images: bool) -> Any:
    from torchdet.data.yolo import YOLODetection, load_data_yaml

    path = Path(data)
    names: Any = list(categories) if categories else None
    if path.suffix.lower() in (".yaml", ".yml"):
        config = load_data_yaml(path)
        base = Path(config.get("path") or path.parent)
        if not base.is_absolute():
            base = path.parent / base
        entry = config.get(role) or (config.get("val") if role == "val" else None)
        if not entry:
            raise ValueError(f"'{path}' has no '{role}:' entry; add the {role} images folder to it or pass it "
                             "as --data / --val-data")
        images_dir = base / str(entry)
        names = names or config["names"]
    else:
        images_dir = path
    return YOLODetection(images or images_dir, None, names, skip_bad_images=skip_bad_images)


def voc_class_names(*roots: str) -> List[str]:
    """The classes of VOC datasets: the 20 Pascal VOC classes when their objects all belong to them,
    else every object name found in their XML files, sorted."""
    from torchdet.data.voc import VOC_CLASSES, parse_voc_xml

    names = set()
    for xml_file in sorted(f for root in roots for f in Path(root).rglob("*.xml")):
        try:
            names.update(obj["name"] for obj in parse_voc_xml(xml_file)["objects"])
        except ValueError:
            continue  # not an annotation file; VOCDetection reports the ones it reads
    if names <= set(VOC_CLASSES):
        return list(VOC_CLASSES)
    return sorted(names)


def keypoint_flip_indices(names: Optional[Sequence[str]]) -> Optional[List[int]]:
    """Where each keypoint goes under a horizontal flip: "left_x" <-> "right_x", others stay.

    None when there are no names (keypoints then keep their order).
    """
    if not names:
        return None
    index = {name: i for i, name in enumerate(names)}
    out = []
    for name in names:
        swapped = name
        for a, b in (("left", "right"), ("right", "left"), ("Left", "Right"), ("Right", "Left")):
            if a in name:
                swapped = name.replace(a, b)
                break
        out.append(index.get(swapped, index[name]))
    return out


def category_ids(dataset: Any) -> List[int]:
    """The dataset's integer category id of each label (index 0: 0), for COCO results."""
    mapping: Dict[int, Any] = dataset.label_to_category_id
    n = len(dataset.categories)
    if all(isinstance(mapping.get(label), int) for label in range(1, n)):
        return [0] + [int(mapping[label]) for label in range(1, n)]
    return list(range(n))
