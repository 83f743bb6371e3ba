"""A generated "machine parts" dataset for the time-to-accuracy benchmark (not the demo's shapes).

Washers (rings), bolts (a hexagonal head on a shank, any orientation) and gears (a toothed disc
with a bore) lie on a textured workbench: wood-like stripes, uneven light, stains, scratches and
distractor blobs, with soft shadows under the parts and sensor noise on top. Parts are 14-56 px
on 160 px images by default and may overlap (IoU up to 0.2), so the task is small-object
detection with clutter rather than the demo's clean shapes. Written as COCO JSON + PNG, the same
seed giving byte-identical files.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, List, Mapping, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from torchdet.data.image_io import PathLike

__all__ = ["PART_CLASSES", "make_parts_dataset"]

PART_CLASSES = ("washer", "bolt", "gear")


def _bench(rng: np.random.Generator, size: int) -> np.ndarray:
    """Wood-like stripes under uneven light, float [H, W, 3] in 0..255."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = rng.uniform(0, math.pi)
    u = xs * math.cos(angle) + ys * math.sin(angle)
    grain = np.sin(u / rng.uniform(2.0, 6.0) + 3 * np.sin(u / rng.uniform(15, 40))) * 0.5 + 0.5
    base, dark = rng.uniform(90, 200, size=3), rng.uniform(20, 80, size=3)
    image = base - dark * grain[..., None]
    light = 0.6 + 0.5 * np.exp(-(((xs - rng.uniform(0, size)) ** 2 + (ys - rng.uniform(0, size)) ** 2)
                                 / (2 * (size * rng.uniform(0.3, 0.8)) ** 2)))
    return image * light[..., None]


def _part_polygon(kind: str, center: np.ndarray, radius: float, angle: float) -> List[List[Tuple[float, float]]]:
    """Outer polygon(s) of a part; a second polygon is a hole (drawn in the background colour)."""
    def ring(r: float, n: int, phase: float = 0.0) -> List[Tuple[float, float]]:
        return [(center[0] + r * math.cos(phase + 2 * math.pi * k / n), center[1] + r * math.sin(phase + 2 * math.pi * k / n))
                for k in range(n)]

    if kind == "washer":
        return [ring(radius, 32), ring(radius * 0.45, 24)]
    if kind == "gear":
        teeth = 8 + int(radius) % 5
        outline = []
        for k in range(teeth * 2):
            r = radius if k % 2 == 0 else radius * 0.78
            for j in range(2):
                a = angle + math.pi * (k + j * 0.6) / teeth
                outline.append((center[0] + r * math.cos(a), center[1] + r * math.sin(a)))
        return [outline, ring(radius * 0.25, 12)]
    # bolt: hexagonal head at one end of a shank of width radius/3 and length 2 * radius
    direction = np.array([math.cos(angle), math.sin(angle)])
    normal = np.array([-direction[1], direction[0]])
    head_center = center - direction * radius * 0.65
    head = [tuple(head_center + radius * 0.38 * (math.cos(a) * direction + math.sin(a) * normal))
            for a in (angle * 0 + 2 * math.pi * k / 6 for k in range(6))]
    tip = center + direction * radius
    half = radius * 0.16
    shank = [tuple(head_center + normal * half), tuple(tip + normal * half), tuple(tip - normal * half),
             tuple(head_center - normal * half)]
    return [shank + head[::-1]]


def _render(rng: np.random.Generator, size: int, parts: Tuple[int, int], radii: Tuple[float, float]
            ) -> Tuple[Image.Image, List[dict]]:
    background = _bench(rng, size)
    canvas = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(3, 9))):  # stains and distractor blobs
        r = rng.uniform(3, 14)
        x, y = rng.uniform(0, size, size=2)
        draw.ellipse([x - r, y - r * rng.uniform(0.4, 1), x + r, y + r], fill=tuple(int(c) for c in rng.uniform(30, 220, 3)))
    for _ in range(int(rng.integers(2, 6))):  # scratches
        (x1, x2), (y1, y2) = rng.uniform(0, size, size=2), rng.uniform(0, size, size=2)
        draw.line([(x1, y1), (x2, y2)], fill=tuple(int(c) for c in rng.uniform(60, 240, 3)), width=1)

    objects: List[dict] = []
    boxes = np.zeros((0, 4))
    for _ in range(int(rng.integers(parts[0], parts[1] + 1))):
        for _attempt in range(30):
            kind = int(rng.integers(len(PART_CLASSES)))
            radius = float(rng.uniform(*radii))
            center = rng.uniform(radius * 0.6, size - radius * 0.6, size=2)
            polygons = _part_polygon(PART_CLASSES[kind], center, radius, float(rng.uniform(0, 2 * math.pi)))
            points = np.asarray(polygons[0])
            box = np.concatenate([points.min(axis=0).clip(0, size), points.max(axis=0).clip(0, size)])
            if box[2] - box[0] < 4 or box[3] - box[1] < 4:
                continue
            ious = _iou(box, boxes)
            if (ious <= 0.2).all():
                break
        else:
            continue
        shadow = Image.new("L", (size, size), 0)
        ImageDraw.Draw(shadow).polygon([(x + 2, y + 2) for x, y in polygons[0]], fill=90)
        canvas.paste((0, 0, 0), mask=shadow.filter(ImageFilter.GaussianBlur(2)))
        metal = rng.uniform(110, 240)
        tint = np.clip(metal + rng.normal(0, 25, size=3), 0, 255).astype(int)
        draw = ImageDraw.Draw(canvas)
        draw.polygon(polygons[0], fill=tuple(tint), outline=tuple((tint * 0.6).astype(int)))
        if len(polygons) > 1:
            hole_center = np.asarray(polygons[1]).mean(axis=0).astype(int).clip(0, size - 1)
            draw.polygon(polygons[1], fill=tuple(np.clip(background[hole_center[1], hole_center[0]], 0, 255).astype(int)))
        boxes = np.concatenate([boxes, box[None]])
        objects.append({"class_index": kind, "box": box})
    pixels = np.asarray(canvas, dtype=np.float32) + rng.normal(0, 8, size=(size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), objects


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    if not len(boxes):
        return np.zeros(0)
    lt, rb = np.maximum(box[:2], boxes[:, :2]), np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / (area(box) + area(boxes) - inter)


def make_parts_dataset(out_dir: PathLike, splits: Mapping[str, int] = (("train", 240), ("val", 60)), *,
                       image_size: int = 160, seed: int = 0, parts_per_image: Tuple[int, int] = (1, 6),
                       radius: Tuple[float, float] = (7.0, 28.0)) -> Dict[str, Path]:
    """Write ``out_dir/<split>/`` images and ``_annotations.coco.json`` per split; return ``{split: json}``.

    Args:
        splits: ``{split: number of images}`` (default 240 train, 60 val).
        image_size: side of the square images.
        parts_per_image: inclusive (min, max) number of parts placed per image.
        radius: (min, max) part radius in pixels (a part's box is about twice its radius).
    """
    splits = dict(splits)
    if not splits or any(n < 1 for n in splits.values()):
        raise ValueError(f"splits={splits!r}; expected a mapping split -> positive number of images")
    out_dir = Path(out_dir)
    files = {}
    categories = [{"id": k + 1, "name": name, "supercategory": "part"} for k, name in enumerate(PART_CLASSES)]
    for split_index, (split, count) in enumerate(splits.items()):
        rng = np.random.default_rng([seed, split_index])
        folder = out_dir / split
        folder.mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for image_id in range(1, count + 1):
            image, objects = _render(rng, image_size, parts_per_image, radius)
            name = f"{image_id:06d}.png"
            image.save(folder / name)
            images.append({"id": image_id, "file_name": name, "width": image_size, "height": image_size})
            for obj in objects:
                x1, y1, x2, y2 = (round(float(v), 2) for v in obj["box"])
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": obj["class_index"] + 1,
                                    "bbox": [x1, y1, round(x2 - x1, 2), round(y2 - y1, 2)],
                                    "area": round((x2 - x1) * (y2 - y1), 2), "iscrowd": 0})
        path = folder / "_annotations.coco.json"
        path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
        files[split] = path
    return files
