"""Bad input to a detector raises torchdet's ValueError that is also torchvision's exception type.

Code written for torchvision catches ``AssertionError`` (missing or malformed targets, degenerate
boxes, anchors that do not fit the feature maps), ``TypeError`` (images or targets of the wrong
dtype) or ``KeyError`` (a target without a key the model reads); torchdet's errors satisfy both.
"""
from __future__ import annotations

from typing import Dict, List

import pytest
import torch
from torch import Tensor

from torchdet.models.anchor_utils import AnchorGenerator
from torchdet.models.faster_rcnn import FasterRCNN
from torchdet.models.image_list import ImageList
from torchdet.models.retinanet import RetinaNet
from torchdet.models.transform import GeneralizedRCNNTransform
from torchdet.ops.poolers import MultiScaleRoIAlign


def _target(boxes: List[List[float]], labels: List[int]) -> Dict[str, Tensor]:
    return {"boxes": torch.tensor(boxes), "labels": torch.tensor(labels)}


@pytest.fixture
def tiny_detectors(make_tiny_backbone):
    """A tiny RetinaNet and a tiny Faster R-CNN on the same two-level backbone, in training mode."""
    anchors = AnchorGenerator(((16,), (32,)), ((1.0,),) * 2)
    retinanet = RetinaNet(make_tiny_backbone(), num_classes=3, min_size=64, max_size=96, anchor_generator=anchors)
    rcnn_anchors = AnchorGenerator(((16,), (32,)), ((1.0,),) * 2)
    pooler = MultiScaleRoIAlign(featmap_names=["0", "1"], output_size=7, sampling_ratio=2)
    faster = FasterRCNN(make_tiny_backbone(), num_classes=3, min_size=64, max_size=96,
                        rpn_anchor_generator=rcnn_anchors, box_roi_pool=pooler)
    return [retinanet.train(), faster.train()]


def _good() -> Dict[str, Tensor]:
    return _target([[4.0, 6.0, 30.0, 40.0]], [1])


BAD_INPUTS = [
    # (id, images, targets, torchvision's type, message)
    ("no-targets", [torch.rand(3, 64, 80)], None, AssertionError, "targets are required"),
    ("boxes-shape", [torch.rand(3, 64, 80)], [_target([[1.0, 2.0, 3.0]], [1])], AssertionError,
     r"shape \[N, 4\]"),
    ("degenerate-box", [torch.rand(3, 64, 80)], [_target([[10.0, 2.0, 10.0, 30.0]], [1])], AssertionError,
     "x1 < x2"),
    ("uint8-image", [torch.zeros(3, 64, 80, dtype=torch.uint8)], [_good()], TypeError, "torch.uint8"),
    ("int-boxes", [torch.rand(3, 64, 80)], [{"boxes": torch.tensor([[1, 2, 30, 40]]), "labels": torch.tensor([1])}],
     TypeError, "torch.int64"),
    ("int32-labels", [torch.rand(3, 64, 80)],
     [{"boxes": torch.tensor([[1.0, 2.0, 30.0, 40.0]]), "labels": torch.tensor([1], dtype=torch.int32)}],
     TypeError, "torch.int32"),
    ("missing-labels", [torch.rand(3, 64, 80)], [{"boxes": torch.tensor([[1.0, 2.0, 30.0, 40.0]])}], KeyError,
     "lacks"),
    ("2d-image", [torch.rand(64, 80)], [_good()], AssertionError, r"\[64, 80\]"),
]


@pytest.mark.parametrize("images, targets, torchvision_type, message",
                         [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_models_raise_valueerror_and_torchvisions_type(tiny_detectors, images, targets, torchvision_type, message):
    for model in tiny_detectors:
        for caught in (ValueError, torchvision_type):
            with pytest.raises(caught, match=message):
                model(images, targets)


def test_transform_errors_are_torchvisions_types():
    transform = GeneralizedRCNNTransform(64, 96, [0.5] * 3, [0.2] * 3)
    with pytest.raises(ValueError, match="expected"):
        transform([torch.rand(64, 80)])
    with pytest.raises(AssertionError):
        transform([torch.rand(64, 80)])
    for caught in (ValueError, TypeError):
        with pytest.raises(caught, match="floating point"):
            transform.normalize(torch.zeros(3, 4, 4, dtype=torch.uint8))


def test_anchor_level_mismatch_is_an_assertion_error():
    generator = AnchorGenerator(((16,), (32,)), ((1.0,),) * 2)
    image_list = ImageList(torch.zeros(1, 3, 64, 64), [(64, 64)])
    for caught in (ValueError, AssertionError):
        with pytest.raises(caught, match="2 levels of anchors"):
            generator(image_list, [torch.zeros(1, 8, 16, 16)])
    with pytest.raises(AssertionError, match="one aspect-ratio tuple per size tuple"):
        AnchorGenerator(((16,), (32,)), ((1.0,), (1.0,), (1.0,)))


def test_scripted_model_still_raises_with_the_message(tiny_detectors):
    scripted = torch.jit.script(tiny_detectors[0])
    with pytest.raises(torch.jit.Error, match="InvalidInputError: targets are required"):
        scripted([torch.rand(3, 64, 80)], None)


@pytest.mark.parametrize("sizes, aspect_ratios, head_anchors", [
    (((32, 64), (128,)), (0.5, 1.0, 2.0), 6),  # level 1 makes 3 anchors per location, the head predicts 6
    (((32, 64, 128), (256, 512)), (1.0,), 3),  # level 1 makes 2, the head predicts 3
])
def test_rpn_head_that_does_not_fit_the_anchors_is_refused(sizes, aspect_ratios, head_anchors):
    from collections import OrderedDict

    from torchdet.models.rpn import RegionProposalNetwork, RPNHead

    generator = AnchorGenerator(sizes, (aspect_ratios,) * 2)
    rpn = RegionProposalNetwork(generator, RPNHead(4, head_anchors), 0.7, 0.3, 256, 0.5,
                                dict(training=100, testing=100), dict(training=100, testing=100), 0.7).eval()
    features = OrderedDict([("0", torch.rand(1, 4, 8, 8)), ("1", torch.rand(1, 4, 4, 4))])
    for caught in (ValueError, AssertionError):
        with pytest.raises(caught, match="anchors per location on feature level 1"):
            rpn(ImageList(torch.rand(1, 3, 32, 32), [(32, 32)]), features)
