"""Drawing helpers: pixels change where expected, dtype and shape are kept, errors are clear."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from torchdet.visualization import (
    color_palette,
    draw_bounding_boxes,
    draw_detections,
    draw_keypoints,
    draw_segmentation_masks,
    save_image,
)


def blank(height=40, width=50, dtype=torch.uint8):
    return torch.zeros(3, height, width, dtype=dtype)


def test_boxes_draw_the_outline_only():
    image = blank()
    out = draw_bounding_boxes(image, torch.tensor([[10.0, 5.0, 30.0, 25.0]]), colors="red", width=1)
    assert out.dtype == torch.uint8 and out.shape == (3, 40, 50)
    assert out[:, 5, 20].tolist() == [255, 0, 0] and out[:, 15, 10].tolist() == [255, 0, 0]
    assert out[:, 15, 20].sum() == 0 and out[:, 0, 0].sum() == 0  # inside and outside untouched
    assert image.sum() == 0  # input not modified


def test_boxes_fill_labels_and_float_images():
    image = blank(dtype=torch.float32)
    boxes = torch.tensor([[10.0, 5.0, 30.0, 25.0], [0.0, 0.0, 5.0, 5.0]])
    out = draw_bounding_boxes(image, boxes, labels=["cat", "dog"], colors=[(0, 0, 255), "#00ff00"], fill=True, width=2, font_size=8)
    assert out.dtype == torch.float32 and out.shape == image.shape and 0 <= out.min() and out.max() <= 1
    assert out[2, 20, 25] > 0.2 and out[0, 20, 25] == 0  # filled with translucent blue
    gray = draw_bounding_boxes(torch.zeros(1, 8, 8, dtype=torch.uint8), torch.tensor([[1.0, 1.0, 6.0, 6.0]]))
    assert gray.shape == (3, 8, 8)
    assert torch.equal(draw_bounding_boxes(image, torch.zeros(0, 4)), image)


@pytest.mark.parametrize(
    "image, boxes, kwargs, error, message",
    [
        (blank(), torch.tensor([[5.0, 5.0, 1.0, 9.0]]), {}, ValueError, r"box 0 is \[5.0, 5.0, 1.0, 9.0\]"),
        (blank(), torch.zeros(2, 5), {}, ValueError, r"boxes must be a tensor \[N, 4\]"),
        (blank(), torch.zeros(2, 4), {"labels": ["a"]}, ValueError, "1 labels for 2 boxes"),
        (blank(), torch.zeros(2, 4), {"colors": ["red"]}, ValueError, "1 colours for 2 objects"),
        (blank(), torch.zeros(1, 4), {"colors": "nocolour"}, ValueError, "unknown colour"),
        (blank(dtype=torch.int32), torch.zeros(1, 4), {}, ValueError, "uint8 .* or float"),
        (torch.zeros(4, 5, 5, dtype=torch.uint8), torch.zeros(1, 4), {}, ValueError, r"\[1 or 3, H, W\]"),
        (blank() * 0 + 2.0, torch.zeros(1, 4), {}, ValueError, "values in 0..1"),
        ("image", torch.zeros(1, 4), {}, TypeError, "must be a tensor"),
    ],
)
def test_box_errors(image, boxes, kwargs, error, message):
    with pytest.raises(error, match=message):
        draw_bounding_boxes(image, boxes, **kwargs)


def test_masks_blend_inside_only():
    image = torch.full((3, 10, 10), 100, dtype=torch.uint8)
    masks = torch.zeros(2, 10, 10, dtype=torch.bool)
    masks[0, :5] = True
    masks[1, 3:6] = True  # overlaps mask 0: the later mask wins
    out = draw_segmentation_masks(image, masks, alpha=0.5, colors=["red", "blue"])
    assert out.dtype == torch.uint8 and out.shape == image.shape
    assert out[:, 0, 0].tolist() == [178, 50, 50]
    assert out[:, 4, 0].tolist() == [50, 50, 178]
    assert out[:, 8, 0].tolist() == [100, 100, 100]
    assert torch.equal(draw_segmentation_masks(image, masks[0], alpha=1.0, colors="lime")[:, 0, 0], torch.tensor([0, 255, 0], dtype=torch.uint8))


def test_mask_errors():
    with pytest.raises(ValueError, match="masks must be bool"):
        draw_segmentation_masks(blank(), torch.zeros(1, 40, 50))
    with pytest.raises(ValueError, match=r"masks are \(4, 4\) but the image is \(40, 50\)"):
        draw_segmentation_masks(blank(), torch.zeros(1, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="alpha"):
        draw_segmentation_masks(blank(), torch.zeros(1, 40, 50, dtype=torch.bool), alpha=2.0)


def test_keypoints_and_skeleton():
    keypoints = torch.tensor([[[10.0, 10.0, 2.0], [30.0, 10.0, 1.0], [20.0, 30.0, 0.0]]])
    out = draw_keypoints(blank(), keypoints, connectivity=[(0, 1), (1, 2)], colors="white", radius=2, width=1)
    assert out[:, 10, 10].tolist() == [255, 255, 255] and out[:, 10, 30].tolist() == [255, 255, 255]
    assert out[:, 10, 20].tolist() == [255, 255, 255]  # on the 0-1 line
    assert out[:, 30, 20].sum() == 0 and out[:, 20, 25].sum() == 0  # invisible point 2, no 1-2 line
    hidden = draw_keypoints(blank(), keypoints[..., :2], visibility=torch.tensor([[False, False, True]]), colors="white")
    assert hidden[:, 30, 20].sum() > 0 and hidden[:, 10, 10].sum() == 0
    with pytest.raises(ValueError, match=r"connectivity pair \(0, 5\)"):
        draw_keypoints(blank(), keypoints, connectivity=[(0, 5)])
    with pytest.raises(ValueError, match=r"\[N, K, 2\] or \[N, K, 3\]"):
        draw_keypoints(blank(), torch.zeros(3, 2))


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
        "keypoints": torch.tensor([[[20.0, 20.0, 1.0]], [[60.0, 45.0, 1.0]]]),
    }
    out = draw_detections(image, prediction, ["__background__", "circle", "square"], score_thresh=0.5)
    assert out.dtype == torch.uint8 and out.shape == (3, 60, 80)
    assert out[:, 25, 25].sum() > 0  # mask of the kept detection
    assert out[:, 47, 65].sum() == 0 and out[:, 40, 60].sum() == 0  # low score: nothing drawn
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


def test_palette_is_stable_and_distinct():
    assert color_palette(3) == color_palette(10)[:3] and len(set(color_palette(20))) == 20


def test_caption_of_a_box_at_the_right_edge_stays_inside_the_image():
    image = torch.zeros(3, 40, 100, dtype=torch.uint8)
    out = draw_bounding_boxes(image, torch.tensor([[80.0, 5.0, 99.0, 30.0]]), labels=["a long caption"],
                              colors=["red"])
    assert out[0, 5:20, :75].sum() > 0  # the text was moved left of the box
