import pytest
import torch

from torchdet.models.validation import as_image_list, check_images, check_targets, validate_inputs


def _images(n=2):
    return [torch.rand(3, 24, 32) for _ in range(n)]


def _target(n=2, h=24, w=32):
    boxes = torch.tensor([[1.0, 2.0, 10.0, 12.0], [5.0, 5.0, 20.0, 22.0]])[:n]
    return {"boxes": boxes, "labels": torch.ones(n, dtype=torch.int64)}


def test_batched_tensor_becomes_list():
    images = as_image_list(torch.rand(2, 3, 8, 8))
    assert isinstance(images, list) and len(images) == 2 and images[0].shape == (3, 8, 8)
    with pytest.raises(ValueError, match=r"\[3, 8, 8\].*model\(\[image\]\)"):
        as_image_list(torch.rand(3, 8, 8))


def test_good_inputs_pass():
    images = _images()
    targets = [_target(), {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    assert validate_inputs(images, targets, training=True) == images
    assert len(validate_inputs(torch.rand(2, 3, 8, 8), None, training=False)) == 2


def test_image_errors_name_index():
    with pytest.raises(ValueError, match=r"image 1 has 4 channels \(shape \[4, 24, 32\]\); convert to RGB"):
        check_images([torch.rand(3, 24, 32), torch.rand(4, 24, 32)])
    with pytest.raises(ValueError, match="image 0 has shape \\[24, 32\\]"):
        check_images([torch.rand(24, 32)])
    with pytest.raises(ValueError, match="image 0 has dtype torch.uint8"):
        check_images([torch.zeros(3, 4, 4, dtype=torch.uint8)])


@pytest.mark.parametrize("bad, message", [
    ({"boxes": torch.tensor([[1.0, 2.0, 10.0]]), "labels": torch.tensor([1])}, r"image 1 must be a tensor of shape \[N, 4\]"),
    ({"boxes": torch.tensor([[1, 2, 10, 12]]), "labels": torch.tensor([1])}, "image 1 have dtype torch.int64"),
    ({"boxes": torch.tensor([[10.0, 2.0, 10.0, 12.0]]), "labels": torch.tensor([1])},
     r"x1 < x2 and y1 < y2.*image 1, box 0 is \[10.0, 2.0, 10.0, 12.0\]"),
    ({"boxes": torch.tensor([[0.0, 0, 5, 5], [1.0, 9.0, 4.0, 3.0]]), "labels": torch.tensor([1, 1])}, "image 1, box 1"),
    ({"boxes": torch.tensor([[0.0, 0, float("nan"), 5]]), "labels": torch.tensor([1])}, "finite; image 1, box 0"),
    ({"boxes": torch.tensor([[1.0, 2.0, 10.0, 12.0]]), "labels": torch.tensor([1], dtype=torch.int32)}, "image 1 have dtype torch.int32"),
    ({"boxes": torch.tensor([[1.0, 2.0, 10.0, 12.0]]), "labels": torch.tensor([1, 2])}, "image 1 has 2 labels for 1 boxes"),
    ({"labels": torch.tensor([1])}, r"image 1 lacks \['boxes'\]"),
])
def test_target_errors_name_index(bad, message):
    with pytest.raises(ValueError, match=message):
        validate_inputs(_images(), [_target(), bad], training=True)


def test_target_count_and_presence():
    with pytest.raises(ValueError, match="targets are required in training"):
        validate_inputs(_images(), None, training=True)
    with pytest.raises(ValueError, match="got 1 targets for 2 images"):
        validate_inputs(_images(), [_target()], training=True)
    # Eval accepts targets (checked) and no targets.
    validate_inputs(_images(), [_target(), _target()], training=False)
    with pytest.raises(ValueError, match="image 0"):
        validate_inputs(_images(), [_target(1) | {"labels": torch.tensor([1, 2])}, _target()], training=False)


def test_masks_and_keypoints():
    images = _images()
    good = [dict(_target(), masks=torch.zeros(2, 24, 32, dtype=torch.uint8), keypoints=torch.zeros(2, 17, 3))
            for _ in images]
    check_targets(images, good, require_masks=True, require_keypoints=True)
    with pytest.raises(ValueError, match=r"image 0 lacks \['masks'\]"):
        check_targets(images, [_target(), _target()], require_masks=True)
    bad = [good[0], dict(good[1], masks=torch.zeros(2, 24, 30))]
    with pytest.raises(ValueError, match=r"masks of image 1 have size \[24, 30\] but the image is \[24, 32\]"):
        check_targets(images, bad)
    bad = [good[0], dict(good[1], masks=torch.zeros(3, 24, 32))]
    with pytest.raises(ValueError, match="image 1 has 3 masks for 2 boxes"):
        check_targets(images, bad)
    bad = [dict(good[0], keypoints=torch.zeros(2, 17, 2)), good[1]]
    with pytest.raises(ValueError, match=r"keypoints of image 0 must be a tensor of shape \[N, K, 3\]"):
        check_targets(images, bad)
    bad = [good[0], dict(good[1], keypoints=torch.zeros(1, 17, 3))]
    with pytest.raises(ValueError, match="image 1 has keypoints for 1 instances and 2 boxes"):
        check_targets(images, bad)


def test_an_image_without_objects_may_carry_any_empty_keypoints():
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
             "keypoints": torch.zeros(17, 0, 3)}  # the layout torchvision's negative-sample test uses
    check_targets(_images(1), [empty], require_keypoints=True)
    with pytest.raises(ValueError, match="keypoints for 17 instances and 0 boxes"):
        check_targets(_images(1), [dict(empty, keypoints=torch.zeros(17, 1, 3))], require_keypoints=True)
