"""Drawing boxes, masks and keypoints on image tensors (torchvision.utils-like signatures).

Images are tensors [C, H, W] with C = 1 or 3, either uint8 (0..255) or float (0..1); the result
has 3 channels and the input's dtype. Drawing goes through PIL's ImageDraw (boxes, text, points,
lines) and tensor ops (mask blending).
"""

from __future__ import annotations

import colorsys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image, ImageColor, ImageDraw, ImageFont

Color = Union[str, Tuple[int, int, int]]
Colors = Optional[Union[Color, Sequence[Color]]]

__all__ = [
    "draw_bounding_boxes",
    "draw_segmentation_masks",
    "draw_keypoints",
    "draw_detections",
    "save_image",
    "color_palette",
]


# -- helpers ------------------------------------------------------------------------------------


def color_palette(n: int) -> List[Tuple[int, int, int]]:
    """``n`` distinct, bright RGB colours (hues spaced by the golden ratio); colour i is stable in n."""
    colours = []
    for index in range(n):
        hue = (0.13 + index * 0.618033988749895) % 1.0
        r, g, b = colorsys.hsv_to_rgb(hue, 0.8, 0.95)
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return colours


def _parse_color(color: Any) -> Tuple[int, int, int]:
    if isinstance(color, str):
        try:
            return ImageColor.getrgb(color)[:3]
        except ValueError as error:
            raise ValueError(f"unknown colour {color!r}; use a name ('red'), '#rrggbb' or an (r, g, b) tuple") from error
    if isinstance(color, (tuple, list)) and len(color) == 3 and all(isinstance(c, (int, np.integer)) for c in color):
        if not all(0 <= int(c) <= 255 for c in color):
            raise ValueError(f"colour {tuple(color)} has components outside 0..255")
        return tuple(int(c) for c in color)
    raise ValueError(f"cannot read {color!r} as a colour; use a name ('red'), '#rrggbb' or an (r, g, b) tuple of ints")


def _parse_colors(colors: Colors, n: int) -> List[Tuple[int, int, int]]:
    """One RGB tuple per object from None (palette), one colour, or a list of >= n colours."""
    if colors is None:
        return color_palette(n)
    if isinstance(colors, str) or (
        isinstance(colors, tuple) and len(colors) == 3 and all(isinstance(c, (int, np.integer)) for c in colors)
    ):
        return [_parse_color(colors)] * n
    colors = list(colors)
    if len(colors) < n:
        raise ValueError(f"got {len(colors)} colours for {n} objects; give at least one per object, or a single colour")
    return [_parse_color(color) for color in colors[:n]]


def _check_image(image: Any, name: str = "image") -> Tuple[torch.Tensor, torch.dtype]:
    """Validate ``image`` and return it as uint8 [3, H, W] along with its original dtype."""
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"{name} must be a tensor [C, H, W]; got {type(image).__name__}")
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"{name} must have shape [1 or 3, H, W]; got {tuple(image.shape)}")
    dtype = image.dtype
    if dtype == torch.uint8:
        out = image
    elif image.is_floating_point():
        if image.numel() and (image.min() < 0 or image.max() > 1):
            raise ValueError(f"a float {name} must hold values in 0..1; got {float(image.min()):.3g}..{float(image.max()):.3g}")
        out = (image * 255).round().to(torch.uint8)
    else:
        raise ValueError(f"{name} must be uint8 (0..255) or float (0..1); got dtype {dtype}")
    if out.shape[0] == 1:
        out = out.expand(3, -1, -1)
    return out.detach().cpu().contiguous(), dtype


def _restore_dtype(image: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return image if dtype == torch.uint8 else image.to(dtype) / 255.0


def _to_pil(image: torch.Tensor) -> Image.Image:
    return Image.fromarray(image.permute(1, 2, 0).numpy())


def _from_pil(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image.convert("RGB"), dtype=np.uint8)).permute(2, 0, 1).contiguous()


def _load_font(font: Optional[str], font_size: Optional[int]) -> ImageFont.ImageFont:
    if font is not None:
        return ImageFont.truetype(font, size=font_size or 10)
    if font_size is None:
        return ImageFont.load_default()
    return ImageFont.load_default(size=font_size)


# -- public drawing -----------------------------------------------------------------------------


def draw_bounding_boxes(
    image: torch.Tensor,
    boxes: torch.Tensor,
    labels: Optional[List[str]] = None,
    colors: Colors = None,
    fill: bool = False,
    width: int = 1,
    font: Optional[str] = None,
    font_size: Optional[int] = None,
    *,
    label_background: bool = False,
) -> torch.Tensor:
    """Draw xyxy ``boxes`` [N, 4] (pixels) with optional text ``labels`` on ``image`` [C, H, W].

    Args:
        colors: None (a palette), one colour, or one per box: names, ``"#rrggbb"`` or (r, g, b).
        fill: also fill each box with its colour at ~40% opacity.
        width: outline width in pixels.
        font, font_size: a TrueType file and size; default PIL's built-in font.
        label_background: write labels in black/white on a box-coloured tag (else in the box colour).

    Returns:
        [3, H, W] with the dtype of ``image``.
    """
    canvas, dtype = _check_image(image)
    if not isinstance(boxes, torch.Tensor) or boxes.ndim != 2 or boxes.shape[-1] != 4:
        shape = tuple(boxes.shape) if isinstance(boxes, torch.Tensor) else type(boxes).__name__
        raise ValueError(f"boxes must be a tensor [N, 4] (x1, y1, x2, y2); got {shape}")
    boxes = boxes.detach().cpu().to(torch.float64)
    bad = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if bad.any():
        index = int(bad.nonzero()[0])
        raise ValueError(f"boxes must satisfy x1 <= x2 and y1 <= y2 (xyxy format); box {index} is {boxes[index].tolist()}")
    if labels is not None and len(labels) != len(boxes):
        raise ValueError(f"got {len(labels)} labels for {len(boxes)} boxes; give one label per box")
    if len(boxes) == 0:
        return _restore_dtype(canvas.clone(), dtype)
    colours = _parse_colors(colors, len(boxes))
    picture = _to_pil(canvas)
    draw = ImageDraw.Draw(picture, "RGBA" if fill else None)
    text_font = _load_font(font, font_size) if labels is not None else None
    for index, box in enumerate(boxes.tolist()):
        colour = colours[index]
        if fill:
            draw.rectangle(box, outline=colour, fill=colour + (100,), width=width)
        else:
            draw.rectangle(box, outline=colour, width=width)
        if labels is not None and labels[index]:
            _draw_caption(draw, (box[0] + width, box[1] + width), str(labels[index]), colour, text_font, label_background)
    return _restore_dtype(_from_pil(picture), dtype)


def _draw_caption(draw, xy, text, colour, font, background: bool) -> None:
    left, top, right, bottom = draw.textbbox(xy, text, font=font)
    overflow = max(0, right - draw.im.size[0])  # keep captions of boxes at the right edge readable
    if overflow:
        xy = (max(0, xy[0] - overflow), xy[1])
        left, top, right, bottom = draw.textbbox(xy, text, font=font)
    if not background:
        draw.text(xy, text, fill=colour, font=font)
        return
    draw.rectangle((left - 1, top - 1, right + 1, bottom + 1), fill=colour)
    luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    draw.text(xy, text, fill=(0, 0, 0) if luminance > 140 else (255, 255, 255), font=font)


def draw_segmentation_masks(
    image: torch.Tensor,
    masks: torch.Tensor,
    alpha: float = 0.8,
    colors: Colors = None,
) -> torch.Tensor:
    """Blend boolean ``masks`` [N, H, W] (or [H, W]) onto ``image`` [C, H, W].

    Each mask's pixels take its colour; the result is ``image * (1 - alpha) + coloured * alpha``
    (later masks win where masks overlap).

    Returns:
        [3, H, W] with the dtype of ``image``.
    """
    canvas, dtype = _check_image(image)
    if not isinstance(masks, torch.Tensor):
        raise TypeError(f"masks must be a bool tensor [N, H, W]; got {type(masks).__name__}")
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim != 3:
        raise ValueError(f"masks must have shape [N, H, W] or [H, W]; got {tuple(masks.shape)}")
    if masks.dtype != torch.bool:
        raise ValueError(f"masks must be bool (threshold probabilities first, e.g. masks > 0.5); got dtype {masks.dtype}")
    if masks.shape[-2:] != canvas.shape[-2:]:
        raise ValueError(f"masks are {tuple(masks.shape[-2:])} but the image is {tuple(canvas.shape[-2:])}; they must match")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha}; expected a value in [0, 1]")
    if len(masks) == 0:
        return _restore_dtype(canvas.clone(), dtype)
    colours = torch.tensor(_parse_colors(colors, len(masks)), dtype=torch.float32)  # [N, 3]
    base = canvas.float()
    coloured = base.clone()
    for mask, colour in zip(masks.cpu(), colours):
        coloured[:, mask] = colour[:, None]
    blended = base * (1.0 - alpha) + coloured * alpha
    return _restore_dtype(blended.round().clamp(0, 255).to(torch.uint8), dtype)


def draw_keypoints(
    image: torch.Tensor,
    keypoints: torch.Tensor,
    connectivity: Optional[Sequence[Tuple[int, int]]] = None,
    colors: Colors = None,
    radius: int = 2,
    width: int = 3,
    visibility: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Draw ``keypoints`` [N, K, 2 or 3] (x, y[, v]) as dots joined by ``connectivity`` lines.

    Args:
        connectivity: pairs (i, j) of 0-based keypoint indices to join (a skeleton).
        colors: None (red), one colour for all, or one per instance.
        visibility: bool [N, K]; invisible points and their lines are not drawn. Default: v > 0
            when the keypoints have a third column, else all visible.

    Returns:
        [3, H, W] with the dtype of ``image``.
    """
    canvas, dtype = _check_image(image)
    if not isinstance(keypoints, torch.Tensor) or keypoints.ndim != 3 or keypoints.shape[-1] not in (2, 3):
        shape = tuple(keypoints.shape) if isinstance(keypoints, torch.Tensor) else type(keypoints).__name__
        raise ValueError(f"keypoints must be a tensor [N, K, 2] or [N, K, 3]; got {shape}")
    keypoints = keypoints.detach().cpu().float()
    num_instances, num_points = keypoints.shape[:2]
    if visibility is None:
        visibility = keypoints[..., 2] > 0 if keypoints.shape[-1] == 3 else torch.ones(num_instances, num_points, dtype=torch.bool)
    elif visibility.shape != (num_instances, num_points):
        raise ValueError(f"visibility must have shape [N, K] = {(num_instances, num_points)}; got {tuple(visibility.shape)}")
    visibility = visibility.cpu().bool()
    for pair in connectivity or []:
        if len(pair) != 2 or not all(0 <= int(i) < num_points for i in pair):
            raise ValueError(f"connectivity pair {tuple(pair)} is not two keypoint indices in 0..{num_points - 1}")
    if num_instances == 0:
        return _restore_dtype(canvas.clone(), dtype)
    colours = _parse_colors("red" if colors is None else colors, num_instances)
    picture = _to_pil(canvas)
    draw = ImageDraw.Draw(picture)
    for instance in range(num_instances):
        points = keypoints[instance, :, :2].tolist()
        visible = visibility[instance].tolist()
        for start, end in connectivity or []:
            if visible[start] and visible[end]:
                draw.line([tuple(points[start]), tuple(points[end])], fill=colours[instance], width=width)
        for (x, y), shown in zip(points, visible):
            if shown:
                draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colours[instance], outline=colours[instance])
    return _restore_dtype(_from_pil(picture), dtype)


def draw_detections(
    image: torch.Tensor,
    prediction: Dict[str, torch.Tensor],
    categories: Optional[Sequence[str]] = None,
    score_thresh: float = 0.5,
    *,
    mask_thresh: float = 0.5,
    connectivity: Optional[Sequence[Tuple[int, int]]] = None,
    width: int = 2,
    alpha: float = 0.5,
    font_size: Optional[int] = None,
) -> torch.Tensor:
    """Draw one model output (``boxes``, ``labels``, ``scores``, optional ``masks``/``keypoints``).

    Detections scoring below ``score_thresh`` are skipped. Each class keeps one colour. Boxes get
    ``"name 0.93"`` captions (names from ``categories[label]``), masks are blended (float masks
    thresholded at ``mask_thresh``; shape [N, 1, H, W] or [N, H, W]), keypoints drawn as dots
    joined by ``connectivity``. A ground-truth target (no ``scores``) draws every object.

    Returns:
        uint8 [3, H, W].
    """
    canvas, _ = _check_image(image)
    if "boxes" not in prediction:
        raise ValueError(f"prediction must hold 'boxes' (and 'labels', 'scores'); got keys {sorted(prediction)}")
    boxes = prediction["boxes"].detach().cpu()
    labels = prediction.get("labels", torch.zeros(len(boxes), dtype=torch.int64)).detach().cpu()
    scores = prediction.get("scores")
    keep = torch.ones(len(boxes), dtype=torch.bool) if scores is None else scores.detach().cpu() >= score_thresh
    boxes, labels = boxes[keep], labels[keep]
    palette = color_palette(max(int(labels.max()) + 1 if len(labels) else 1, len(categories or [])))
    colours = [palette[int(label)] for label in labels]

    if "masks" in prediction and keep.any():
        masks = prediction["masks"].detach().cpu()[keep]
        if masks.ndim == 4:
            masks = masks[:, 0]
        masks = masks > mask_thresh if masks.is_floating_point() else masks.bool()
        canvas = draw_segmentation_masks(canvas, masks, alpha=alpha, colors=colours)

    names = []
    for position, label in enumerate(labels.tolist()):
        name = categories[label] if categories is not None and 0 <= label < len(categories) else str(label)
        names.append(name if scores is None else f"{name} {float(scores.detach().cpu()[keep][position]):.2f}")
    canvas = draw_bounding_boxes(canvas, boxes, names, colors=colours, width=width, font_size=font_size, label_background=True)

    if "keypoints" in prediction and keep.any():
        keypoints = prediction["keypoints"].detach().cpu()[keep]
        canvas = draw_keypoints(canvas, keypoints, connectivity=connectivity, colors=colours, radius=max(2, width), width=max(1, width - 1))
    return canvas


def save_image(image: torch.Tensor, path: Union[str, Path]) -> Path:
    """Write ``image`` ([3, H, W], [1, H, W] or [H, W]; uint8 or float in 0..1) to ``path``.

    The format follows the suffix (``.png``, ``.jpg``...); parent folders are created.
    """
    if isinstance(image, torch.Tensor) and image.ndim == 2:
        image = image[None]
    canvas, _ = _check_image(image)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        _to_pil(canvas).save(path)
    except (KeyError, ValueError) as error:
        raise ValueError(f"cannot save an image as '{path}': unknown suffix '{path.suffix}' (use .png or .jpg)") from error
    return path
