"""Pascal VOC detection datasets: one XML file per image.

Two layouts are read:

- the VOCdevkit layout, ``root = VOCdevkit/VOC2012`` (or a folder holding ``VOCdevkit/VOC20xx``)
  with ``Annotations/*.xml``, ``JPEGImages/*.jpg`` and ``ImageSets/Main/<split>.txt``;
- a flat folder of ``*.xml`` files with their images beside them (labelImg / CVAT exports), or
  in ``images_dir``.

VOC boxes are 1-based inclusive pixel indices; they are converted to continuous xyxy pixels as
``[xmin - 1, ymin - 1, xmax, ymax]`` (so ``xmin=1, xmax=W`` covers the whole image) and clipped to
the image. The class name is the category's own id: ``label_to_category_id`` maps labels to names.
Only boxes are read (no instance masks).
"""

from __future__ import annotations

import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch

from torchdet.data.base import DetectionDataset, ImageRecord, RawBox, Target, Transforms
from torchdet.data.image_io import IMAGE_SUFFIXES, PathLike

#: The 20 Pascal VOC classes, in the usual order (labels 1..20).
VOC_CLASSES: tuple = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


def _find_devkit_root(root: Path) -> Optional[Path]:
    """The folder holding ``Annotations/``: ``root`` itself or its single ``VOCdevkit/VOC20xx``."""
    if (root / "Annotations").is_dir():
        return root
    devkit = root / "VOCdevkit"
    if devkit.is_dir():
        years = sorted(path for path in devkit.iterdir() if (path / "Annotations").is_dir())
        if len(years) == 1:
            return years[0]
        if len(years) > 1:
            raise ValueError(
                f"'{devkit}' holds several VOC sets {[path.name for path in years]}; pass root='{years[-1]}' "
                "(or another of them) to pick one"
            )
    return None


def parse_voc_xml(path: Path) -> Dict[str, Any]:
    """Read one VOC annotation: ``{"filename", "width", "height", "objects": [{"name", "difficult", "bbox"}]}``.

    ``bbox`` is ``[xmin - 1, ymin - 1, xmax, ymax]`` in continuous pixels (see the module doc).
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as error:
        raise ValueError(f"'{path}' is not a valid Pascal VOC XML file ({error})") from error
    if root.tag != "annotation":
        raise ValueError(f"'{path}' is not a Pascal VOC annotation: its root element is <{root.tag}>, not <annotation>")
    size = root.find("size")
    width = height = None
    if size is not None and size.findtext("width") and size.findtext("height"):
        width, height = int(float(size.findtext("width"))), int(float(size.findtext("height")))
        if width <= 0 or height <= 0:  # some exporters write 0 when unknown
            width = height = None
    objects = []
    for position, obj in enumerate(root.iter("object")):
        name = (obj.findtext("name") or "").strip()
        box = obj.find("bndbox")
        if not name or box is None:
            raise ValueError(f"'{path}': <object> {position} has no <name> or no <bndbox>")
        try:
            xmin, ymin, xmax, ymax = (float(box.findtext(tag)) for tag in ("xmin", "ymin", "xmax", "ymax"))
        except (TypeError, ValueError) as error:
            raise ValueError(f"'{path}': <object> {position} ('{name}') has a <bndbox> without numeric xmin/ymin/xmax/ymax") from error
        difficult = (obj.findtext("difficult") or "0").strip()
        objects.append({"name": name, "difficult": difficult not in ("0", "", "false", "False"), "bbox": [xmin - 1, ymin - 1, xmax, ymax]})
    return {"filename": (root.findtext("filename") or "").strip(), "width": width, "height": height, "objects": objects}


def _find_image(images_dir: Path, filename: str, stem: str) -> Path:
    """The image of an annotation: ``<filename>`` if present there, else ``<stem>.<image suffix>``."""
    if filename and (images_dir / filename).is_file():
        return images_dir / filename
    for suffix in IMAGE_SUFFIXES + tuple(s.upper() for s in IMAGE_SUFFIXES):
        candidate = images_dir / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return images_dir / (filename or f"{stem}.jpg")  # missing: reported when loaded


class VOCDetection(DetectionDataset):
    """A Pascal VOC detection dataset yielding ``(image [3, H, W] float in 0..1, target)``.

    Target keys: ``boxes`` float32 [N, 4], ``labels`` int64 [N], ``image_id`` (1-based position in
    the split), ``area`` float32 [N], ``iscrowd`` int64 [N] (zeros), ``difficult`` bool [N].

    Args:
        root: a VOCdevkit year folder, a folder holding ``VOCdevkit/``, or a flat folder of XML files.
        image_set: devkit split (``"train"``, ``"val"``, ``"trainval"``, ``"test"``) read from
            ``ImageSets/Main/<image_set>.txt``; None takes every XML file.
        transforms: callable ``(image, target) -> (image, target)``.
        categories: class names (labels 1..C in this order); default :data:`VOC_CLASSES`.
        keep_difficult: keep objects flagged ``<difficult>1</difficult>`` in the targets (they are
            left out by default, as VOC evaluation ignores them).
        images_dir: where the images are; default ``JPEGImages/`` (devkit) or ``root`` (flat).
        skip_bad_images: skip missing/corrupt images instead of raising.
    """

    def __init__(
        self,
        root: PathLike,
        image_set: Optional[str] = None,
        transforms: Optional[Transforms] = None,
        *,
        categories: Optional[Sequence[str]] = None,
        keep_difficult: bool = False,
        images_dir: Optional[PathLike] = None,
        skip_bad_images: bool = False,
    ) -> None:
        super().__init__(transforms, skip_bad_images)
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"VOC root folder not found: '{root}'")
        self.keep_difficult = keep_difficult
        names = list(VOC_CLASSES if categories is None else categories)
        if len(set(names)) != len(names) or not names:
            raise ValueError(f"categories={names!r}; expected a non-empty list of distinct names")
        self.categories = ["__background__"] + names
        self.label_to_category_id = {label: name for label, name in enumerate(names, start=1)}
        self._name_to_label = {name: label for label, name in self.label_to_category_id.items()}

        xml_files = self._list_annotations(root, image_set)
        default_images = self.root / "JPEGImages" if self.devkit else root
        self.images_dir = Path(images_dir) if images_dir is not None else default_images
        self._objects: Dict[int, List[Dict[str, Any]]] = {}
        self.records = []
        dropped = 0
        for image_id, xml_file in enumerate(xml_files, start=1):
            parsed = parse_voc_xml(xml_file)
            for obj in parsed["objects"]:
                if obj["name"] not in self._name_to_label:
                    raise ValueError(
                        f"'{xml_file}' has an object named '{obj['name']}', which is not a known category "
                        f"({names}); pass categories=[...] listing every class name"
                    )
                box = obj["bbox"]
                if obj["difficult"] and not keep_difficult:
                    continue
                if min(box[2], parsed["width"] or box[2]) <= max(box[0], 0) or min(box[3], parsed["height"] or box[3]) <= max(box[1], 0):
                    dropped += 1
            self._objects[image_id] = parsed["objects"]
            path = _find_image(self.images_dir, parsed["filename"], xml_file.stem)
            self.records.append(
                ImageRecord(image_id, path, path.name, parsed["width"], parsed["height"], extra={"voc_id": xml_file.stem})
            )
        if dropped:
            warnings.warn(
                f"VOC folder '{root}': {dropped} object(s) have a box of zero width or height after clipping "
                "to the image; they are dropped from the targets",
                stacklevel=2,
            )
        self._finish_init(f"VOC folder '{root}'" + (f" (image set '{image_set}')" if image_set else ""))

    def _list_annotations(self, root: Path, image_set: Optional[str]) -> List[Path]:
        """The XML files of the dataset, in split-file order (devkit) or sorted by name (flat)."""
        devkit_root = _find_devkit_root(root)
        self.devkit = devkit_root is not None
        self.root = devkit_root or root
        if devkit_root is None:
            if image_set is not None:
                raise ValueError(
                    f"image_set='{image_set}' needs the VOCdevkit layout (ImageSets/Main/{image_set}.txt), "
                    f"but '{root}' has no Annotations/ folder; leave image_set=None for a flat folder of XML files"
                )
            return sorted(root.glob("*.xml"))
        annotations = devkit_root / "Annotations"
        if image_set is None:
            return sorted(annotations.glob("*.xml"))
        split_file = devkit_root / "ImageSets" / "Main" / f"{image_set}.txt"
        if not split_file.is_file():
            available = sorted(path.stem for path in (devkit_root / "ImageSets" / "Main").glob("*.txt") if "_" not in path.stem)
            raise FileNotFoundError(f"VOC split file not found: '{split_file}'; available image sets: {available}")
        ids = [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]
        missing = [voc_id for voc_id in ids if not (annotations / f"{voc_id}.xml").is_file()]
        if missing:
            raise FileNotFoundError(
                f"'{split_file}' lists {len(missing)} image(s) without an annotation file in '{annotations}' "
                f"(first: '{missing[0]}.xml')"
            )
        return [annotations / f"{voc_id}.xml" for voc_id in ids]

    def raw_boxes(self, idx: int) -> List[RawBox]:
        """The XML's objects (``difficult`` ones only with ``keep_difficult``), in continuous pixels."""
        record = self.records[idx]
        objects = self._objects[record.image_id]
        return [RawBox(tuple(obj["bbox"]), self._name_to_label[obj["name"]],
                       f"'{record.extra['voc_id']}.xml' object {k + 1}")
                for k, obj in enumerate(objects) if self.keep_difficult or not obj["difficult"]]

    def load_target(self, idx: int, height: int, width: int) -> Target:
        """Build the target of image ``idx`` decoded at ``height`` x ``width`` (see class doc)."""
        record = self.records[idx]
        objects = [obj for obj in self._objects[record.image_id] if self.keep_difficult or not obj["difficult"]]
        boxes = torch.tensor([obj["bbox"] for obj in objects], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        objects = [obj for obj, kept in zip(objects, keep.tolist()) if kept]
        boxes = boxes[keep]
        return {
            "boxes": boxes,
            "labels": torch.tensor([self._name_to_label[obj["name"]] for obj in objects], dtype=torch.int64),
            "image_id": record.image_id,
            "area": (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]),
            "iscrowd": torch.zeros(len(objects), dtype=torch.int64),
            "difficult": torch.tensor([obj["difficult"] for obj in objects], dtype=torch.bool),
        }
