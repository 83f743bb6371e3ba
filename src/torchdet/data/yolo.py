"""YOLO (Ultralytics / darknet) detection datasets: one ``.txt`` label file per image.

Each label line is ``class cx cy w h`` with coordinates normalised to 0..1 by the image size
(a YOLO-seg line ``class x1 y1 x2 y2 ...`` is read as the box around its polygon). The label of
``images/train/a.jpg`` is ``labels/train/a.txt``: the last ``images`` folder of the path becomes
``labels`` (the Ultralytics layout). An image without a label file has no objects.

Class names come from a list, a ``{index: name}`` dict, or a ``data.yaml`` whose ``names:`` is
either. PyYAML is used when installed; otherwise the small parser here reads the subset of YAML
that ``data.yaml`` files use (scalars, block and flow lists and mappings, comments).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import torch

from torchdet.data.base import DetectionDataset, ImageRecord, RawBox, Target, Transforms
from torchdet.data.image_io import IMAGE_SUFFIXES, PathLike

Names = Union[Sequence[str], Mapping[int, str], PathLike]


# -- data.yaml ----------------------------------------------------------------------------------


def _strip_comment(line: str) -> str:
    """Drop a ``# comment`` that is not inside quotes."""
    quote = None
    for position, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and (position == 0 or line[position - 1].isspace()):
            return line[:position].rstrip()
    return line.rstrip()


def _scalar(text: str) -> Any:
    """A YAML scalar: quoted string, int, float, bool/null, or plain string."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if text.lower() in ("null", "~", ""):
        return None
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def _split_flow(body: str) -> List[str]:
    """Split the inside of ``[...]`` / ``{...}`` at top-level commas (quotes respected)."""
    items, current, quote = [], "", None
    for char in body:
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == ",":
            items.append(current)
            current = ""
            continue
        current += char
    if current.strip():
        items.append(current)
    return [item.strip() for item in items if item.strip()]


def _flow_value(text: str) -> Any:
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        return [_scalar(item) for item in _split_flow(text[1:-1])]
    if text.startswith("{") and text.endswith("}"):
        pairs = (item.split(":", 1) for item in _split_flow(text[1:-1]))
        return {_scalar(key): _scalar(value) for key, value in pairs}
    return _scalar(text)


def parse_simple_yaml(text: str) -> Dict[str, Any]:
    """Parse the YAML subset of ``data.yaml`` files into a dict.

    Top-level ``key: value`` pairs where the value is a scalar, a flow list/mapping
    (``[a, b]``, ``{0: a}``), or an indented block of ``- item`` or ``key: value`` lines.
    Uses PyYAML's ``safe_load`` instead when it is installed.
    """
    try:
        import yaml  # type: ignore[import-not-found]
    except ImportError:
        yaml = None
    if yaml is None:
        return parse_yaml_subset(text)
    loaded = yaml.safe_load(text)
    if not isinstance(loaded, dict):
        raise ValueError("the YAML document is not a mapping of keys to values")
    return loaded


def parse_yaml_subset(text: str) -> Dict[str, Any]:
    """`parse_simple_yaml` without PyYAML: the subset it describes, errors naming the line."""
    result: Dict[str, Any] = {}
    current_key: Optional[str] = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _strip_comment(raw)
        if not line.strip() or line.strip() in ("---", "..."):
            continue
        indented = line[0].isspace()
        stripped = line.strip()
        if not indented:
            if ":" not in stripped:
                raise ValueError(f"YAML line {number}: expected 'key: value', got {raw!r}")
            key, value = stripped.split(":", 1)
            current_key = key.strip().strip("'\"")
            result[current_key] = _flow_value(value) if value.strip() else None
            continue
        if current_key is None:
            raise ValueError(f"YAML line {number}: indented line without a parent key: {raw!r}")
        block = result[current_key]
        if stripped.startswith("- ") or stripped == "-":
            if block is None:
                block = result[current_key] = []
            if not isinstance(block, list):
                raise ValueError(f"YAML line {number}: a list item under '{current_key}', which is not a list")
            block.append(_scalar(stripped[1:]))
        elif ":" in stripped:
            if block is None:
                block = result[current_key] = {}
            if not isinstance(block, dict):
                raise ValueError(f"YAML line {number}: a 'key: value' under '{current_key}', which is not a mapping")
            key, value = stripped.split(":", 1)
            block[_scalar(key)] = _flow_value(value)
        else:
            raise ValueError(f"YAML line {number}: cannot parse {raw!r}")
    return result


def names_to_list(names: Any, source: str = "names") -> List[str]:
    """Class names from a list or a ``{index: name}`` mapping (indices must be 0..C-1)."""
    if isinstance(names, Mapping):
        try:
            indexed = {int(index): str(name) for index, name in names.items()}
        except (TypeError, ValueError) as error:
            raise ValueError(f"{source}: mapping keys must be class indices 0..C-1; got {list(names)}") from error
        if sorted(indexed) != list(range(len(indexed))):
            raise ValueError(f"{source}: class indices must be 0..{len(indexed) - 1}; got {sorted(indexed)}")
        return [indexed[index] for index in range(len(indexed))]
    if isinstance(names, (list, tuple)) and names:
        return [str(name) for name in names]
    raise ValueError(f"{source}: expected a non-empty list of class names or an {{index: name}} mapping; got {names!r}")


def load_data_yaml(path: PathLike) -> Dict[str, Any]:
    """Read an Ultralytics ``data.yaml``; ``names`` in the result is always a list."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data.yaml not found: '{path}'")
    try:
        data = parse_simple_yaml(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValueError(f"cannot parse '{path}': {error}") from error
    if "names" not in data:
        raise ValueError(f"'{path}' has no 'names:' entry; a YOLO data.yaml lists its classes as names: [a, b, ...]")
    data["names"] = names_to_list(data["names"], source=f"'{path}' names")
    return data


# -- dataset ------------------------------------------------------------------------------------


def default_labels_dir(images_dir: Path) -> Path:
    """The Ultralytics label folder: the last ``images`` component of ``images_dir`` becomes ``labels``."""
    parts = list(images_dir.parts)
    for position in range(len(parts) - 1, -1, -1):
        if parts[position] == "images":
            parts[position] = "labels"
            return Path(*parts)
    raise ValueError(
        f"cannot infer the labels folder of '{images_dir}': no 'images' folder in the path "
        "(the Ultralytics layout is .../images/<split> beside .../labels/<split>); pass labels_dir="
    )


def parse_yolo_label_file(path: Path, num_classes: int) -> torch.Tensor:
    """Read a label file into float32 [M, 5]: ``class, x1, y1, x2, y2`` normalised to 0..1."""
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        values = line.split()
        if not values:
            continue
        where = f"'{path}' line {number}"
        try:
            numbers = [float(value) for value in values]
        except ValueError as error:
            raise ValueError(f"{where}: expected numbers 'class cx cy w h', got {line!r}") from error
        class_index = numbers[0]
        if class_index != int(class_index) or not 0 <= class_index < num_classes:
            raise ValueError(f"{where}: class {values[0]} is not an index in 0..{num_classes - 1} (the names list has {num_classes})")
        coords = numbers[1:]
        if len(coords) == 4:
            cx, cy, w, h = coords
            if w < 0 or h < 0:
                raise ValueError(f"{where}: negative width or height in {line!r}")
            box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
        elif len(coords) >= 6 and len(coords) % 2 == 0:  # YOLO-seg polygon
            xs, ys = coords[0::2], coords[1::2]
            box = [min(xs), min(ys), max(xs), max(ys)]
        else:
            raise ValueError(f"{where}: expected 'class cx cy w h' (5 values), got {len(values)} values: {line!r}")
        if min(box) < -0.01 or max(box) > 1.01:
            raise ValueError(
                f"{where}: coordinates {coords} run outside 0..1; YOLO labels are normalised by the image "
                "width and height"
            )
        rows.append([class_index] + box)
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 5)


class YOLODetection(DetectionDataset):
    """A YOLO-format detection dataset yielding ``(image [3, H, W] float in 0..1, target)``.

    Target keys: ``boxes`` float32 [N, 4] xyxy pixels, ``labels`` int64 [N] (YOLO class + 1),
    ``image_id`` (1-based position, images sorted by path), ``area`` float32 [N], ``iscrowd``
    int64 [N] (zeros). ``label_to_category_id`` maps label -> YOLO class index.

    Args:
        images_dir: folder of images (searched recursively).
        labels_dir: folder of ``.txt`` labels mirroring ``images_dir``; default from the
            Ultralytics layout (see :func:`default_labels_dir`).
        names: class names as a list, an ``{index: name}`` dict, or the path of a ``data.yaml``;
            default ``classes.txt`` (one name a line) in ``labels_dir`` if there is one.
        transforms: callable ``(image, target) -> (image, target)``.
        skip_bad_images: skip missing/corrupt images instead of raising.
    """

    def __init__(
        self,
        images_dir: PathLike,
        labels_dir: Optional[PathLike] = None,
        names: Optional[Names] = None,
        transforms: Optional[Transforms] = None,
        *,
        skip_bad_images: bool = False,
    ) -> None:
        super().__init__(transforms, skip_bad_images)
        self.images_dir = Path(images_dir)
        if not self.images_dir.is_dir():
            raise FileNotFoundError(f"YOLO images folder not found: '{self.images_dir}'")
        self.labels_dir = Path(labels_dir) if labels_dir is not None else default_labels_dir(self.images_dir)
        if not self.labels_dir.is_dir():
            raise FileNotFoundError(f"YOLO labels folder not found: '{self.labels_dir}' (pass labels_dir=)")
        class_names = self._resolve_names(names)
        self.categories = ["__background__"] + class_names
        self.label_to_category_id = {index + 1: index for index in range(len(class_names))}

        image_paths = sorted(
            path for path in self.images_dir.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
        )
        self._labels: Dict[int, torch.Tensor] = {}
        self.records = []
        labelled, dropped = 0, 0
        for image_id, image_path in enumerate(image_paths, start=1):
            relative = image_path.relative_to(self.images_dir)
            label_file = (self.labels_dir / relative).with_suffix(".txt")
            rows = torch.zeros((0, 5))
            if label_file.is_file():
                labelled += 1
                rows = parse_yolo_label_file(label_file, len(class_names))
                clipped = rows[:, 1:].clamp(0, 1)
                dropped += int(((clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1])).sum())
            self._labels[image_id] = rows
            self.records.append(ImageRecord(image_id, image_path, str(relative)))
        if image_paths and labelled == 0:
            raise ValueError(
                f"none of the {len(image_paths)} images in '{self.images_dir}' has a label file in "
                f"'{self.labels_dir}' (expected e.g. '{(self.labels_dir / image_paths[0].relative_to(self.images_dir)).with_suffix('.txt')}')"
            )
        if dropped:
            warnings.warn(
                f"YOLO labels in '{self.labels_dir}': {dropped} box(es) have zero width or height after "
                "clipping to the image; they are dropped from the targets",
                stacklevel=2,
            )
        self._finish_init(f"YOLO images folder '{self.images_dir}'")

    @classmethod
    def from_data_yaml(
        cls, data_yaml: PathLike, split: str = "train", transforms: Optional[Transforms] = None, **kwargs: Any
    ) -> "YOLODetection":
        """Build the ``split`` (``train``/``val``/``test``) of an Ultralytics ``data.yaml``.

        The split's folder is resolved against the yaml's ``path:`` (relative to the yaml's own
        folder) or the yaml's folder; a Roboflow-style ``../train/images`` is also tried without
        its leading ``../``.
        """
        data_yaml = Path(data_yaml)
        data = load_data_yaml(data_yaml)
        if not isinstance(data.get(split), str):
            raise ValueError(f"'{data_yaml}' has no '{split}:' folder (keys: {sorted(data)})")
        base = data_yaml.parent / str(data.get("path") or "")
        relative = Path(data[split])
        candidates = [relative] if relative.is_absolute() else [base / relative, data_yaml.parent / relative]
        stripped = Path(*[part for part in relative.parts if part != ".."]) if not relative.is_absolute() else relative
        candidates += [base / stripped, data_yaml.parent / stripped]
        for candidate in candidates:
            if candidate.is_dir():
                return cls(candidate, names=data["names"], transforms=transforms, **kwargs)
        raise FileNotFoundError(
            f"'{data_yaml}': the '{split}' folder '{data[split]}' was not found (tried {[str(c) for c in candidates]})"
        )

    def _resolve_names(self, names: Optional[Names]) -> List[str]:
        if names is None:
            classes_txt = self.labels_dir / "classes.txt"
            if classes_txt.is_file():
                return [line.strip() for line in classes_txt.read_text().splitlines() if line.strip()]
            raise ValueError(
                "YOLODetection needs the class names: pass names=['cat', 'dog', ...], "
                "names={0: 'cat', ...} or names='path/to/data.yaml'"
            )
        if isinstance(names, (str, Path)):
            return load_data_yaml(names)["names"]
        return names_to_list(names)

    def label_file(self, idx: int) -> Path:
        """The ``.txt`` label file of image ``idx`` (it may not exist: an image without objects)."""
        return (self.labels_dir / Path(self.records[idx].file_name)).with_suffix(".txt")

    def raw_boxes(self, idx: int) -> List[RawBox]:
        """The label file's boxes in pixels (the image header gives the size), unclipped."""
        info = self.image_info(idx)
        width, height = float(info["width"]), float(info["height"])
        rows = self._labels[self.records[idx].image_id].tolist()
        name = self.label_file(idx).name
        return [RawBox((x1 * width, y1 * height, x2 * width, y2 * height), int(c) + 1, f"'{name}' box {k + 1}")
                for k, (c, x1, y1, x2, y2) in enumerate(rows)]

    def load_target(self, idx: int, height: int, width: int) -> Target:
        """Build the target of image ``idx`` decoded at ``height`` x ``width`` (see class doc)."""
        record = self.records[idx]
        record.height, record.width = height, width
        rows = self._labels[record.image_id]
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        boxes = rows[:, 1:].clamp(0, 1) * scale
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, classes = boxes[keep], rows[keep, 0]
        return {
            "boxes": boxes,
            "labels": classes.to(torch.int64) + 1,
            "image_id": record.image_id,
            "area": (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]),
            "iscrowd": torch.zeros(len(boxes), dtype=torch.int64),
        }
