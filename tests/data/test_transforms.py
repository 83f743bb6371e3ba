"""Detection transforms keep boxes, masks and keypoints consistent with the image."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from torchdet.data.coco import CocoDetection
from torchdet.data.synthetic import SHAPES_KEYPOINT_FLIP_INDICES
from torchdet.data.transforms import (
    COCO_PERSON_KEYPOINT_FLIP_INDICES,
    Compose,
    DroppedBoxesWarning,
    RandomHorizontalFlip,
    RandomIoUCrop,
    RandomPhotometricDistort,
    RandomResize,
    RandomZoomOut,
    SanitizeBoxes,
    ScaleJitter,
    ToTensor,
    hsv_to_rgb,
    rgb_to_hsv,
)


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """xyxy boxes [N, 4] of binary masks [N, H, W] (each non-empty)."""
    boxes = []
    for mask in masks:
        ys, xs = torch.nonzero(mask, as_tuple=True)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return torch.tensor(boxes, dtype=torch.float32)


def sample(height: int = 40, width: int = 60):
    """A random image and a target whose masks are exactly their boxes (integer coordinates)."""
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(3, height, width, generator=generator)
    boxes = torch.tensor([[5.0, 4.0, 20.0, 30.0], [30.0, 10.0, 58.0, 22.0], [0.0, 0.0, 8.0, 8.0]])
    masks = torch.zeros(3, height, width, dtype=torch.uint8)
    for mask, (x1, y1, x2, y2) in zip(masks, boxes.int().tolist()):
        mask[y1:y2, x1:x2] = 1
    keypoints = torch.stack([boxes[:, :2], boxes[:, 2:], (boxes[:, :2] + boxes[:, 2:]) / 2], dim=1)
    keypoints = torch.cat([keypoints, torch.full((3, 3, 1), 2.0)], dim=2)  # [N, 3, 3]
    target = {
        "boxes": boxes,
        "labels": torch.tensor([1, 2, 3]),
        "masks": masks,
        "keypoints": keypoints,
        "area": torch.tensor([1.0, 2.0, 3.0]),
        "iscrowd": torch.zeros(3, dtype=torch.int64),
        "image_id": 7,
    }
    return image, target


def assert_consistent(image, target):
    """Every per-instance field has N rows; masks match the image size and their boxes."""
    n = len(target["boxes"])
    for key in ("labels", "masks", "keypoints", "area", "iscrowd"):
        assert len(target[key]) == n, key
    assert target["masks"].shape[-2:] == image.shape[-2:]


# -- flip ---------------------------------------------------------------------------------------


def test_flip_twice_is_identity():
    image, target = sample()
    flip = RandomHorizontalFlip(p=1.0, keypoint_flip_indices=[0, 1, 2])
    once_image, once = flip(image, target)
    assert not torch.equal(once_image, image)
    twice_image, twice = flip(once_image, once)
    assert torch.equal(twice_image, image)
    for key in ("boxes", "masks", "keypoints", "labels"):
        assert torch.equal(twice[key], target[key]), key


def test_flipped_mask_box_is_flipped_box():
    image, target = sample()
    flipped_image, flipped = RandomHorizontalFlip(p=1.0)(image, target)
    torch.testing.assert_close(mask_boxes(flipped["masks"]), flipped["boxes"])
    torch.testing.assert_close(flipped["boxes"][0], torch.tensor([40.0, 4.0, 55.0, 30.0]))
    assert torch.equal(flipped_image[:, :, 0], image[:, :, -1])


def test_keypoint_flip_indices_swap_left_and_right():
    # shapes keypoints: center, top, right, bottom, left
    keypoints = torch.tensor([[[50.0, 50, 2], [50, 10, 2], [90, 50, 2], [50, 90, 2], [10, 50, 1]]])
    target = {"boxes": torch.tensor([[10.0, 10, 90, 90]]), "labels": torch.tensor([1]), "keypoints": keypoints}
    _, flipped = RandomHorizontalFlip(1.0, SHAPES_KEYPOINT_FLIP_INDICES)(torch.zeros(3, 100, 120), target)
    # old left (10, 50, v=1) mirrored to x = 110 is the new "right" (index 2)
    assert flipped["keypoints"][0, 2].tolist() == [110.0, 50.0, 1.0]
    assert flipped["keypoints"][0, 4].tolist() == [30.0, 50.0, 2.0]
    assert flipped["keypoints"][0, 0].tolist() == [70.0, 50.0, 2.0]


def test_coco_person_flip_indices_are_an_involution():
    indices = COCO_PERSON_KEYPOINT_FLIP_INDICES
    assert len(indices) == 17 and [indices[i] for i in indices] == list(range(17))
    assert indices[1] == 2 and indices[15] == 16  # left_eye <-> right_eye, left_ankle <-> right_ankle


def test_flip_checks_its_indices():
    with pytest.raises(ValueError, match="not a permutation"):
        RandomHorizontalFlip(1.0, [0, 0, 1])
    image, target = sample()
    with pytest.raises(ValueError, match="K=3 points but keypoint_flip_indices has 17"):
        RandomHorizontalFlip(1.0, COCO_PERSON_KEYPOINT_FLIP_INDICES)(image, target)


def test_flip_probability_zero_and_no_target():
    image, target = sample()
    assert RandomHorizontalFlip(p=0.0)(image, target)[1] is target
    flipped, none = RandomHorizontalFlip(p=1.0)(image, None)
    assert none is None and torch.equal(flipped, image.flip(-1))


# -- resizes ------------------------------------------------------------------------------------


def test_random_resize_scales_everything():
    image, target = sample()
    resized_image, resized = RandomResize([20])(image, target)
    assert resized_image.shape == (3, 20, 30)
    torch.testing.assert_close(resized["boxes"], target["boxes"] / 2)
    torch.testing.assert_close(resized["keypoints"][..., :2], target["keypoints"][..., :2] / 2)
    torch.testing.assert_close(mask_boxes(resized["masks"]), resized["boxes"], atol=1.0, rtol=0)
    torch.testing.assert_close(resized["area"], target["area"] / 4)
    assert resized["masks"].dtype == torch.uint8
    assert 0 <= resized_image.min() and resized_image.max() <= 1


def test_random_resize_max_size_and_choices():
    image, target = sample()
    assert RandomResize(800, max_size=90)(image, target)[0].shape == (3, 60, 90)
    torch.manual_seed(0)
    sizes = {RandomResize([10, 20, 30])(image, None)[0].shape[-2] for _ in range(30)}
    assert sizes == {10, 20, 30}


def test_scale_jitter_range():
    image, target = sample()
    torch.manual_seed(0)
    for _ in range(10):
        out, resized = ScaleJitter((80, 120), scale_range=(0.5, 1.5))(image, target)
        assert 39 <= out.shape[-2] <= 121 and out.shape[-1] == pytest.approx(out.shape[-2] * 1.5, abs=2)
        assert_consistent(out, resized)


# -- photometric --------------------------------------------------------------------------------


def test_hsv_round_trip():
    image = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(hsv_to_rgb(rgb_to_hsv(image)), image, atol=1e-5, rtol=0)
    hsv = rgb_to_hsv(torch.tensor([1.0, 0.0, 0.0]).reshape(3, 1, 1))
    assert hsv.flatten().tolist() == [0.0, 1.0, 1.0]


def test_photometric_distort_changes_only_the_image():
    image, target = sample()
    torch.manual_seed(0)
    out, same = RandomPhotometricDistort(p=1.0)(image, target)
    assert same is target and out.shape == image.shape
    assert not torch.allclose(out, image) and 0 <= out.min() and out.max() <= 1
    with pytest.raises(ValueError, match="hue"):
        RandomPhotometricDistort(hue=(-0.7, 0.1))


# -- SSD zoom out and IoU crop ------------------------------------------------------------------


def test_zoom_out_moves_everything_together():
    image, target = sample()
    torch.manual_seed(3)
    out, zoomed = RandomZoomOut(fill=0.25, side_range=(2.0, 3.0), p=1.0)(image, target)
    assert out.shape[-2] >= 80 and out.shape[-1] >= 120
    assert_consistent(out, zoomed)
    shift = zoomed["boxes"][0, :2] - target["boxes"][0, :2]
    left, top = int(shift[0]), int(shift[1])
    assert torch.equal(out[:, top : top + 40, left : left + 60], image)
    assert (out[:, :top] == 0.25).all() and (out[:, :, :left] == 0.25).all()
    torch.testing.assert_close(mask_boxes(zoomed["masks"]), zoomed["boxes"])
    torch.testing.assert_close(zoomed["keypoints"][..., :2], target["keypoints"][..., :2] + shift)


def test_zoom_out_default_fill_is_the_mean_pixel():
    torch.manual_seed(0)
    out, _ = RandomZoomOut(side_range=(4.0, 4.0), p=1.0)(torch.zeros(3, 4, 4), None)
    corner = out[:, 0, 0] if out[:, 0, 0].sum() > 0 else out[:, -1, -1]
    torch.testing.assert_close(corner, torch.tensor([123.0, 117.0, 104.0]) / 255)


def test_iou_crop_keeps_targets_consistent():
    image, target = sample()
    crop = RandomIoUCrop()
    torch.manual_seed(0)
    cropped_any = False
    for _ in range(20):
        out, cropped = crop(image, target)
        assert_consistent(out, cropped)
        cropped_any |= out.shape != image.shape
        boxes = cropped["boxes"]
        assert (boxes[:, 0::2] <= out.shape[-1]).all() and (boxes[:, 1::2] <= out.shape[-2]).all() and (boxes >= 0).all()
        # masks are exact rectangles, so the cropped mask's box is the clipped box
        torch.testing.assert_close(mask_boxes(cropped["masks"]), boxes)
        original = {tuple(label) for label in target["labels"][:, None].tolist()}
        assert {tuple(label) for label in cropped["labels"][:, None].tolist()} <= original
    assert cropped_any


def test_iou_crop_option_one_and_no_boxes_are_identity():
    image, target = sample()
    out, same = RandomIoUCrop(sampler_options=[1.0])(image, target)
    assert out is image and same is target
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    assert RandomIoUCrop()(image, empty)[1] is empty
    with pytest.raises(ValueError, match="needs a target"):
        RandomIoUCrop()(image, None)


# -- sanitize -----------------------------------------------------------------------------------


def test_sanitize_drops_consistently_and_counts():
    image, target = sample()
    target = dict(target)
    target["boxes"] = torch.tensor([[5.0, 4.0, 20.0, 30.0], [70.0, 10.0, 80.0, 22.0], [-5.0, 3.0, 8.0, 3.5]])
    sanitize = SanitizeBoxes(min_size=1.0)
    with pytest.warns(DroppedBoxesWarning, match=r"dropped 2 of 3 boxes.*image_id 7"):
        _, clean = sanitize(image, target)
    assert clean["boxes"].tolist() == [[5.0, 4.0, 20.0, 30.0]]
    assert clean["labels"].tolist() == [1] and clean["keypoints"].shape == (1, 3, 3)
    assert clean["masks"].shape == (1, 40, 60) and clean["area"].tolist() == [1.0]
    assert sanitize.num_dropped == 2 and clean["image_id"] == 7

    target["boxes"] = torch.tensor([[-5.0, -5.0, 10.0, 10.0], [0.0, 0.0, 0.5, 0.5], [1.0, 1.0, 2.0, 2.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, clean = SanitizeBoxes(min_size=0.0, warn=False)(image, target)
    assert clean["boxes"].tolist() == [[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 0.5, 0.5], [1.0, 1.0, 2.0, 2.0]]


# -- pipeline -----------------------------------------------------------------------------------


def test_to_tensor():
    pil = Image.fromarray(np.full((4, 5), 255, dtype=np.uint8), mode="L")
    tensor, _ = ToTensor()(pil, None)
    assert tensor.shape == (3, 4, 5) and tensor.dtype == torch.float32 and tensor.max() == 1.0
    assert ToTensor()(torch.full((3, 2, 2), 51, dtype=torch.uint8))[0].max() == pytest.approx(0.2)
    with pytest.raises(ValueError, match="uint8 or floating point"):
        ToTensor()(torch.zeros(3, 2, 2, dtype=torch.int32))


def _ssd_pipeline():
    return Compose(
        [
            RandomPhotometricDistort(),
            RandomZoomOut(p=0.5),
            RandomIoUCrop(),
            RandomHorizontalFlip(0.5, SHAPES_KEYPOINT_FLIP_INDICES),
            SanitizeBoxes(warn=False),
        ]
    )


def test_pipeline_is_deterministic_under_manual_seed(shapes_files):
    dataset = CocoDetection(shapes_files["train"], transforms=_ssd_pipeline(), with_masks=True, with_keypoints=True)
    runs = []
    for _ in range(2):
        torch.manual_seed(42)
        runs.append([dataset[i] for i in range(4)])
    for (image_a, target_a), (image_b, target_b) in zip(*runs):
        assert torch.equal(image_a, image_b)
        for key in ("boxes", "labels", "masks", "keypoints"):
            assert torch.equal(target_a[key], target_b[key])
        assert_consistent(image_a, target_a)
        assert target_a["keypoints"].shape[1:] == (5, 3)
