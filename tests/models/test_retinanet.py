"""RetinaNet: parity with torchvision (oracle), losses, inference settings and input checks."""
from collections import OrderedDict

import pytest
import torch
from torch import nn

from _oracle import assert_detections_match, assert_losses_match, assert_same_manifest
from torchdet.models.anchor_utils import AnchorGenerator
from torchdet.models.retinanet import (RetinaNet, RetinaNetClassificationHead, RetinaNetHead,
                                       RetinaNetRegressionHead, retinanet_resnet50_fpn, retinanet_resnet50_fpn_v2)
from torchdet.weights.backbone import ResNet50_Weights
from torchdet.weights.hub import CheckpointDownloadError


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module", params=[retinanet_resnet50_fpn, retinanet_resnet50_fpn_v2],
                ids=lambda b: b.__name__)
def builder(request):
    return request.param


def test_state_dict_manifest(builder, golden):
    assert_same_manifest(golden.model, builder.__name__)


def test_eval_matches_torchvision(golden):
    assert_detections_match(golden.detections, golden.case["eval_outputs"])


def test_train_losses_match_torchvision(golden):
    assert_losses_match(golden.losses, golden.case["train_losses"])


def test_v2_uses_groupnorm_heads_and_giou():
    model = retinanet_resnet50_fpn_v2(num_classes=3)
    assert isinstance(model.head.classification_head.conv[0][1], nn.GroupNorm)
    assert model.head.regression_head._loss_type == "giou"
    assert not model.backbone.fpn.extra_blocks.use_P5  # P6 from C5


def test_builder_defaults_and_weights_error(offline_hub):
    model = retinanet_resnet50_fpn(weights_backbone=None)
    assert model.head.classification_head.num_classes == 91
    assert (model.score_thresh, model.nms_thresh, model.detections_per_img, model.topk_candidates) == (0.05, 0.5, 300, 1000)
    assert model.transform.min_size == (800,) and model.transform.max_size == 1333
    assert model.anchor_generator.sizes[0] == (32, 40, 50)
    assert isinstance(model.backbone.body.bn1, nn.BatchNorm2d)  # no weights: plain BN, everything trains
    assert all(p.requires_grad for p in model.backbone.parameters())
    # torchvision's default is an ImageNet backbone: offline with an empty cache, the error says what to do.
    with pytest.raises(CheckpointDownloadError, match="weights_backbone=None") as info:
        retinanet_resnet50_fpn()
    assert str(offline_hub / ResNet50_Weights.IMAGENET1K_V1.file_name) in str(info.value)
    with pytest.raises(ValueError, match="num_classes=3"):  # checked before anything is built or read
        retinanet_resnet50_fpn(weights="DEFAULT", num_classes=3)
    with pytest.raises(ValueError, match="COCO_V1"):
        retinanet_resnet50_fpn_v2(weights="COCO_V2")


# --- a tiny RetinaNet for the fast behavioural tests ---------------------------------------------

@pytest.fixture
def tiny_retinanet(make_tiny_backbone):
    """``tiny_retinanet(**kwargs)``: RetinaNet on two levels (strides 4 and 8, 8 channels), 9 anchors per
    location, 5 classes, seeded weights."""
    def build(**kwargs) -> RetinaNet:
        anchors = AnchorGenerator(((16, 20, 25), (32, 40, 50)), ((0.5, 1.0, 2.0),) * 2)
        return RetinaNet(make_tiny_backbone(), num_classes=5, min_size=64, max_size=96, anchor_generator=anchors,
                         **kwargs)
    return build


def test_zero_box_images_train(tiny_retinanet, tiny_images, tiny_targets):
    model = tiny_retinanet().train()
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    losses = model(tiny_images, [empty, empty])
    assert set(losses) == {"classification", "bbox_regression"}
    assert losses["bbox_regression"].item() == 0.0
    assert torch.isfinite(losses["classification"]) and losses["classification"].item() > 0
    mixed = model(tiny_images, [empty, tiny_targets[1]])
    total = sum(mixed.values())
    total.backward()
    assert torch.isfinite(total)
    assert model.head.regression_head.bbox_reg.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("loss_type", ["l1", "smooth_l1", "giou"])
def test_box_loss_types(loss_type, tiny_retinanet, tiny_images, tiny_targets):
    model = tiny_retinanet().train()
    model.head.regression_head._loss_type = loss_type
    losses = model(tiny_images, tiny_targets)
    assert torch.isfinite(losses["bbox_regression"]) and losses["bbox_regression"].item() > 0


def test_unknown_box_loss_type_raises(tiny_retinanet, tiny_images, tiny_targets):
    model = tiny_retinanet().train()
    model.head.regression_head._loss_type = "l3"
    with pytest.raises(ValueError, match="l3"):
        model(tiny_images, tiny_targets)


def test_eval_settings_and_batched_input(tiny_retinanet, tiny_images):
    model = tiny_retinanet(score_thresh=0.0, detections_per_img=7, topk_candidates=5).eval()
    with torch.no_grad():
        listed = model(tiny_images)
        batched = model(torch.stack(tiny_images))
    for out in listed:
        assert out["boxes"].shape == (7, 4) and out["labels"].dtype == torch.int64
        assert (out["scores"][:-1] >= out["scores"][1:]).all()
        assert (out["boxes"][:, 0::2] <= 80).all() and (out["boxes"][:, 1::2] <= 64).all()
    for a, b in zip(listed, batched):
        torch.testing.assert_close(a["boxes"], b["boxes"])
    model.score_thresh = 1.0
    with torch.no_grad():
        assert all(len(o["boxes"]) == 0 for o in model(tiny_images))


def test_topk_candidates_is_per_level(tiny_retinanet, tiny_images):
    model = tiny_retinanet(score_thresh=0.0, topk_candidates=3, nms_thresh=1.0, detections_per_img=1000).eval()
    with torch.no_grad():
        out = model(tiny_images[:1])
    assert len(out[0]["boxes"]) == 6  # 3 per level, 2 levels, NMS at IoU 1.0 keeps all but exact duplicates


@pytest.mark.parametrize("make_bad, message", [
    (lambda imgs, tg: (imgs, None), "targets are required"),
    (lambda imgs, tg: (imgs, [{**tg[0], "boxes": torch.tensor([[5.0, 5.0, 5.0, 9.0], [1.0, 1.0, 2.0, 2.0]])}, tg[1]]),
     "image 0, box 0"),
    (lambda imgs, tg: (imgs, [{**tg[0], "labels": tg[0]["labels"].int()}, tg[1]]), "int64"),
    (lambda imgs, tg: (imgs, tg[:1]), "1 targets for 2 images"),
    (lambda imgs, tg: ([imgs[0][:1], imgs[1]], tg), "channels"),
])
def test_bad_inputs_raise_value_error(make_bad, message, tiny_retinanet, tiny_images, tiny_targets):
    model = tiny_retinanet().train()
    images, targets = make_bad(tiny_images, tiny_targets)
    with pytest.raises(ValueError, match=message):
        model(images, targets)


def test_loads_v1_checkpoint_keys():
    """Old checkpoints name the head towers conv.0, conv.2, ...: they still load."""
    head = RetinaNetHead(8, 9, 4)
    old = OrderedDict()
    for key, value in head.state_dict().items():
        parts = key.split(".")
        if parts[1] == "conv":  # classification_head.conv.{i}.0.weight -> classification_head.conv.{2i}.weight
            key = ".".join(parts[:2] + [str(2 * int(parts[2]))] + parts[4:])
        old[key] = torch.randn_like(value)
    old._metadata = OrderedDict()  # no version recorded, as in checkpoints saved before the rename
    fresh = RetinaNetHead(8, 9, 4)
    fresh.load_state_dict(old)
    torch.testing.assert_close(fresh.classification_head.conv[1][0].weight, old["classification_head.conv.2.weight"])


def test_head_shapes_and_prior():
    head = RetinaNetClassificationHead(8, 9, 4)
    reg = RetinaNetRegressionHead(8, 9)
    x = [torch.randn(2, 8, 6, 5), torch.randn(2, 8, 3, 3)]
    assert head(x).shape == (2, (30 + 9) * 9, 4)
    assert reg(x).shape == (2, (30 + 9) * 9, 4)
    torch.testing.assert_close(torch.sigmoid(head.cls_logits.bias), torch.full((36,), 0.01))
