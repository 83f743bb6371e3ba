"""forward_with_losses: the training losses and the eval detections from one eval-mode pass, every family."""
from __future__ import annotations

import math
from typing import Dict, List

import pytest
import torch
from torch import Tensor, nn

from _tiny_detectors import BUILDERS, NUM_CLASSES, RCNN, images, targets
from torchdet.models.generalized_rcnn import EVAL_LOSS_SEED

pytestmark = pytest.mark.usefixtures("one_thread")

FAMILIES = sorted(BUILDERS)


def _assert_same_detections(expected: List[Dict[str, Tensor]], actual: List[Dict[str, Tensor]]) -> None:
    assert len(expected) == len(actual)
    for e, a in zip(expected, actual):
        assert sorted(e) == sorted(a)
        for key in e:
            assert torch.equal(e[key], a[key]), key


def _training_step_losses(model: nn.Module) -> Dict[str, Tensor]:
    """A training step's losses with what forward_with_losses fixes: normalisation in eval, the eval
    resize (no random size draw), the RPN's test-time proposal counts, and the global generator
    seeded as the eval sampler's."""
    rpn = getattr(model, "rpn", None)
    if rpn is not None:
        rpn._pre_nms_top_n = dict(rpn._pre_nms_top_n, training=rpn._pre_nms_top_n["testing"])
        rpn._post_nms_top_n = dict(rpn._post_nms_top_n, training=rpn._post_nms_top_n["testing"])
    model.train()
    model.transform.eval()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._NormBase):
            module.eval()
    torch.manual_seed(EVAL_LOSS_SEED)
    with torch.no_grad():
        losses = model(images(), targets())
    model.eval()
    return losses


@pytest.mark.parametrize("family", FAMILIES)
def test_detections_are_plain_evals_and_losses_a_training_steps(family: str) -> None:
    model = BUILDERS[family]()
    with torch.no_grad():
        plain = model(images())
        losses, detections = model.forward_with_losses(images(), targets())
    _assert_same_detections(plain, detections)
    assert any(len(d["boxes"]) for d in detections)

    expected = _training_step_losses(model)
    assert sorted(losses) == sorted(expected)
    for key, value in losses.items():
        assert math.isfinite(float(value)), key
        torch.testing.assert_close(value, expected[key], rtol=1e-5, atol=1e-6, msg=key)


@pytest.mark.parametrize("family", FAMILIES)
def test_deterministic_and_leaves_rng_and_buffers_alone(family: str) -> None:
    model = BUILDERS[family]()
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(123)
    state = torch.get_rng_state()
    with torch.no_grad():
        first, _ = model.forward_with_losses(images(), targets())
        second, _ = model.forward_with_losses(images(), targets())
    assert torch.equal(torch.get_rng_state(), state)
    for key in first:
        assert torch.equal(first[key], second[key]), key
    after = model.state_dict()
    for key, value in buffers.items():
        assert torch.equal(value, after[key]), key
    assert not model.training


def test_the_bn_buffers_checked_exist() -> None:
    """The buffer test above means something: these models hold BatchNorm running statistics."""
    for family in ("faster_rcnn", "ssdlite"):
        model = BUILDERS[family]()
        assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules()), family


@pytest.mark.parametrize("family", RCNN)
def test_rcnn_second_stage_sample_is_drawn_from_the_eval_proposals(family: str) -> None:
    """The RoI losses change with the eval proposal count (the sample is drawn from them), the RPN's do not."""
    model = BUILDERS[family]()
    with torch.no_grad():
        losses, _ = model.forward_with_losses(images(), targets())
        model.rpn._post_nms_top_n["testing"] = 5
        fewer, _ = model.forward_with_losses(images(), targets())
    assert torch.equal(losses["loss_objectness"], fewer["loss_objectness"])
    assert not torch.equal(losses["loss_classifier"], fewer["loss_classifier"])


@pytest.mark.parametrize("family", ["faster_rcnn", "retinanet"])
def test_gradients_flow_when_enabled(family: str) -> None:
    model = BUILDERS[family]()
    losses, _ = model.forward_with_losses(images(), targets())
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and any(bool(g.abs().sum() > 0) for g in grads)


@pytest.mark.parametrize("family", ["faster_rcnn", "ssd"])
def test_refuses_training_mode_and_missing_targets(family: str) -> None:
    model = BUILDERS[family]()
    with pytest.raises(ValueError, match="needs targets"):
        model.forward_with_losses(images(), None)
    with pytest.raises(ValueError, match="x1 < x2"):  # the training-time checks of the targets
        model.forward_with_losses(images(), [{"boxes": torch.tensor([[5.0, 5.0, 5.0, 9.0]]),
                                              "labels": torch.tensor([1])}] * 2)
    model.train()
    with pytest.raises(RuntimeError, match=r"model\.eval\(\)"):
        model.forward_with_losses(images(), targets())


def test_plain_eval_contract_unchanged() -> None:
    """Eval without the method still returns the list of detections; training still the loss dict."""
    model = BUILDERS["faster_rcnn"]()
    with torch.no_grad():
        out = model(images())
    assert isinstance(out, list) and sorted(out[0]) == ["boxes", "labels", "scores"]
    model.train()
    assert isinstance(model(images(), targets()), dict)


ZOO = ["fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2", "fasterrcnn_mobilenet_v3_large_fpn",
       "fasterrcnn_mobilenet_v3_large_320_fpn", "maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2",
       "keypointrcnn_resnet50_fpn", "retinanet_resnet50_fpn", "retinanet_resnet50_fpn_v2", "fcos_resnet50_fpn",
       "ssd300_vgg16", "ssdlite320_mobilenet_v3_large"]
CHEAP_ZOO = "fasterrcnn_mobilenet_v3_large_320_fpn"


def _zoo_targets(num_keypoints: int = 17) -> List[Dict[str, Tensor]]:
    out = []
    for t in targets():
        keypoints = t["boxes"][:, None, :2] + torch.rand(len(t["boxes"]), num_keypoints, 2) * 20
        out.append(dict(t, keypoints=torch.cat([keypoints, torch.ones(len(t["boxes"]), num_keypoints, 1)], 2)))
    return out


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n == CHEAP_ZOO else pytest.mark.slow) for n in ZOO])
def test_every_zoo_builder(name: str) -> None:
    """Each of the twelve builders (random weights, small images): plain-eval detections, finite
    training-step losses, and scores_all holding each detection's score at its label."""
    import torchdet.models as models

    torch.manual_seed(0)
    kwargs = dict(weights=None, weights_backbone=None, num_classes=NUM_CLASSES)
    if not name.startswith("ssd"):
        kwargs.update(min_size=96, max_size=128)
    model = getattr(models, name)(**kwargs).eval()
    with torch.no_grad():
        plain = model(images())
        losses, detections = model.forward_with_losses(images(), _zoo_targets())
        model.detection_extras = ("scores_all", "features")
        extended = model(images())
    _assert_same_detections(plain, detections)
    assert all(math.isfinite(float(v)) for v in losses.values()), losses
    for p, e in zip(plain, extended):
        for key in p:
            assert torch.equal(p[key], e[key]), key
        at_label = e["scores_all"].gather(1, e["labels"][:, None])[:, 0]
        torch.testing.assert_close(at_label, e["scores"], rtol=0, atol=1e-7)
        assert e["features"].shape[0] == len(e["boxes"])
