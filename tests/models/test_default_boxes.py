"""DefaultBoxGenerator: scales, (w, h) pair order and box placement, checked by hand."""
import math

import pytest
import torch

from torchdet.models.default_boxes import DefaultBoxGenerator
from torchdet.models.image_list import ImageList


def _boxes(gen, image_hw, grids, num_images=1):
    images = ImageList(torch.zeros(num_images, 3, *image_hw), [tuple(image_hw)] * num_images)
    features = [torch.zeros(num_images, 4, h, w) for h, w in grids]
    return gen(images, features)


def test_linear_scales_end_with_one():
    gen = DefaultBoxGenerator([[2], [2, 3], [2]], min_ratio=0.2, max_ratio=0.8)
    assert gen.scales == pytest.approx([0.2, 0.5, 0.8, 1.0])
    assert gen.num_anchors_per_location() == [4, 6, 4]


def test_single_map_scales_are_min_and_max():
    assert DefaultBoxGenerator([[2]], min_ratio=0.1, max_ratio=0.6).scales == [0.1, 0.6]


def test_ssdlite_scales_match_torchvision_formula():
    gen = DefaultBoxGenerator([[2, 3]] * 6, min_ratio=0.2, max_ratio=0.95)
    expected = [0.2 + 0.75 * k / 5.0 for k in range(6)] + [1.0]
    assert gen.scales == expected  # exact, same float operations


def test_hand_checked_boxes_one_cell_per_map():
    # One 1x1 map on a 100x200 (H x W) image, scale 0.2 then 0.45, aspect ratio 4.
    gen = DefaultBoxGenerator([[4]], scales=[0.2, 0.45])
    (boxes,) = _boxes(gen, (100, 200), [(1, 1)])
    s, s_prime = 0.2, math.sqrt(0.2 * 0.45)  # 0.3
    pairs = [(s, s), (s_prime, s_prime), (s * 2, s / 2), (s / 2, s * 2)]
    expected = torch.tensor([[(0.5 - w / 2) * 200, (0.5 - h / 2) * 100, (0.5 + w / 2) * 200, (0.5 + h / 2) * 100]
                             for w, h in pairs])
    torch.testing.assert_close(boxes, expected)
    # e.g. the wide box: w = 0.4 of 200 px, h = 0.1 of 100 px, centred at (100, 50)
    torch.testing.assert_close(boxes[2], torch.tensor([60.0, 45.0, 140.0, 55.0]))


def test_centres_row_major_and_steps():
    gen = DefaultBoxGenerator([[2]], scales=[0.1, 0.1], steps=[50])
    (boxes,) = _boxes(gen, (100, 100), [(2, 2)])
    assert boxes.shape == (2 * 2 * 4, 4)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    # cells (y, x) row-major, 4 boxes each, centres at (x + 0.5) * step
    expected = torch.tensor([[25.0, 25.0], [75.0, 25.0], [25.0, 75.0], [75.0, 75.0]]).repeat_interleave(4, 0)
    torch.testing.assert_close(centres, expected)


def test_without_steps_centres_follow_the_grid():
    gen = DefaultBoxGenerator([[2]], scales=[0.1, 0.1])
    (boxes,) = _boxes(gen, (90, 120), [(3, 4)])
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    torch.testing.assert_close(centres[0], torch.tensor([15.0, 15.0]))  # (0.5 / 4 * 120, 0.5 / 3 * 90)
    torch.testing.assert_close(centres[-1], torch.tensor([105.0, 75.0]))


def test_clip_limits_relative_sizes_to_one():
    clipped = DefaultBoxGenerator([[4]], scales=[0.9, 1.2])
    unclipped = DefaultBoxGenerator([[4]], scales=[0.9, 1.2], clip=False)
    (a,) = _boxes(clipped, (10, 10), [(1, 1)])
    (b,) = _boxes(unclipped, (10, 10), [(1, 1)])
    assert (a[:, 2:] - a[:, :2]).max() <= 10.0 + 1e-5
    assert (b[:, 2:] - b[:, :2]).max() > 10.0


def test_ssd300_box_count_and_one_set_per_image():
    gen = DefaultBoxGenerator([[2], [2, 3], [2, 3], [2, 3], [2], [2]],
                              scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05], steps=[8, 16, 32, 64, 100, 300])
    grids = [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)]
    out = _boxes(gen, (300, 300), grids, num_images=2)
    assert len(out) == 2 and out[0].shape == (8732, 4)
    torch.testing.assert_close(out[0], out[1])
    # first box: scale 0.07 of 300 = 21 px, centred at 4 px (step 8)
    torch.testing.assert_close(out[0][0], torch.tensor([4 - 10.5, 4 - 10.5, 4 + 10.5, 4 + 10.5]))


def test_steps_length_must_match():
    with pytest.raises(ValueError, match="same length"):
        DefaultBoxGenerator([[2], [2]], steps=[8])
