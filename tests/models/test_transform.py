import pytest
import torch

from torchdet.models.image_list import ImageList
from torchdet.models.transform import GeneralizedRCNNTransform, resize_boxes

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def _images():
    g = torch.Generator().manual_seed(0)
    return [torch.rand(3, 240, 320, generator=g), torch.rand(3, 300, 200, generator=g)]


def test_resize_sizes_and_padding():
    t = GeneralizedRCNNTransform(256, 400, MEAN, STD).eval()
    batch, targets = t(_images())
    assert isinstance(batch, ImageList) and targets is None
    # 240x320: scale min(256/240, 400/320) -> 256x341; 300x200: min(256/200, 400/300) = 1.28 -> 384x256
    # (the scale is a double: in float32, 1.28 is 1.2799999714 and floor(300 * s) would be 383).
    assert batch.image_sizes == [(256, 341), (384, 256)]
    assert batch.tensors.shape == (2, 3, 384, 352)  # padded up to multiples of 32
    assert float(batch.tensors[0, :, 256:].abs().sum()) == 0 and float(batch.tensors[0, :, :, 341:].abs().sum()) == 0


def test_max_size_caps_long_side():
    t = GeneralizedRCNNTransform(800, 1000, MEAN, STD).eval()
    batch, _ = t([torch.rand(3, 100, 400)])
    assert batch.image_sizes == [(250, 1000)]
    assert batch.tensors.shape == (1, 3, 256, 1024)


def test_normalize():
    t = GeneralizedRCNNTransform(8, 8, MEAN, STD, size_divisible=1).eval()
    image = torch.full((3, 8, 8), 0.5)
    batch, _ = t([image])
    expected = (0.5 - torch.tensor(MEAN)) / torch.tensor(STD)
    torch.testing.assert_close(batch.tensors[0, :, 0, 0], expected)


def test_targets_resized_and_caller_untouched():
    t = GeneralizedRCNNTransform(256, 400, MEAN, STD).train()
    boxes = torch.tensor([[10.0, 20.0, 200.0, 150.0]])
    targets = [{"boxes": boxes, "labels": torch.tensor([1])}, {"boxes": boxes, "labels": torch.tensor([2])}]
    _, out = t(_images(), targets)
    assert targets[0]["boxes"] is boxes  # the caller's dicts are not modified
    torch.testing.assert_close(out[0]["boxes"], boxes * torch.tensor([341 / 320, 256 / 240, 341 / 320, 256 / 240]))
    torch.testing.assert_close(out[1]["boxes"], boxes * 1.28)


def test_masks_resized_nearest():
    t = GeneralizedRCNNTransform(20, 100, MEAN, STD).eval()
    masks = torch.zeros(1, 10, 10, dtype=torch.uint8)
    masks[0, :5, :5] = 1
    target = {"boxes": torch.tensor([[0.0, 0.0, 5.0, 5.0]]), "labels": torch.tensor([1]), "masks": masks}
    _, (out,) = t([torch.rand(3, 10, 10)], [target])
    assert out["masks"].shape == (1, 20, 20) and out["masks"].dtype == torch.uint8
    assert int(out["masks"].sum()) == 100


def test_random_min_size_in_training_and_last_in_eval():
    t = GeneralizedRCNNTransform((64, 96, 128), 1000, MEAN, STD)
    torch.manual_seed(0)
    seen = {t(_images()[:1])[0].image_sizes[0][0] for _ in range(20)}
    assert seen <= {64, 96, 128} and len(seen) > 1
    t.eval()
    assert t(_images()[:1])[0].image_sizes[0][0] == 128


def test_skip_resize_and_fixed_size():
    t = GeneralizedRCNNTransform(64, 100, MEAN, STD, _skip_resize=True).train()
    assert t(_images())[0].image_sizes == [(240, 320), (300, 200)]
    t = GeneralizedRCNNTransform(300, 300, MEAN, STD, size_divisible=1, fixed_size=(300, 300)).eval()
    batch, _ = t(_images())
    assert batch.image_sizes == [(300, 300), (300, 300)] and batch.tensors.shape == (2, 3, 300, 300)


def test_postprocess_round_trip():
    t = GeneralizedRCNNTransform(256, 400, MEAN, STD).eval()
    boxes = torch.tensor([[10.0, 20.0, 200.0, 150.0], [0.0, 0.0, 320.0, 240.0]])
    (resized,) = [resize_boxes(boxes, (240, 320), (256, 341))]
    out = t.postprocess([{"boxes": resized}], [(256, 341)], [(240, 320)])
    torch.testing.assert_close(out[0]["boxes"], boxes, atol=1e-4, rtol=0)
    t.train()
    same = [{"boxes": resized}]
    assert t.postprocess(same, [(256, 341)], [(240, 320)]) is same


def test_integer_images_rejected():
    t = GeneralizedRCNNTransform(32, 32, MEAN, STD).eval()
    with pytest.raises(TypeError, match="floating point"):
        t([torch.zeros(3, 8, 8, dtype=torch.uint8)])


def test_scripted_transform_matches_eager():
    t = GeneralizedRCNNTransform((200, 256), 400, MEAN, STD).eval()
    scripted = torch.jit.script(t)
    expected, got = t(_images())[0], scripted(_images())[0]
    assert got.image_sizes == expected.image_sizes == [(256, 341), (384, 256)]
    assert torch.equal(got.tensors, expected.tensors)


def test_traced_transform_follows_the_input_size():
    """Traced at one size, the resize, padding and box rescale follow another (no baked-in sizes)."""
    import warnings

    t = GeneralizedRCNNTransform(256, 400, MEAN, STD).eval()
    boxes = torch.tensor([[10.0, 20.0, 100.0, 150.0]])

    def run(image):
        batch, _ = t([image])
        size = [(image.shape[-2], image.shape[-1])]
        rescaled = t.postprocess([{"boxes": boxes.clone()}], batch.image_sizes, size)[0]["boxes"]
        return batch.tensors, rescaled

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(run, torch.rand(3, 240, 320), check_trace=False)
    for size in [(300, 200), (200, 272), (100, 500)]:
        image = torch.rand(3, *size)
        (expected_batch, expected_boxes), (batch, rescaled) = run(image), traced(image)
        assert batch.shape == expected_batch.shape
        torch.testing.assert_close(batch, expected_batch)
        torch.testing.assert_close(rescaled, expected_boxes)
