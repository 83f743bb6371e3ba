"""One tiny detector per family (seeded, random weights) and a small batch, for the tests of
``forward_with_losses`` and ``detection_extras``.

Each builder returns an eval-mode model; the R-CNN ones sit on ``TinyBackbone`` (BatchNorm in
the backbone, so the tests see whether running statistics move), SSDlite is the real builder
at 320 px (BatchNorm in its heads).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchdet.models import FCOS, SSD, KeypointRCNN, MaskRCNN, RetinaNet, ssdlite320_mobilenet_v3_large
from torchdet.models.keypoint_rcnn import KeypointRCNNHeads, KeypointRCNNPredictor
from torchdet.models.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchdet.models.anchor_utils import AnchorGenerator
from torchdet.models.default_boxes import DefaultBoxGenerator
from torchdet.models.faster_rcnn import FasterRCNN, FastRCNNPredictor, TwoMLPHead
from torchdet.models.tiny import TinyBackbone
from torchdet.ops.poolers import MultiScaleRoIAlign

NUM_CLASSES = 5
REPRESENTATION = 32  # the R-CNN box head's output size: the width of their `features`


class TwoLevelBackbone(nn.Module):
    """Feature maps "0" (a stride-``stride`` conv, ``channels[0]`` wide) and "1" (then a stride-2 conv).

    ``out_channels``, which RetinaNet's and FCOS's heads read, is set when both levels are as wide.
    """

    def __init__(self, channels: Tuple[int, int] = (8, 8), stride: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, channels[0], 3, stride=stride, padding=1)
        self.down = nn.Conv2d(channels[0], channels[1], 3, stride=2, padding=1)
        if channels[0] == channels[1]:
            self.out_channels = channels[0]

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        c1 = F.relu(self.stem(x))
        return OrderedDict([("0", c1), ("1", F.relu(self.down(c1)))])


def _rcnn_parts() -> dict:
    backbone = TinyBackbone(channels=(8, 16, 16, 16, 16), blocks=0, returned_stages=(2, 3, 4), out_channels=16,
                            extra_pool=True)
    sizes = ((16,), (32,), (64,), (128,))
    return dict(
        backbone=backbone, min_size=96, max_size=128,
        rpn_anchor_generator=AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes)),
        rpn_pre_nms_top_n_test=200, rpn_post_nms_top_n_test=100, rpn_batch_size_per_image=64,
        box_roi_pool=MultiScaleRoIAlign(["0", "1", "2"], output_size=7, sampling_ratio=2),
        box_head=TwoMLPHead(16 * 7 * 7, REPRESENTATION), box_predictor=FastRCNNPredictor(REPRESENTATION, NUM_CLASSES),
        box_batch_size_per_image=64, box_score_thresh=0.0, box_detections_per_img=20,
    )


def faster_rcnn() -> nn.Module:
    torch.manual_seed(0)
    parts = _rcnn_parts()
    return FasterRCNN(parts.pop("backbone"), **parts).eval()


def mask_rcnn() -> nn.Module:
    torch.manual_seed(0)
    parts = _rcnn_parts()
    pool = MultiScaleRoIAlign(["0", "1", "2"], output_size=14, sampling_ratio=2)
    return MaskRCNN(parts.pop("backbone"), mask_roi_pool=pool, mask_head=MaskRCNNHeads(16, [16, 16], 1),
                    mask_predictor=MaskRCNNPredictor(16, 16, NUM_CLASSES), **parts).eval()


def keypoint_rcnn() -> nn.Module:
    torch.manual_seed(0)
    parts = _rcnn_parts()
    pool = MultiScaleRoIAlign(["0", "1", "2"], output_size=14, sampling_ratio=2)
    return KeypointRCNN(parts.pop("backbone"), keypoint_roi_pool=pool, keypoint_head=KeypointRCNNHeads(16, [16, 16]),
                        keypoint_predictor=KeypointRCNNPredictor(16, 3), **parts).eval()


def retinanet() -> nn.Module:
    torch.manual_seed(0)
    anchors = AnchorGenerator(((16,), (32,)), ((0.5, 1.0, 2.0),) * 2)
    return RetinaNet(TwoLevelBackbone(), NUM_CLASSES, min_size=64, max_size=80, anchor_generator=anchors,
                     score_thresh=0.0).eval()


def fcos() -> nn.Module:
    torch.manual_seed(0)
    anchors = AnchorGenerator(((16,), (32,)), ((1.0,),) * 2)
    return FCOS(TwoLevelBackbone((32, 32)), NUM_CLASSES, min_size=64, max_size=80, anchor_generator=anchors,
                score_thresh=0.0).eval()


def ssd() -> nn.Module:
    torch.manual_seed(0)
    return SSD(TwoLevelBackbone((8, 16)), DefaultBoxGenerator([[2], [2, 3]]), (64, 64), NUM_CLASSES, score_thresh=0.0).eval()


def ssdlite() -> nn.Module:
    torch.manual_seed(0)
    return ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=NUM_CLASSES,
                                         score_thresh=0.0).eval()


BUILDERS: Dict[str, Callable[[], nn.Module]] = {
    "faster_rcnn": faster_rcnn, "mask_rcnn": mask_rcnn, "keypoint_rcnn": keypoint_rcnn,
    "retinanet": retinanet, "fcos": fcos, "ssd": ssd, "ssdlite": ssdlite,
}
RCNN = ("faster_rcnn", "mask_rcnn", "keypoint_rcnn")


def images() -> List[Tensor]:
    """Two ``[3, 64, 80]`` images in 0..1."""
    g = torch.Generator().manual_seed(1)
    return [torch.rand(3, 64, 80, generator=g), torch.rand(3, 64, 80, generator=g)]


def targets() -> List[Dict[str, Tensor]]:
    """Two boxes (labels 1, 3) in the first image, one (label 2) in the second, with masks and 3 keypoints."""
    boxes = [torch.tensor([[4.0, 6.0, 30.0, 40.0], [20.0, 10.0, 60.0, 50.0]]), torch.tensor([[10.0, 12.0, 50.0, 44.0]])]
    labels = [torch.tensor([1, 3]), torch.tensor([2])]
    out = []
    for b, lab in zip(boxes, labels):
        masks = torch.zeros((len(b), 64, 80), dtype=torch.uint8)
        for j, (x1, y1, x2, y2) in enumerate(b.int().tolist()):
            masks[j, y1:y2, x1:x2] = 1
        centre = (b[:, :2] + b[:, 2:]) / 2
        keypoints = torch.stack([torch.cat([centre + d, torch.ones(len(b), 1)], 1)
                                 for d in (torch.tensor([-3.0, 0.0]), torch.tensor([0.0, 0.0]), torch.tensor([3.0, 2.0]))],
                                1)  # [G, 3, 3] (x, y, visible)
        out.append({"boxes": b, "labels": lab, "masks": masks, "keypoints": keypoints})
    return out
