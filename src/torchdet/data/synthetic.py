"""A generated "shapes" dataset in COCO format: the demo's and the tests' default data.

Each image holds 1 to a few filled shapes (circle, square, triangle, star, cross) with random
sizes, rotations and colours, allowed to overlap a little, over a noisy gradient background with
clutter lines. Every shape is annotated with its box, its polygon (COCO polygon segmentation) and
5 keypoints: the centre and the top-, right-, bottom- and left-most points of the shape
(visibility 2, or 1 where a later shape covers the point). The files follow the export layout::

    out_dir/train/_annotations.coco.json   out_dir/train/000001.png ...
    out_dir/val/_annotations.coco.json     out_dir/val/000001.png ...

so ``CocoDetection(out_dir / "train" / "_annotations.coco.json")`` reads a split directly.
Generation is deterministic for a seed and fast (about 100 small images per second or two).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, List, Mapping, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw

from torchdet.data.image_io import PathLike

#: Class names, in category-id order (ids 1..5).
SHAPE_CLASSES: Tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")
#: Keypoint names, the same K = 5 for every class.
SHAPES_KEYPOINT_NAMES: Tuple[str, ...] = ("center", "top", "right", "bottom", "left")
#: Keypoint order after a horizontal flip (right and left swap).
SHAPES_KEYPOINT_FLIP_INDICES: Tuple[int, ...] = (0, 1, 4, 3, 2)
#: Skeleton as 0-based keypoint index pairs (centre to each extreme point, and the outer ring).
SHAPES_SKELETON: Tuple[Tuple[int, int], ...] = ((0, 1), (0, 2), (0, 3), (0, 4), (1, 2), (2, 3), (3, 4), (4, 1))

ANNOTATION_FILE_NAME = "_annotations.coco.json"

ImageSize = Union[int, Tuple[int, int], Tuple[Tuple[int, int], Tuple[int, int]]]


def _unit_polygon(shape: str) -> np.ndarray:
    """Vertices [V, 2] of ``shape`` centred at 0 with circumradius 1 (y down)."""
    if shape == "circle":
        angles = np.arange(32) * (2 * math.pi / 32)
        return np.stack([np.cos(angles), np.sin(angles)], axis=1)
    if shape == "square":
        angles = math.pi / 4 + np.arange(4) * (math.pi / 2)
        return np.stack([np.cos(angles), np.sin(angles)], axis=1)
    if shape == "triangle":
        angles = -math.pi / 2 + np.arange(3) * (2 * math.pi / 3)
        return np.stack([np.cos(angles), np.sin(angles)], axis=1)
    if shape == "star":
        angles = -math.pi / 2 + np.arange(10) * (math.pi / 5)
        radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    if shape == "cross":
        a, b = 0.3, 1.0
        return np.array(
            [[-a, -b], [a, -b], [a, -a], [b, -a], [b, a], [a, a], [a, b], [-a, b], [-a, a], [-b, a], [-b, -a], [-a, -a]]
        )
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPE_CLASSES}")


def _place_polygon(shape: str, center: np.ndarray, radius: float, angle: float) -> np.ndarray:
    """The vertices [V, 2] of ``shape`` rotated by ``angle``, scaled by ``radius``, at ``center``."""
    cos, sin = math.cos(angle), math.sin(angle)
    rotation = np.array([[cos, -sin], [sin, cos]])
    return _unit_polygon(shape) @ rotation.T * radius + center


def _extreme_keypoints(polygon: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Centre, top-, right-, bottom-, left-most vertices of ``polygon``: [5, 2]."""
    return np.stack(
        [
            center,
            polygon[np.argmin(polygon[:, 1])],
            polygon[np.argmax(polygon[:, 0])],
            polygon[np.argmax(polygon[:, 1])],
            polygon[np.argmin(polygon[:, 0])],
        ]
    )


def _points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd rule: which of ``points`` [P, 2] lie inside ``polygon`` [V, 2] -> bool [P]."""
    x, y = points[:, 0:1], points[:, 1:2]
    x1, y1 = polygon[:, 0], polygon[:, 1]
    x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
    crosses = (y1 > y) != (y2 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_cross = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
    return ((crosses & (x < x_cross)).sum(axis=1) % 2) == 1


def _polygon_area(polygon: np.ndarray) -> float:
    x, y = polygon[:, 0], polygon[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy ``box`` [4] with ``boxes`` [M, 4] -> [M]."""
    if len(boxes) == 0:
        return np.zeros(0)
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return inter / (area + areas - inter)


def _sample_size(rng: np.random.Generator, image_size: ImageSize) -> Tuple[int, int]:
    """(height, width) from an int, an (H, W) pair, or ((min_h, max_h), (min_w, max_w)) ranges."""
    if isinstance(image_size, int):
        return image_size, image_size
    if len(image_size) == 2 and all(isinstance(side, int) for side in image_size):
        return int(image_size[0]), int(image_size[1])
    if len(image_size) == 2 and all(isinstance(side, (tuple, list)) and len(side) == 2 for side in image_size):
        (h_lo, h_hi), (w_lo, w_hi) = image_size
        return int(rng.integers(h_lo, h_hi + 1)), int(rng.integers(w_lo, w_hi + 1))
    raise ValueError(
        f"image_size={image_size!r}; expected an int, (height, width), or ((min_h, max_h), (min_w, max_w))"
    )


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A noisy two-colour gradient, float [H, W, 3] in 0..255."""
    start, end = rng.uniform(0, 255, size=(2, 3))
    direction = rng.uniform(-1, 1, size=2)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    t = xs / max(width - 1, 1) * direction[0] + ys / max(height - 1, 1) * direction[1]
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    image = start + (end - start) * t[..., None]
    return image + rng.normal(0, 10, size=image.shape)


def _distinct_colour(rng: np.random.Generator, local: np.ndarray) -> Tuple[int, int, int]:
    """A random colour far (in L1) from the ``local`` background colour [3]."""
    colour = rng.uniform(0, 255, size=3)
    for _ in range(20):
        if np.abs(colour - local).sum() > 150:
            break
        colour = rng.uniform(0, 255, size=3)
    return tuple(int(c) for c in colour)


def _render_image(
    rng: np.random.Generator,
    height: int,
    width: int,
    shapes_per_image: Tuple[int, int],
    max_overlap: float,
) -> Tuple[Image.Image, List[dict]]:
    """Draw one image; return it and its objects (class index, polygon, keypoints [5, 3])."""
    background = _background(rng, height, width)
    canvas = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(2, 7))):  # clutter lines
        x1, x2 = rng.uniform(0, width, size=2)
        y1, y2 = rng.uniform(0, height, size=2)
        draw.line([(x1, y1), (x2, y2)], fill=tuple(int(c) for c in rng.uniform(0, 255, 3)), width=int(rng.integers(1, 3)))

    short_side = min(height, width)
    objects: List[dict] = []
    boxes = np.zeros((0, 4))
    for _ in range(int(rng.integers(shapes_per_image[0], shapes_per_image[1] + 1))):
        for _attempt in range(20):
            class_index = int(rng.integers(len(SHAPE_CLASSES)))
            radius = float(rng.uniform(0.09, 0.25)) * short_side
            center = np.array([rng.uniform(radius + 1, width - radius - 1), rng.uniform(radius + 1, height - radius - 1)])
            polygon = _place_polygon(SHAPE_CLASSES[class_index], center, radius, float(rng.uniform(0, 2 * math.pi)))
            box = np.concatenate([polygon.min(axis=0), polygon.max(axis=0)])
            if (_box_iou(box, boxes) <= max_overlap).all():
                break
        else:
            continue
        local = background[int(center[1]), int(center[0])]
        draw.polygon([tuple(point) for point in polygon], fill=_distinct_colour(rng, local))
        boxes = np.concatenate([boxes, box[None]])
        keypoints = np.concatenate([_extreme_keypoints(polygon, center), np.full((5, 1), 2.0)], axis=1)
        for earlier in objects:  # this shape now covers some keypoints of earlier shapes
            covered = _points_in_polygon(earlier["keypoints"][:, :2], polygon)
            earlier["keypoints"][covered, 2] = 1.0
        objects.append({"class_index": class_index, "polygon": polygon, "box": box, "keypoints": keypoints})

    pixels = np.asarray(canvas, dtype=np.float32) + rng.normal(0, 6, size=(height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), objects


def _categories() -> List[dict]:
    skeleton = [[a + 1, b + 1] for a, b in SHAPES_SKELETON]
    return [
        {"id": i + 1, "name": name, "supercategory": "shape", "keypoints": list(SHAPES_KEYPOINT_NAMES), "skeleton": skeleton}
        for i, name in enumerate(SHAPE_CLASSES)
    ]


def _split_counts(num_images: Union[int, Mapping[str, int]], val_fraction: float) -> Dict[str, int]:
    if isinstance(num_images, Mapping):
        counts = {str(name): int(count) for name, count in num_images.items()}
    else:
        if num_images < 1:
            raise ValueError(f"num_images={num_images}; expected at least 1")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction={val_fraction}; expected a value in [0, 1)")
        num_val = int(round(num_images * val_fraction))
        if val_fraction > 0 and num_images >= 2:
            num_val = max(num_val, 1)
        counts = {"train": num_images - num_val, "val": num_val}
        counts = {name: count for name, count in counts.items() if count > 0}
    if any(count < 0 for count in counts.values()) or not counts:
        raise ValueError(f"num_images={num_images!r}; expected a positive int or a mapping split -> count")
    return counts


def make_shapes_dataset(
    out_dir: PathLike,
    num_images: Union[int, Mapping[str, int]] = 100,
    *,
    image_size: ImageSize = (128, 128),
    seed: int = 0,
    val_fraction: float = 0.2,
    shapes_per_image: Tuple[int, int] = (1, 4),
    max_overlap: float = 0.3,
    image_format: str = "png",
) -> Dict[str, Path]:
    """Generate the shapes dataset under ``out_dir`` and return ``{split: annotation file}``.

    Args:
        out_dir: created if needed; each split goes to ``out_dir/<split>/``.
        num_images: a total split into ``"train"`` and ``"val"`` by ``val_fraction``, or a mapping
            ``{split name: number of images}`` (e.g. ``{"train": 80, "val": 10, "test": 10}``).
        image_size: ``H`` (square), ``(H, W)``, or ``((min_h, max_h), (min_w, max_w))`` for random sizes.
        seed: the same seed gives byte-identical files.
        shapes_per_image: inclusive (min, max) number of shapes per image (placement may give fewer).
        max_overlap: largest box IoU allowed between two shapes of an image.
        image_format: ``"png"`` (lossless) or ``"jpg"``.
    """
    if image_format not in ("png", "jpg", "jpeg"):
        raise ValueError(f"image_format={image_format!r}; expected 'png' or 'jpg'")
    low, high = shapes_per_image
    if not 0 <= low <= high:
        raise ValueError(f"shapes_per_image={shapes_per_image!r}; expected (min, max) with 0 <= min <= max")
    out_dir = Path(out_dir)
    files: Dict[str, Path] = {}
    for split_index, (split, count) in enumerate(_split_counts(num_images, val_fraction).items()):
        rng = np.random.default_rng([seed, split_index])
        split_dir = out_dir / split
        split_dir.mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for image_index in range(1, count + 1):
            height, width = _sample_size(rng, image_size)
            if min(height, width) < 32:
                raise ValueError(f"image_size gives a {height}x{width} image; both sides must be at least 32")
            picture, objects = _render_image(rng, height, width, (low, high), max_overlap)
            file_name = f"{image_index:06d}.{image_format}"
            picture.save(split_dir / file_name, **({"quality": 95} if image_format != "png" else {}))
            images.append({"id": image_index, "file_name": file_name, "width": width, "height": height})
            for obj in objects:
                x1, y1, x2, y2 = (round(float(v), 2) for v in obj["box"])
                keypoints = obj["keypoints"]
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_index,
                        "category_id": obj["class_index"] + 1,
                        "bbox": [x1, y1, round(x2 - x1, 2), round(y2 - y1, 2)],
                        "area": round(_polygon_area(obj["polygon"]), 2),
                        "iscrowd": 0,
                        "segmentation": [[round(float(v), 2) for v in obj["polygon"].reshape(-1)]],
                        "keypoints": [round(float(v), 2) for v in keypoints.reshape(-1)],
                        "num_keypoints": int((keypoints[:, 2] > 0).sum()),
                    }
                )
        coco = {
            "info": {"description": "torchdet synthetic shapes", "version": "1.0"},
            "licenses": [],
            "images": images,
            "annotations": annotations,
            "categories": _categories(),
        }
        annotation_file = split_dir / ANNOTATION_FILE_NAME
        annotation_file.write_text(json.dumps(coco))
        files[split] = annotation_file
    return files
