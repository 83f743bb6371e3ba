"""weights.transforms(): the detection preset (and the ImageNet one of the backbones)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from torchdet.weights import detection
from torchdet.weights.backbone import ResNet50_Weights, VGG16_Weights
from torchdet.weights.presets import ImageClassification, ObjectDetection


def _pixels(h: int = 5, w: int = 7, c: int = 3) -> np.ndarray:
    return (np.arange(h * w * c, dtype=np.int64).reshape(h, w, c) * 37 % 256).astype(np.uint8)


@pytest.mark.parametrize("name", detection.__all__)
def test_every_detection_enum_gives_the_detection_preset(name: str) -> None:
    for member in getattr(detection, name):
        assert isinstance(member.transforms(), ObjectDetection)


def test_pil_rgb_becomes_float_chw_scaled_by_255() -> None:
    pixels = _pixels()
    out = ObjectDetection()(Image.fromarray(pixels))
    assert out.dtype == torch.float32 and out.shape == (3, 5, 7)
    assert torch.equal(out, torch.from_numpy(pixels).permute(2, 0, 1).float() / 255)


def test_pil_grayscale_and_rgba_keep_their_channels() -> None:
    gray = ObjectDetection()(Image.fromarray(_pixels(c=3)[..., 0]))
    assert gray.shape == (1, 5, 7) and float(gray.max()) <= 1.0
    rgba = ObjectDetection()(Image.fromarray(_pixels(c=4), mode="RGBA"))
    assert rgba.shape == (4, 5, 7)


@pytest.mark.parametrize("batched", [False, True])
def test_uint8_tensor_is_scaled(batched: bool) -> None:
    image = torch.from_numpy(_pixels()).permute(2, 0, 1)  # [3, 5, 7]
    if batched:
        image = torch.stack([image, 255 - image])  # [2, 3, 5, 7]
    out = ObjectDetection()(image)
    assert out.dtype == torch.float32 and out.shape == image.shape
    assert torch.equal(out, image.float() / 255)
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0


@pytest.mark.parametrize("shape", [(3, 4, 6), (2, 3, 4, 6)])
def test_float_tensor_is_returned_unchanged(shape: tuple) -> None:
    image = torch.rand(shape)
    out = ObjectDetection()(image)
    assert out.dtype == torch.float32 and torch.equal(out, image)
    out64 = ObjectDetection()(image.double())
    assert out64.dtype == torch.float32 and torch.allclose(out64, image)


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match=r"\(4, 6\)"):
        ObjectDetection()(torch.rand(4, 6))
    with pytest.raises(TypeError, match="ndarray"):
        ObjectDetection()(np.zeros((3, 4, 4)))


def test_repr_and_describe() -> None:
    assert repr(ObjectDetection()) == "ObjectDetection()"
    assert "[0.0, 1.0]" in ObjectDetection().describe()


def test_imagenet_preset_resizes_crops_and_normalises() -> None:
    preset = ResNet50_Weights.IMAGENET1K_V2.transforms()
    assert isinstance(preset, ImageClassification)
    assert preset.crop_size == [224] and preset.resize_size == [232]
    grey = torch.full((3, 300, 400), 128, dtype=torch.uint8)
    out = preset(grey)
    assert out.shape == (3, 224, 224) and out.dtype == torch.float32
    expected = (128 / 255 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(out.mean(dim=(1, 2)), expected, atol=1e-3)
    pil = preset(Image.fromarray(np.full((300, 400, 3), 128, dtype=np.uint8)))
    assert torch.allclose(pil, out, atol=1e-3)
    assert preset(torch.rand(2, 3, 100, 50)).shape == (2, 3, 224, 224)


def test_vgg_features_preset_uses_the_ssd_standardisation() -> None:
    preset = VGG16_Weights.IMAGENET1K_FEATURES.transforms()
    assert preset.mean == [0.48235, 0.45882, 0.40784] and preset.std == [1.0 / 255.0] * 3
    assert VGG16_Weights.IMAGENET1K_V1.transforms().resize_size == [256]
