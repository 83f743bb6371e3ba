"""Drawing helpers: torchvision's pixels for the same inputs (hand-derived), its warnings, clear errors.

The expected pixels follow from what torchvision's draw functions do, written out by hand:
coordinates truncated to ints, PIL's rectangle/ellipse/line conventions, fill at alpha 100/255,
float images converted with ``trunc(x * 255.999)`` and back with ``x * (1 / 255)``, masks blended
in float and truncated, overlapping mask pixels black, the palette ``i * (2**25-1, 2**15-1, 2**21-1) % 255``.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from torchdet.visualization import (
    color_palette,
    draw_bounding_boxes,
    draw_detections,
    draw_keypoints,
    draw_segmentation_masks,
    make_grid,
    save_image,
)


def blank(height=40, width=50, dtype=torch.uint8, value=0):
    return torch.full((3, height, width), value, dtype=dtype)


def rgb(image, x, y):
    return image[:, y, x].tolist()


# --- draw_bounding_boxes -----------------------------------------------------------------------

def test_boxes_outline_on_truncated_corners():
    image = blank()
    out = draw_bounding_boxes(image, torch.tensor([[2.9, 3.9, 8.9, 9.9]]), colors="red")  # drawn at [2, 3, 8, 9]
    assert out.dtype == torch.uint8 and out.shape == (3, 40, 50)
    assert out[0, 3, 2:9].tolist() == [255] * 7 and out[0, 3, 9] == 0  # top edge x = 2..8
    assert out[0, 3:10, 2].tolist() == [255] * 7 and out[0, 2, 2] == 0 and out[0, 10, 2] == 0  # left edge y = 3..9
    assert rgb(out, 8, 9) == [255, 0, 0] and rgb(out, 5, 5) == [0, 0, 0]  # corner drawn, inside untouched
    assert image.sum() == 0  # input not modified


def test_boxes_fill_is_alpha_100_over_the_image():
    boxes = torch.tensor([[2.0, 3.0, 12.0, 15.0]])
    assert rgb(draw_bounding_boxes(blank(), boxes, colors="red", fill=True), 6, 6) == [100, 0, 0]  # 255 * 100/255
    # Over white: each channel 255 * 155/255 + c * 100/255.
    assert rgb(draw_bounding_boxes(blank(value=255), boxes, colors="lime", fill=True), 6, 6) == [155, 255, 155]


def test_default_colours_are_torchvisions_palette():
    boxes = torch.tensor([[1.0, 1.0, 5.0, 5.0], [10.0, 10.0, 15.0, 15.0], [20.0, 20.0, 25.0, 25.0]])
    out = draw_bounding_boxes(blank(value=255), boxes)
    assert rgb(out, 1, 1) == [0, 0, 0] and rgb(out, 10, 10) == [1, 127, 31] and rgb(out, 20, 20) == [2, 254, 62]


def test_float_images_convert_as_torchvision_does():
    image = blank(dtype=torch.float32, value=0.5)
    out = draw_bounding_boxes(image, torch.tensor([[2.0, 3.0, 12.0, 15.0]]), colors="red")
    assert out.dtype == torch.float32
    # 0.5 -> trunc(0.5 * 255.999) = 127 -> 127 * (1 / 255), not 128 (rounding).
    assert out[0, 0, 0].item() == (torch.tensor(127.0) * (1.0 / 255)).item()
    assert rgb(out, 5, 3) == [1.0, 0.0, 0.0]


def test_grayscale_images_are_drawn_in_rgb():
    out = draw_bounding_boxes(torch.full((1, 8, 8), 255, dtype=torch.uint8), torch.tensor([[1, 1, 6, 6]]),
                              colors=["#1BBC9B"])
    assert out.shape == (3, 8, 8) and rgb(out, 1, 1) == [0x1B, 0xBC, 0x9B] and rgb(out, 3, 3) == [255, 255, 255]


def _text_box(xy, text):
    """Where PIL's default font puts ``text`` at ``xy``: the same call torchvision makes."""
    return ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox(xy, text, font=ImageFont.load_default())


def test_labels_start_one_pixel_inside_the_outline():
    box, width = [2.0, 2.0, 40.0, 30.0], 2
    out = draw_bounding_boxes(blank(value=255), torch.tensor([box]), labels=["ab"], colors="blue", width=width)
    left, top, right, bottom = _text_box((2 + width + 1, 2 + width + 1), "ab")
    text = out[:, top:bottom, left:right]
    assert text[0].min() < 128 and text[2].min() == 255  # blue text: red darkened, blue kept
    assert out[:, bottom:28, 5:right].eq(255).all()  # nothing below the text inside the box


def test_fill_labels_puts_black_text_on_the_box_colour():
    out = draw_bounding_boxes(blank(value=255), torch.tensor([[2.0, 2.0, 40.0, 30.0]]), labels=["ab"],
                              colors="blue", fill_labels=True)
    left, top, right, bottom = _text_box((4, 4), "ab")
    # PIL's rectangle includes both corners: the label box covers (left - 1, top - 1)..(right + 1, bottom + 1).
    assert rgb(out, left - 1, top - 1) == [0, 0, 255] and rgb(out, right + 1, bottom + 1) == [0, 0, 255]
    assert rgb(out, right + 2, bottom + 2) == [255, 255, 255]
    assert out[2, top:bottom, left:right].min() < 128  # black text darkens the blue channel too
    coloured = draw_bounding_boxes(blank(value=255), torch.tensor([[2.0, 2.0, 40.0, 30.0]]), labels=["ab"],
                                   colors="blue", label_colors="red")
    assert coloured[0, top:bottom, left:right].eq(255).all() and coloured[1, top:bottom, left:right].min() < 128


def test_box_warnings():
    image = blank()
    with pytest.warns(UserWarning, match="boxes doesn't contain any box. No box was drawn"):
        assert draw_bounding_boxes(image, torch.zeros(0, 4)) is image
    with pytest.warns(UserWarning, match="'font_size' will be ignored since 'font' is not set"):
        with_size = draw_bounding_boxes(image, torch.tensor([[2.0, 2.0, 40.0, 30.0]]), labels=["ab"], font_size=30)
    assert torch.equal(with_size, draw_bounding_boxes(image, torch.tensor([[2.0, 2.0, 40.0, 30.0]]), labels=["ab"]))


@pytest.mark.parametrize(
    "image, boxes, kwargs, error, message",
    [
        (blank(), torch.tensor([[5.0, 5.0, 1.0, 9.0]]), {}, ValueError,
         r"Boxes need to be in \(xmin, ymin, xmax, ymax\) format.*box 0 is \[5.0, 5.0, 1.0, 9.0\]"),
        (blank(), torch.zeros(2, 5), {}, ValueError, r"boxes must be a tensor \[N, 4\]"),
        (blank(), torch.zeros(2, 4), {"labels": ["a"]}, ValueError, r"Number of boxes \(2\) and labels \(1\) mismatch"),
        (blank(), torch.zeros(2, 4), {"colors": ["red"]}, ValueError, "Number of colors must be equal or larger"),
        (blank(), torch.zeros(1, 4), {"colors": (1, 2)}, ValueError, "RGB triplet"),
        (blank(), torch.zeros(1, 4), {"colors": 7}, ValueError, "must be a tuple or a string, or a list thereof"),
        (blank(), torch.zeros(1, 4), {"colors": "nocolour"}, ValueError, "unknown colour"),
        (blank(dtype=torch.int32), torch.zeros(1, 4), {}, ValueError, "The image dtype must be uint8 or float"),
        (torch.zeros(1, 3, 5, 5, dtype=torch.uint8), torch.zeros(1, 4), {}, ValueError, "Pass individual images"),
        (torch.zeros(4, 5, 5, dtype=torch.uint8), torch.zeros(1, 4), {}, ValueError,
         "Only grayscale and RGB images are supported"),
        (blank() * 0 + 2.0, torch.zeros(1, 4), {}, ValueError, "values in 0..1"),
        ("image", torch.zeros(1, 4), {}, TypeError, "Tensor expected"),
    ],
)
def test_box_errors(image, boxes, kwargs, error, message):
    with pytest.raises(error, match=message):
        draw_bounding_boxes(image, boxes, **kwargs)


def test_label_background_caption_of_a_box_at_the_right_edge_stays_inside_the_image():
    image = torch.zeros(3, 40, 100, dtype=torch.uint8)
    out = draw_bounding_boxes(image, torch.tensor([[80.0, 5.0, 99.0, 30.0]]), labels=["a long caption"],
                              colors=["red"], label_background=True)
    assert out[0, 5:20, :75].sum() > 0  # the caption was moved left of the box


# --- draw_segmentation_masks -------------------------------------------------------------------

def test_masks_blend_truncate_and_blacken_overlaps():
    image = torch.full((3, 4, 4), 100, dtype=torch.uint8)
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[0, :2] = True
    masks[1, 1:3] = True  # row 1 is under both masks
    out = draw_segmentation_masks(image, masks, alpha=0.5, colors=["red", "blue"])
    assert out.dtype == torch.uint8 and out.shape == image.shape
    assert rgb(out, 0, 0) == [177, 50, 50]  # 100 * 0.5 + 255 * 0.5 = 177.5, truncated
    assert rgb(out, 0, 1) == [50, 50, 50]  # overlap: painted black
    assert rgb(out, 0, 2) == [50, 50, 177]
    assert rgb(out, 0, 3) == [100, 100, 100]
    assert rgb(draw_segmentation_masks(image, masks[0], alpha=1.0, colors="lime"), 0, 0) == [0, 255, 0]


def test_masks_default_palette_and_float_images():
    image = torch.full((3, 4, 4), 100, dtype=torch.uint8)
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[0, 0] = True
    masks[1, 3] = True
    out = draw_segmentation_masks(image, masks, alpha=1.0)
    assert rgb(out, 0, 0) == [0, 0, 0] and rgb(out, 0, 3) == [1, 127, 31]
    as_float = draw_segmentation_masks(torch.full((3, 4, 4), 0.5), masks, alpha=0.5, colors=["white", "red"])
    assert as_float.dtype == torch.float32 and rgb(as_float, 0, 0) == [0.75, 0.75, 0.75]
    assert rgb(as_float, 0, 3) == [0.75, 0.25, 0.25] and rgb(as_float, 0, 1) == [0.5, 0.5, 0.5]


def test_mask_warnings_and_errors():
    image = blank()
    with pytest.warns(UserWarning, match="masks doesn't contain any mask. No mask was drawn"):
        assert draw_segmentation_masks(image, torch.zeros(0, 40, 50, dtype=torch.bool)) is image
    with pytest.raises(ValueError, match="The masks must be of dtype bool"):
        draw_segmentation_masks(image, torch.zeros(1, 40, 50))
    with pytest.raises(ValueError, match=r"same height and width: masks are \(4, 4\) but the image is \(40, 50\)"):
        draw_segmentation_masks(image, torch.zeros(1, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="masks must be of shape"):
        draw_segmentation_masks(image, torch.zeros(1, 1, 40, 50, dtype=torch.bool))
    with pytest.raises(ValueError, match="Pass an RGB image"):
        draw_segmentation_masks(torch.zeros(1, 40, 50, dtype=torch.uint8), torch.zeros(40, 50, dtype=torch.bool))
    with pytest.raises(ValueError, match="Number of colors must be equal or larger"):
        draw_segmentation_masks(image, torch.zeros(2, 40, 50, dtype=torch.bool), colors=["red"])
    with pytest.raises(ValueError, match="alpha"):
        draw_segmentation_masks(image, torch.zeros(1, 40, 50, dtype=torch.bool), alpha=2.0)


# --- draw_keypoints ----------------------------------------------------------------------------

KEYPOINTS = torch.tensor([[[10.9, 10.9, 0.0], [30.0, 10.0, 1.0], [20.0, 30.0, 1.0]]])  # drawn at (10, 10), ...


def test_keypoints_dots_then_white_lines():
    out = draw_keypoints(blank(), KEYPOINTS, connectivity=[(0, 1)], colors="red", radius=2, width=1)
    assert rgb(out, 10, 12) == [255, 0, 0] and rgb(out, 10, 8) == [255, 0, 0]  # the dot, radius 2
    assert rgb(out, 10, 13) == [0, 0, 0]
    assert rgb(out, 10, 10) == [255, 255, 255] and rgb(out, 20, 10) == [255, 255, 255]  # the line, drawn last, white
    assert rgb(out, 20, 28) == [255, 0, 0]  # point 2: a third column of 1.0 or 0.0 is not visibility


def test_keypoints_without_colours_draw_no_dots():
    out = draw_keypoints(blank(), KEYPOINTS, connectivity=[(0, 1)], width=1)
    assert rgb(out, 10, 12) == [0, 0, 0] and rgb(out, 20, 28) == [0, 0, 0]
    assert rgb(out, 20, 10) == [255, 255, 255]


def test_keypoint_visibility_hides_points_and_their_lines():
    visibility = torch.tensor([[True, False, True]])
    out = draw_keypoints(blank(), KEYPOINTS, connectivity=[(0, 1), (0, 2)], colors="red", width=1,
                         visibility=visibility[..., None])  # [N, K, 1] is accepted too
    assert rgb(out, 30, 10) == [0, 0, 0] and rgb(out, 20, 10) == [0, 0, 0]  # point 1 and the 0-1 line hidden
    assert rgb(out, 20, 28) == [255, 0, 0] and rgb(out, 15, 20) == [255, 255, 255]  # the 0-2 line drawn
    as_float = draw_keypoints(blank(dtype=torch.float32), KEYPOINTS, colors="red")
    assert as_float.dtype == torch.float32 and rgb(as_float, 10, 12) == [1.0, 0.0, 0.0]


def test_keypoint_errors():
    with pytest.raises(ValueError, match=r"connectivity pair \(0, 5\)"):
        draw_keypoints(blank(), KEYPOINTS, connectivity=[(0, 5)])
    with pytest.raises(ValueError, match="keypoints must be of shape"):
        draw_keypoints(blank(), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="keypoints and visibility must have the same dimensionality"):
        draw_keypoints(blank(), KEYPOINTS, visibility=torch.ones(1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="Pass an RGB image"):
        draw_keypoints(torch.zeros(1, 5, 5, dtype=torch.uint8), KEYPOINTS)
    with pytest.raises(TypeError, match="The image must be a tensor"):
        draw_keypoints("image", KEYPOINTS)


# --- torchdet's own helpers --------------------------------------------------------------------

def test_draw_detections_thresholds_and_captions():
    image = torch.zeros(3, 60, 80)
    masks = torch.zeros(2, 1, 60, 80)
    masks[0, 0, 10:30, 10:30] = 0.9
    masks[1, 0, 40:50, 50:70] = 0.9
    prediction = {
        "boxes": torch.tensor([[10.0, 10.0, 30.0, 30.0], [50.0, 40.0, 70.0, 50.0]]),
        "labels": torch.tensor([1, 2]),
        "scores": torch.tensor([0.93, 0.2]),
        "masks": masks,
        "keypoints": torch.tensor([[[20.0, 20.0, 1.0], [25.0, 25.0, 0.0]]]).expand(2, -1, -1),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # font_size without a font is fine here
        out = draw_detections(image, prediction, ["__background__", "circle", "square"], score_thresh=0.5,
                              connectivity=[(0, 1)], font_size=12)
    assert out.dtype == torch.uint8 and out.shape == (3, 60, 80)
    assert out[:, 28, 28].sum() > 0  # mask of the kept detection
    assert out[:, 47, 65].sum() == 0 and out[:, 40, 60].sum() == 0  # low score: nothing drawn
    assert rgb(out, 20, 20) == list(color_palette(3)[1])  # keypoint dot in the class colour
    ground_truth = {"boxes": prediction["boxes"], "labels": prediction["labels"]}
    assert draw_detections(image, ground_truth)[:, 40, 60].sum() > 0


def test_save_image(tmp_path):
    image = torch.zeros(3, 6, 7, dtype=torch.uint8)
    image[0] = 200
    path = save_image(image, tmp_path / "sub" / "out.png")
    with Image.open(path) as saved:
        assert saved.size == (7, 6) and saved.getpixel((0, 0)) == (200, 0, 0)
    save_image(torch.rand(6, 7), tmp_path / "gray.jpg")
    with pytest.raises(ValueError, match="unknown suffix"):
        save_image(image, tmp_path / "out.nope")


def test_make_grid_tiles_with_padding():
    images = torch.stack([torch.full((1, 2, 3), float(v)) for v in (0.25, 0.5, 0.75)])  # three gray 2x3 images
    grid = make_grid(images, nrow=2, padding=1, pad_value=1.0)
    # 2 columns x 2 rows of (2 + 1) x (3 + 1) cells, plus the outer padding; gray expanded to 3 channels.
    assert grid.shape == (3, 2 * 3 + 1, 2 * 4 + 1)
    assert grid[:, 1, 1].tolist() == [0.25] * 3 and grid[:, 1, 5].tolist() == [0.5] * 3
    assert grid[:, 4, 1].tolist() == [0.75] * 3 and grid[:, 4, 5].tolist() == [1.0] * 3  # empty cell: pad value
    assert grid[:, 0, 0].tolist() == [1.0] * 3 and grid[:, 3, 2].tolist() == [1.0] * 3
    normalized = make_grid(images * 4, normalize=True, padding=0)
    assert normalized.min() == 0 and normalized.max() == 1 and normalized.shape == (3, 2, 9)
    assert torch.equal(make_grid(images[0]), images[0].expand(3, -1, -1))  # one image: no padding


def test_save_image_of_a_batch_rounds_like_torchvision(tmp_path):
    batch = torch.full((2, 3, 4, 4), 0.5)
    save_image(batch, tmp_path / "grid.png", padding=0)
    with Image.open(tmp_path / "grid.png") as saved:
        assert saved.size == (8, 4) and saved.getpixel((0, 0)) == (128, 128, 128)  # 0.5 * 255 + 0.5 -> 128


def test_palette_is_stable_and_distinct():
    assert color_palette(3) == color_palette(10)[:3] and len(set(color_palette(20))) == 20
