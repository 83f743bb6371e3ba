"""TorchScript for the one-stage detectors (issue 7): ``torch.jit.script`` on the builders' models.

The scripted model takes ``List[Tensor]`` images and returns ``(losses, detections)`` (TorchScript
needs one return type); in eval its detections equal the eager model's. The comparison runs with
batch-norm folding off: folding is an eager-only fast path that changes the features by rounding,
which reorders near-tied scores of an untrained model. The scripted runs skip TorchScript's
profiling optimiser (``optimized_execution(False)``), which only costs time on a first call.
"""
from typing import Any, Dict

import pytest
import torch

import torchdet.models as models
from torchdet.ops.fusion import folding

SMALL = {"min_size": 160, "max_size": 200}
# Untrained heads score every class near their prior (0.01 for RetinaNet and FCOS): a low
# threshold keeps detections to compare.
BUILDERS: Dict[str, Dict[str, Any]] = {
    "ssdlite320_mobilenet_v3_large": {},
    "ssd300_vgg16": {},
    "retinanet_resnet50_fpn": dict(SMALL, score_thresh=0.005),
    "retinanet_resnet50_fpn_v2": dict(SMALL, score_thresh=0.005),
    "fcos_resnet50_fpn": dict(SMALL, score_thresh=0.005),
}
FAST = ["ssdlite320_mobilenet_v3_large"]
SLOW = [name for name in BUILDERS if name not in FAST]


def _images(n: int = 1):
    g = torch.Generator().manual_seed(0)
    return [torch.rand(3, 200, 240, generator=g) for _ in range(n)]


def _check_scripted(name: str) -> None:
    torch.manual_seed(0)
    model = getattr(models, name)(weights=None, weights_backbone=None, **BUILDERS[name]).eval()
    keys = set(model.state_dict())
    scripted = torch.jit.script(model)
    assert set(scripted.state_dict()) == keys

    images = _images()
    with torch.no_grad(), folding(False), torch.jit.optimized_execution(False):
        expected = model(images)
        losses, detections = scripted(images)
    assert losses == {} and len(detections) == 1
    assert len(expected[0]["boxes"]) > 0, "no detections to compare; lower score_thresh"
    assert set(detections[0]) == {"boxes", "scores", "labels"}
    for key in ("boxes", "scores", "labels"):
        torch.testing.assert_close(detections[0][key], expected[0][key], rtol=0, atol=0)

    # Training: (losses, []) with the eager losses.
    model.train()
    scripted.train()
    images = _images(2)  # SSDlite's 1x1 extra maps need a batch of 2 for training-mode batch norm
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 100.0, 150.0]]), "labels": torch.tensor([3])}] * 2
    torch.manual_seed(0)
    expected_losses = model(images, targets)
    torch.manual_seed(0)
    with torch.jit.optimized_execution(False):
        losses, detections = scripted(images, targets)
    assert detections == [] and set(losses) == set(expected_losses)
    for key, value in losses.items():
        torch.testing.assert_close(value, expected_losses[key])


@pytest.mark.parametrize("name", FAST + [pytest.param(name, marks=pytest.mark.slow) for name in SLOW])
def test_scripted_matches_eager(name: str) -> None:
    _check_scripted(name)


def test_scripted_validation_names_the_fault() -> None:
    model = torch.jit.script(models.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None).train())
    with torch.jit.optimized_execution(False), pytest.raises(torch.jit.Error, match="targets are required in training"):
        model(_images(2))
    bad = [{"boxes": torch.tensor([[10.0, 2.0, 10.0, 12.0]]), "labels": torch.tensor([1])}] * 2
    with torch.jit.optimized_execution(False), pytest.raises(torch.jit.Error, match="image 0, box 0"):
        model(_images(2), bad)
    with torch.jit.optimized_execution(False), pytest.raises(torch.jit.Error, match="image 0 has 1 channels"):
        model.eval()([torch.rand(1, 20, 20)])
