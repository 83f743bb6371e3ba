"""OneStageDetector: the shared forward (inputs -> transform -> backbone -> head -> anchors -> hooks)."""
from typing import Dict, List, Tuple

import pytest
import torch
from torch import Tensor, nn

from torchdet.models import FCOS, SSD, RetinaNet
from torchdet.models.anchor_utils import AnchorGenerator
from torchdet.models.dense_prediction import flatten_head_output
from torchdet.models.matcher import Matcher
from torchdet.models.one_stage import OneStageDetector, detection_transform, require_out_channels


class TinyHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.score = nn.Conv2d(4, 1, 1)

    def forward(self, x: List[Tensor]) -> Dict[str, Tensor]:
        return {"cls_logits": torch.cat([flatten_head_output(self.score(f), 1) for f in x], dim=1)}


class Toy(OneStageDetector):
    """Losses: the anchor count and the matches; detections: each image's first anchor, score 1."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Conv2d(3, 4, 3, stride=8, padding=1)
        self.anchor_generator = AnchorGenerator(((16,),), ((1.0,),))
        self.head = TinyHead()
        self.proposal_matcher = Matcher(0.5, 0.4)
        self.transform = detection_transform(64, 128, None, None)

    def head_losses(self, targets: List[Dict[str, Tensor]], head_outputs: Dict[str, Tensor],
                    anchors: List[Tensor], features: List[Tensor]) -> Dict[str, Tensor]:
        matched = torch.stack(self.match_by_iou(targets, anchors))  # [N, M]
        return {"anchors": torch.tensor(float(anchors[0].shape[0])), "matched": (matched >= 0).sum().float()}

    def head_detections(self, head_outputs: Dict[str, Tensor], anchors: List[Tensor], features: List[Tensor],
                        image_sizes: List[Tuple[int, int]]) -> List[Dict[str, Tensor]]:
        return [{"boxes": a[:1], "scores": torch.ones(1), "labels": torch.ones(1, dtype=torch.int64)}
                for a in anchors]


def test_detectors_share_the_base():
    for cls in (RetinaNet, FCOS, SSD):
        assert issubclass(cls, OneStageDetector) and issubclass(cls, nn.Module)
        assert cls.forward is OneStageDetector.forward


def test_eager_returns_losses_in_training_and_rescaled_detections_in_eval():
    torch.manual_seed(0)
    model = Toy()
    images = [torch.rand(3, 32, 48), torch.rand(3, 32, 48)]  # resized x2 to 64x96: 8x12 cells
    targets = [{"boxes": torch.tensor([[0.0, 0.0, 8.0, 8.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    losses = model.train()(images, targets)
    assert losses["anchors"].item() == 8 * 12
    assert losses["matched"].item() == 1  # the anchor on the first image's box; the empty image matches none
    detections = model.eval()(images)
    # The first anchor (16x16 centred on the resized image's origin) mapped back to the input pixels.
    torch.testing.assert_close(detections[0]["boxes"], torch.tensor([[-4.0, -4.0, 4.0, 4.0]]))


def test_scripted_forward_uses_the_subclass_hooks():
    model = Toy().eval()
    with torch.jit.optimized_execution(False):
        losses, detections = torch.jit.script(model)([torch.rand(3, 32, 48)])
    assert losses == {}
    torch.testing.assert_close(detections[0]["boxes"], model([torch.rand(3, 32, 48)])[0]["boxes"])


def test_hooks_must_be_overridden():
    class Bare(Toy):
        head_detections = OneStageDetector.head_detections

    with pytest.raises(NotImplementedError, match="Bare must override head_detections"):
        Bare().eval()([torch.rand(3, 32, 48)])


def test_require_out_channels_names_the_attribute():
    with pytest.raises(ValueError, match="out_channels"):
        require_out_channels(nn.ReLU())
