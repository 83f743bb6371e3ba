"""Drawing boxes, masks and keypoints on image tensors, with torchvision.utils' signatures and pixels.

Images are tensors [C, H, W], either uint8 (0..255) or float (0..1). ``draw_bounding_boxes``,
``draw_segmentation_masks`` and ``draw_keypoints`` give torchvision 0.28's pixels and warnings for
the same inputs: the same PIL ImageDraw calls on the same integer coordinates (boxes and keypoints
truncated to int64), PIL's default font (its size fixed; ``font_size`` only applies to a ``font``
file), the same default palette, float images converted as torchvision converts them
(``uint8 = trunc(x * 255.999)``, back as ``x * (1 / 255)``), masks blended in floating point
and truncated. torchdet adds clearer error messages (which keep torchvision's wording), per-instance
keypoint colours, and ``draw_detections`` for a model's output.
"""

from __future__ import annotations

import colorsys
import warnings
from pathlib import Path
from typing import Any, BinaryIO, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image, ImageColor, ImageDraw, ImageFont

Color = Union[str, Tuple[int, int, int]]
Colors = Optional[Union[Color, Sequence[Color]]]
RGB = Tuple[int, int, int]

__all__ = [
    "draw_bounding_boxes",
    "draw_segmentation_masks",
    "draw_keypoints",
    "draw_detections",
    "make_grid",
    "save_image",
    "color_palette",
]

# torchvision's default colours: colour i is i * STEPS mod 255, channel by channel.
_DEFAULT_PALETTE_STEPS = (2**25 - 1, 2**15 - 1, 2**21 - 1)


# -- helpers ------------------------------------------------------------------------------------


def color_palette(n: int) -> List[RGB]:
    """``n`` distinct, bright RGB colours (hues spaced by the golden ratio); colour i is stable in n.

    ``draw_detections`` colours classes with it; the torchvision-compatible draw functions default to
    torchvision's palette instead.
    """
    colours = []
    for index in range(n):
        hue = (0.13 + index * 0.618033988749895) % 1.0
        r, g, b = colorsys.hsv_to_rgb(hue, 0.8, 0.95)
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return colours


def _default_palette(n: int) -> List[RGB]:
    """torchvision's default colours for ``n`` objects: ``(0, 0, 0), (1, 127, 31), (2, 254, 62), ...``."""
    return [tuple((i * step) % 255 for step in _DEFAULT_PALETTE_STEPS) for i in range(n)]  # type: ignore[misc]


def _is_rgb_triplet(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 3 and not any(isinstance(v, str) for v in value)


def _parse_color(color: Any) -> RGB:
    if isinstance(color, str):
        try:
            return ImageColor.getrgb(color)[:3]
        except ValueError as error:
            raise ValueError(f"unknown colour {color!r}; use a name ('red'), '#rrggbb' or an (r, g, b) tuple") from error
    if _is_rgb_triplet(color):
        values = tuple(int(c) for c in color)
        if not all(0 <= v <= 255 for v in values):
            raise ValueError(f"colour {values} has components outside 0..255")
        return values  # type: ignore[return-value]
    raise ValueError(f"cannot read {color!r} as a colour; use a name ('red'), '#rrggbb' or an (r, g, b) tuple of ints")


def _parse_colors(colors: Colors, n: int) -> List[RGB]:
    """One RGB tuple per object, read as torchvision reads ``colors``.

    None: the default palette; a string or an (r, g, b) tuple: that colour for all; a list: one
    colour per object (at least ``n``).
    """
    if colors is None:
        return _default_palette(n)
    if isinstance(colors, list):
        if len(colors) < n:
            raise ValueError(
                f"Number of colors must be equal or larger than the number of objects, but got {len(colors)} < {n}; "
                "give at least one colour per object, or a single colour."
            )
        return [_parse_color(color) for color in colors[:n]]
    if isinstance(colors, tuple) and len(colors) != 3:
        raise ValueError(
            f"If passed as tuple, colors should be an RGB triplet, but got {colors}; pass several colours as a list."
        )
    if not isinstance(colors, (tuple, str)):
        raise ValueError(
            f"`colors` must be a tuple or a string, or a list thereof, but got {colors!r} "
            f"(a {type(colors).__name__}); e.g. 'red', (255, 0, 0) or ['red', 'blue']."
        )
    return [_parse_color(colors)] * n


def _check_image(image: Any, *, grayscale_ok: bool, not_a_tensor: str) -> None:
    """torchvision's checks (and wording) on the image, plus the range of float images."""
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"{not_a_tensor}, got {type(image)}; pass the image as a [C, H, W] tensor.")
    if not (image.dtype == torch.uint8 or image.is_floating_point()):
        raise ValueError(f"The image dtype must be uint8 or float, got {image.dtype}; uint8 (0..255) or float (0..1).")
    if image.dim() != 3:
        raise ValueError(f"Pass individual images, not batches: got shape {tuple(image.shape)}, expected [C, H, W].")
    if grayscale_ok and image.shape[0] not in (1, 3):
        raise ValueError(f"Only grayscale and RGB images are supported: got {image.shape[0]} channels, "
                         "expected an image of shape [1 or 3, H, W].")
    if not grayscale_ok and image.shape[0] != 3:
        raise ValueError(f"Pass an RGB image. Other Image formats are not supported: got {image.shape[0]} channels, "
                         "expected [3, H, W] (grayscale: image.expand(3, -1, -1)).")
    if image.is_floating_point() and image.numel() and (image.min() < 0 or image.max() > 1):
        raise ValueError(
            f"a float image must hold values in 0..1; got {float(image.min()):.3g}..{float(image.max()):.3g}"
        )


def _to_uint8(image: torch.Tensor) -> torch.Tensor:
    """A uint8 copy of a float 0..1 image, converted as torchvision converts it (multiply by just under 256)."""
    return image.mul(255 + 1.0 - 1e-3).to(torch.uint8) if image.is_floating_point() else image


def _restore_dtype(image: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return image if dtype == torch.uint8 else image.to(dtype).mul_(1.0 / 255)


def _to_pil(image: torch.Tensor) -> Image.Image:
    return Image.fromarray(image.permute(1, 2, 0).cpu().numpy())


def _from_pil(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image.convert("RGB"), dtype=np.uint8)).permute(2, 0, 1).contiguous()


def _load_font(font: Optional[str], font_size: Optional[int], sized_default: bool = False) -> ImageFont.ImageFont:
    """PIL's default font (size fixed, as in torchvision, unless ``sized_default``), or ``font`` at
    ``font_size`` (default 10)."""
    if font is None and sized_default and font_size is not None:
        return ImageFont.load_default(size=font_size)
    if font is None:
        if font_size is not None:
            warnings.warn("Argument 'font_size' will be ignored since 'font' is not set.")
        return ImageFont.load_default()
    return ImageFont.truetype(font=font, size=font_size or 10)


# -- public drawing -----------------------------------------------------------------------------


def draw_bounding_boxes(
    image: torch.Tensor,
    boxes: torch.Tensor,
    labels: Optional[List[str]] = None,
    colors: Colors = None,
    fill: Optional[bool] = False,
    width: int = 1,
    font: Optional[str] = None,
    font_size: Optional[int] = None,
    label_colors: Colors = None,
    fill_labels: bool = False,
    *,
    label_background: bool = False,
) -> torch.Tensor:
    """Draw xyxy ``boxes`` [N, 4] (pixels, truncated to ints) with optional text ``labels`` on ``image`` [C, H, W].

    Args:
        colors: None (torchvision's palette), one colour, or a list with one per box: names,
            ``"#rrggbb"`` or (r, g, b).
        fill: also fill each box with its colour at alpha 100/255.
        width: outline width in pixels.
        font, font_size: a TrueType file and its size (default 10); without ``font``, PIL's default
            font at its own size (a ``font_size`` alone is ignored, with a warning).
        label_colors: text colours (as ``colors``); default the box colours, or black with ``fill_labels``.
        fill_labels: put each label on a rectangle of its box colour.
        label_background: torchdet's captions: ``fill_labels`` with black or white text (whichever
            reads better on the box colour), moved left to stay inside the image, ``font_size``
            applied to the default font.

    Returns:
        [3, H, W] with the dtype of ``image``; ``image`` itself (with a warning) when there are no boxes.
    """
    _check_image(image, grayscale_ok=True, not_a_tensor="Tensor expected")
    if not isinstance(boxes, torch.Tensor) or boxes.ndim != 2 or boxes.shape[-1] != 4:
        shape = tuple(boxes.shape) if isinstance(boxes, torch.Tensor) else type(boxes).__name__
        raise ValueError(f"boxes must be a tensor [N, 4] (x1, y1, x2, y2); got {shape}")
    bad = (boxes[:, 0] > boxes[:, 2]) | (boxes[:, 1] > boxes[:, 3])
    if bad.any():
        index = int(bad.nonzero()[0])
        raise ValueError(
            f"Boxes need to be in (xmin, ymin, xmax, ymax) format (x1 <= x2 and y1 <= y2); box {index} is "
            f"{boxes[index].tolist()}. Use torchdet.ops.box_convert to convert them."
        )
    num_boxes = boxes.shape[0]
    if num_boxes == 0:
        warnings.warn("boxes doesn't contain any box. No box was drawn")
        return image
    if labels is not None and len(labels) != num_boxes:
        raise ValueError(
            f"Number of boxes ({num_boxes}) and labels ({len(labels)}) mismatch. Please specify labels for each box."
        )
    box_colours = _parse_colors(colors, num_boxes)
    if label_background:
        fill_labels = True
        text_colours = label_colors or [_readable_on(colour) for colour in box_colours]
    else:
        text_colours = label_colors
    if text_colours or fill_labels:
        text_colours = _parse_colors(text_colours or "black", num_boxes)
    else:
        text_colours = list(box_colours)
    text_font = _load_font(font, font_size, sized_default=label_background)

    dtype = image.dtype
    canvas = _to_uint8(image.expand(3, -1, -1) if image.shape[0] == 1 else image)
    picture = _to_pil(canvas)
    draw = ImageDraw.Draw(picture, "RGBA" if fill else None)
    for index, box in enumerate(boxes.to(torch.int64).tolist()):
        colour = box_colours[index]
        draw.rectangle(box, width=width, outline=colour, fill=colour + (100,) if fill else None)
        if labels is None or labels[index] is None:
            continue
        # The text starts one pixel inside the outline; a filled label box reaches one pixel around the text.
        margin = width + 1
        xy = (box[0] + margin, box[1] + margin)
        if label_background:
            xy = _inside_right_edge(draw, xy, labels[index], text_font)
        if fill_labels:
            left, top, right, bottom = draw.textbbox(xy, labels[index], font=text_font)
            draw.rectangle((left - 1, top - 1, right + 1, bottom + 1), fill=colour)
        draw.text(xy, labels[index], fill=text_colours[index], font=text_font)
    return _restore_dtype(_from_pil(picture), dtype)


def _readable_on(colour: RGB) -> RGB:
    """Black or white, whichever reads better on ``colour``."""
    luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    return (0, 0, 0) if luminance > 140 else (255, 255, 255)


def _inside_right_edge(draw: ImageDraw.ImageDraw, xy: Tuple[int, int], text: str, font: Any) -> Tuple[int, int]:
    """``xy`` moved left so that ``text`` drawn there ends inside the image."""
    overflow = max(0, draw.textbbox(xy, text, font=font)[2] - draw.im.size[0])
    return (max(0, xy[0] - overflow), xy[1])


def draw_segmentation_masks(
    image: torch.Tensor,
    masks: torch.Tensor,
    alpha: float = 0.8,
    colors: Colors = None,
) -> torch.Tensor:
    """Blend boolean ``masks`` [N, H, W] (or [H, W]) onto an RGB ``image`` [3, H, W].

    Each mask's pixels take its colour, pixels under two or more masks turn black, and the result is
    ``image * (1 - alpha) + painted * alpha`` in floating point, cast back to the image's dtype
    (truncated for uint8). ``colors`` default to torchvision's palette.

    Returns:
        [3, H, W] with the dtype of ``image``; ``image`` itself (with a warning) when there are no masks.
    """
    _check_image(image, grayscale_ok=False, not_a_tensor="The image must be a tensor")
    if not isinstance(masks, torch.Tensor):
        raise TypeError(f"masks must be a bool tensor [N, H, W]; got {type(masks).__name__}")
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim != 3:
        raise ValueError(f"masks must be of shape (H, W) or (batch_size, H, W); got {tuple(masks.shape)}")
    if masks.dtype != torch.bool:
        raise ValueError(f"The masks must be of dtype bool. Got {masks.dtype} (threshold probabilities first, "
                         "e.g. masks > 0.5)")
    if masks.shape[-2:] != image.shape[-2:]:
        raise ValueError(f"The image and the masks must have the same height and width: masks are "
                         f"{tuple(masks.shape[-2:])} but the image is {tuple(image.shape[-2:])}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha}; expected a value in [0, 1]")
    num_masks = masks.shape[0]
    if num_masks == 0:
        warnings.warn("masks doesn't contain any mask. No mask was drawn")
        return image
    scale = 255.0 if image.is_floating_point() else 1.0
    masks = masks.to(image.device)
    painted = image.detach().clone()
    for mask, colour in zip(masks, _parse_colors(colors, num_masks)):
        painted[:, mask] = torch.tensor([c / scale for c in colour] if scale != 1.0 else colour,
                                        dtype=image.dtype, device=image.device)[:, None]
    painted[:, masks.sum(dim=0) > 1] = 0
    return (image * (1 - alpha) + painted * alpha).to(image.dtype)


def draw_keypoints(
    image: torch.Tensor,
    keypoints: torch.Tensor,
    connectivity: Optional[Sequence[Tuple[int, int]]] = None,
    colors: Colors = None,
    radius: int = 2,
    width: int = 3,
    visibility: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Draw ``keypoints`` [N, K, 2+] (x, y, truncated to ints) as dots, then ``connectivity`` lines.

    As in torchvision: each instance's visible dots (circles of ``radius``, filled with ``colors``;
    with ``colors=None`` PIL draws no dot), then its lines (``width`` wide, in PIL's default white),
    a line skipped when either end is invisible.

    Args:
        connectivity: pairs (i, j) of 0-based keypoint indices to join (a skeleton).
        colors: one colour for all dots (or, torchdet only, a list with one per instance).
        visibility: bool [N, K] (or [N, K, 1]); default all visible. A third keypoint column is
            not read as visibility (pass ``visibility=keypoints[..., 2] > 0`` for that).

    Returns:
        [3, H, W] with the dtype of ``image``.
    """
    _check_image(image, grayscale_ok=False, not_a_tensor="The image must be a tensor")
    if not isinstance(keypoints, torch.Tensor) or keypoints.ndim != 3 or keypoints.shape[-1] < 2:
        shape = tuple(keypoints.shape) if isinstance(keypoints, torch.Tensor) else type(keypoints).__name__
        raise ValueError(f"keypoints must be of shape (num_instances, K, 2); got {shape}")
    num_instances, num_points = keypoints.shape[:2]
    if visibility is None:
        visibility = torch.ones(num_instances, num_points, dtype=torch.bool)
    if visibility.ndim == 3:
        visibility = visibility.squeeze(-1)
    if visibility.ndim != 2:
        raise ValueError(f"visibility must be of shape (num_instances, K). Got ndim={visibility.ndim}")
    if visibility.shape != keypoints.shape[:-1]:
        raise ValueError(
            "keypoints and visibility must have the same dimensionality for num_instances and K. "
            f"Got visibility.shape = {tuple(visibility.shape)} and keypoints.shape = {tuple(keypoints.shape)}"
        )
    for pair in connectivity or []:
        if len(pair) != 2 or not all(0 <= int(i) < num_points for i in pair):
            raise ValueError(f"connectivity pair {tuple(pair)} is not two keypoint indices in 0..{num_points - 1}")
    if isinstance(colors, list):
        dot_colours: List[Optional[Any]] = list(_parse_colors(colors, num_instances))
    else:
        dot_colours = [colors] * num_instances  # as given: PIL reads it (None: no dot)
    dtype = image.dtype
    picture = _to_pil(_to_uint8(image))
    _draw_keypoints_on(ImageDraw.Draw(picture), keypoints.to(torch.int64).tolist(), visibility.bool().tolist(),
                       connectivity, dot_colours, [None] * num_instances, radius, width)
    return _restore_dtype(_from_pil(picture), dtype)


def _draw_keypoints_on(draw: ImageDraw.ImageDraw, points: List[List[List[int]]], visible: List[List[bool]],
                       connectivity: Optional[Sequence[Tuple[int, int]]], dot_colours: Sequence[Any],
                       line_colours: Sequence[Any], radius: int, width: int) -> None:
    """Per instance: its visible dots, then the lines between visible pairs (``None`` colour: PIL's default ink)."""
    for instance, (instance_points, instance_visible) in enumerate(zip(points, visible)):
        for (x, y, *_), shown in zip(instance_points, instance_visible):
            if shown:
                draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=dot_colours[instance],
                             outline=None, width=0)
        for start, end in connectivity or []:
            if instance_visible[start] and instance_visible[end]:
                draw.line((tuple(instance_points[start][:2]), tuple(instance_points[end][:2])),
                          fill=line_colours[instance], width=width)


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
    _check_image(image, grayscale_ok=True, not_a_tensor="The image must be a tensor")
    canvas = _to_uint8(image.expand(3, -1, -1) if image.shape[0] == 1 else image)
    if "boxes" not in prediction:
        raise ValueError(f"prediction must hold 'boxes' (and 'labels', 'scores'); got keys {sorted(prediction)}")
    boxes = prediction["boxes"].detach().cpu()
    labels = prediction.get("labels", torch.zeros(len(boxes), dtype=torch.int64)).detach().cpu()
    scores = prediction.get("scores")
    keep = torch.ones(len(boxes), dtype=torch.bool) if scores is None else scores.detach().cpu() >= score_thresh
    boxes, labels = boxes[keep], labels[keep]
    if len(boxes) == 0:
        return canvas.clone()
    palette = color_palette(max(int(labels.max()) + 1, len(categories or [])))
    colours = [palette[int(label)] for label in labels]

    if "masks" in prediction:
        masks = prediction["masks"].detach().cpu()[keep]
        if masks.ndim == 4:
            masks = masks[:, 0]
        masks = masks > mask_thresh if masks.is_floating_point() else masks.bool()
        canvas = draw_segmentation_masks(canvas, masks, alpha=alpha, colors=colours)

    names = []
    for position, label in enumerate(labels.tolist()):
        name = categories[label] if categories is not None and 0 <= label < len(categories) else str(label)
        names.append(name if scores is None else f"{name} {float(scores.detach().cpu()[keep][position]):.2f}")
    canvas = draw_bounding_boxes(canvas, boxes, names, colors=colours, width=width, font_size=font_size,
                                 label_background=True)

    if "keypoints" in prediction:
        keypoints = prediction["keypoints"].detach().cpu()[keep]
        visible = (keypoints[..., 2] > 0 if keypoints.shape[-1] == 3
                   else torch.ones(keypoints.shape[:2], dtype=torch.bool))
        picture = _to_pil(canvas)
        _draw_keypoints_on(ImageDraw.Draw(picture), keypoints.to(torch.int64).tolist(), visible.tolist(),
                           connectivity, colours, colours, radius=max(2, width), width=max(1, width - 1))
        canvas = _from_pil(picture)
    return canvas


def make_grid(
    tensor: Union[torch.Tensor, List[torch.Tensor]],
    nrow: int = 8,
    padding: int = 2,
    normalize: bool = False,
    value_range: Optional[Tuple[float, float]] = None,
    scale_each: bool = False,
    pad_value: float = 0.0,
) -> torch.Tensor:
    """Tile images ``[B, C, H, W]`` (or a list of ``[C, H, W]``) into one ``[C, rows * (H + p) + p, cols * (W + p) + p]``.

    ``nrow`` images per row, ``padding`` pixels of ``pad_value`` around each. One-channel images
    become three-channel; a single image comes back as it is (after ``normalize``). ``normalize``
    maps ``value_range`` (default: the min and max, per image with ``scale_each``) to 0..1.
    """
    if isinstance(tensor, list):
        if not all(isinstance(t, torch.Tensor) for t in tensor):
            raise TypeError(f"tensor or list of tensors expected, got a list of {[type(t).__name__ for t in tensor]}")
        tensor = torch.stack(tensor, dim=0)
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"tensor or list of tensors expected, got {type(tensor)}")
    if tensor.dim() == 2:
        tensor = tensor.unsqueeze(0)
    if tensor.dim() == 3:
        tensor = tensor.unsqueeze(0)
    if tensor.dim() == 4 and tensor.shape[1] == 1:
        tensor = torch.cat((tensor, tensor, tensor), 1)
    if normalize:
        if value_range is not None and not isinstance(value_range, tuple):
            raise TypeError("value_range has to be a tuple (min, max) if specified. min and max are numbers")
        tensor = tensor.clone()
        for chunk in (tensor if scale_each else [tensor]):
            low, high = value_range if value_range is not None else (float(chunk.min()), float(chunk.max()))
            chunk.clamp_(min=low, max=high).sub_(low).div_(max(high - low, 1e-5))
    if tensor.shape[0] == 1:
        return tensor.squeeze(0)
    count, channels, height, width = tensor.shape
    cols = min(nrow, count)
    rows = -(-count // cols)
    cell_h, cell_w = height + padding, width + padding
    grid = tensor.new_full((channels, cell_h * rows + padding, cell_w * cols + padding), pad_value)
    for k in range(count):
        top, left = (k // cols) * cell_h + padding, (k % cols) * cell_w + padding
        grid[:, top:top + height, left:left + width].copy_(tensor[k])
    return grid


def save_image(image: Union[torch.Tensor, List[torch.Tensor]], path: Union[str, Path, BinaryIO],
               format: Optional[str] = None, **grid_kwargs: Any) -> Optional[Path]:
    """Write an image ([3, H, W], [1, H, W] or [H, W]; uint8, or float in 0..1) or a batch to ``path``.

    A batch ``[B, C, H, W]`` (or a list of images) is tiled with :func:`make_grid` (``grid_kwargs``).
    Float values are scaled by 255, rounded and clamped, as torchvision's ``save_image`` does.
    ``path`` may be a file object (then give ``format``). The format follows the suffix
    (``.png``, ``.jpg``...); parent folders are created. Returns the path written (None for a file object).
    """
    if isinstance(image, torch.Tensor) and image.dtype == torch.uint8 and image.dim() in (2, 3) and not grid_kwargs:
        canvas = image[None] if image.dim() == 2 else image
        if canvas.shape[0] not in (1, 3):
            raise ValueError(f"image must have shape [1 or 3, H, W]; got {tuple(image.shape)}")
        canvas = canvas.expand(3, -1, -1) if canvas.shape[0] == 1 else canvas
    else:
        grid = make_grid(image, **grid_kwargs)
        canvas = grid.detach().mul(255).add_(0.5).clamp_(0, 255).to("cpu", torch.uint8)
    picture = _to_pil(canvas)
    if not isinstance(path, (str, Path)):
        picture.save(path, format=format)
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        picture.save(path, format=format)
    except (KeyError, ValueError) as error:
        raise ValueError(f"cannot save an image as '{path}': unknown suffix '{path.suffix}' (use .png or .jpg)") from error
    return path
