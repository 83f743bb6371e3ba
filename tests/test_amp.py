"""Mixed precision: training losses under CPU bfloat16 autocast match float32; inference helpers."""
from __future__ import annotations

import pytest
import torch

from torchdet.amp import amp_dtype, autocast_active, float32_outputs, inference_autocast
from torchdet.bench.fill import fill_state_dict
from torchdet.bench.latency import benchmark_image, load_builder
from torchdet.bench.train_step import random_targets


def _losses(name: str, autocast: bool, size: int) -> dict:
    torch.manual_seed(0)
    model = load_builder(name)(weights=None, weights_backbone=None, min_size=size, max_size=size * 5 // 4)
    fill_state_dict(model, 3)
    model.train()
    images = [benchmark_image(size, size * 4 // 3, seed=i) for i in range(2)]
    targets = random_targets(2, size, size * 4 // 3)
    torch.manual_seed(1)
    with inference_autocast("cpu", autocast):
        losses = model(images, targets)
    return {k: v.detach() for k, v in losses.items()}


@pytest.mark.parametrize("name", ["retinanet_resnet50_fpn", "fcos_resnet50_fpn", "fasterrcnn_resnet50_fpn"])
def test_bfloat16_autocast_losses_match_float32(name: str) -> None:
    full, mixed = _losses(name, False, 128), _losses(name, True, 128)
    assert full.keys() == mixed.keys()
    for key in full:
        assert mixed[key].dtype == torch.float32, key
        # bfloat16 keeps 8 bits of mantissa through a ResNet-50: a few percent on each loss. The
        # second stage's box loss averages a handful of positives sampled among proposals that
        # move with the precision, so it only has to stay in range.
        rtol = 0.5 if key == "loss_box_reg" else 0.06
        assert abs(float(mixed[key]) - float(full[key])) <= rtol * abs(float(full[key])) + 1e-3, \
            (key, float(mixed[key]), float(full[key]))


def test_inference_autocast_and_outputs() -> None:
    assert amp_dtype("cuda") == torch.float16 and amp_dtype("cpu") == torch.bfloat16
    with inference_autocast("cpu", False):
        assert not autocast_active("cpu")
    with inference_autocast("cpu"):
        assert autocast_active("cpu")
        y = torch.mm(torch.ones(2, 2), torch.ones(2, 2))
    assert y.dtype == torch.bfloat16
    out = float32_outputs([{"boxes": y, "labels": torch.ones(2, dtype=torch.int64)}])
    assert out[0]["boxes"].dtype == torch.float32 and out[0]["labels"].dtype == torch.int64


def test_predict_images_under_amp_matches_float32(tmp_path) -> None:
    from PIL import Image

    from torchdet.inference.predict import predict_images
    from torchdet.models.tiny import fasterrcnn_tiny

    torch.manual_seed(0)
    model = fasterrcnn_tiny(num_classes=3, min_size=64, max_size=64, box_score_thresh=0.0)
    g = torch.Generator().manual_seed(0)
    path = tmp_path / "a.png"
    Image.fromarray((torch.rand(64, 64, 3, generator=g) * 255).byte().numpy()).save(path)
    kwargs = dict(device=torch.device("cpu"), categories=["bg", "a", "b"], score_thresh=0.0)
    full = predict_images(model, [path], **kwargs).predictions
    mixed = predict_images(model, [path], amp=True, **kwargs).predictions
    assert full and mixed  # an untrained model's near-tied scores: the counts may differ
    best = max(full, key=lambda d: d["score"])
    best_mixed = max(mixed, key=lambda d: d["score"])
    assert abs(best["score"] - best_mixed["score"]) < 0.02
    assert max(abs(a - b) for a, b in zip(best["bbox"], best_mixed["bbox"])) < 1.0
