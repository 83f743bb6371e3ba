"""FCOS: parity with torchvision (oracle), the location matcher, losses and input checks."""
import pytest
import torch
from torch import nn

from _oracle import assert_detections_match, assert_losses_match, assert_same_manifest
from torchdet.models.anchor_utils import AnchorGenerator
from torchdet.models.fcos import FCOS, FCOSHead, fcos_resnet50_fpn, match_locations
from torchdet.weights.backbone import ResNet50_Weights
from torchdet.weights.hub import CheckpointDownloadError


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def builder():
    return fcos_resnet50_fpn


def test_state_dict_manifest(golden):
    assert_same_manifest(golden[1], "fcos_resnet50_fpn")


def test_eval_matches_torchvision(golden):
    case, _, detections, _ = golden
    assert_detections_match(detections, case["eval_outputs"])


def test_train_losses_match_torchvision(golden):
    case, _, _, losses = golden
    assert_losses_match(losses, case["train_losses"])


def test_builder_defaults(offline_hub):
    model = fcos_resnet50_fpn(weights_backbone=None, num_classes=4)
    assert (model.score_thresh, model.nms_thresh, model.detections_per_img, model.topk_candidates) == (0.2, 0.6, 100, 1000)
    assert model.center_sampling_radius == 1.5
    assert model.anchor_generator.sizes == ((8,), (16,), (32,), (64,), (128,))
    assert isinstance(model.head.classification_head.conv[1], nn.GroupNorm)
    # "DEFAULT" is ResNet50_Weights.IMAGENET1K_V2; offline with an empty cache the error names its file.
    with pytest.raises(CheckpointDownloadError, match="weights_backbone=None") as info:
        fcos_resnet50_fpn(weights_backbone="DEFAULT")
    assert str(offline_hub / ResNet50_Weights.IMAGENET1K_V2.file_name) in str(info.value)


def test_needs_one_anchor_per_location(make_tiny_backbone):
    backbone = make_tiny_backbone((32, 32))
    with pytest.raises(ValueError, match="one anchor per location"):
        FCOS(backbone, 3, anchor_generator=AnchorGenerator(((8, 16), (32,)), ((1.0,),) * 2))


# --- the matcher, by hand ---------------------------------------------------------------------------

def _square_anchors(centres, size):
    c = torch.tensor(centres, dtype=torch.float32)
    return torch.cat([c - size / 2, c + size / 2], dim=1)


def test_match_locations_centre_sampling_inside_and_scale_range():
    # Level 0: anchors of size 8 (range 0..64), level 1: size 16 (range 64..inf as the last level).
    level0 = _square_anchors([[20, 20], [40, 20], [33, 20], [70, 20]], 8.0)
    level1 = _square_anchors([[32, 24], [96, 24]], 16.0)
    anchors = torch.cat([level0, level1])
    gt = torch.tensor([[10.0, 10.0, 50.0, 30.0]])  # centre (30, 20), 40 x 20
    matched = match_locations(anchors, gt, [4, 2], center_sampling_radius=1.5)
    # (20, 20): 10 px from the centre, within 1.5 * 8 = 12; inside; largest side distance 30 in (0, 64): match.
    # (40, 20) and (33, 20) likewise; (70, 20) lies outside the box.
    # Level 1, (32, 24): near the centre and inside, but its largest distance 22 is not above 4 * 16 = 64.
    assert matched.tolist() == [0, 0, 0, -1, -1, -1]


def test_match_locations_prefers_the_smaller_box():
    anchors = _square_anchors([[30, 30]], 8.0)
    gt = torch.tensor([[0.0, 0.0, 60.0, 60.0], [20.0, 20.0, 40.0, 40.0]])
    assert match_locations(anchors, gt, [1], 1.5).tolist() == [1]


# --- a tiny FCOS for behavioural tests ------------------------------------------------------------------

@pytest.fixture
def tiny_fcos(make_tiny_backbone):
    """``tiny_fcos(**kwargs)``: FCOS on two levels (strides 4 and 8, 32 channels), 4 classes, seeded weights."""
    def build(**kwargs) -> FCOS:
        anchors = AnchorGenerator(((8,), (16,)), ((1.0,),) * 2)
        return FCOS(make_tiny_backbone((32, 32)), num_classes=4, min_size=64, max_size=96, anchor_generator=anchors,
                    **kwargs)
    return build


def test_zero_box_images_train(tiny_fcos, tiny_images, tiny_targets):
    model = tiny_fcos().train()
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    losses = model(tiny_images, [empty, empty])
    assert set(losses) == {"classification", "bbox_regression", "bbox_ctrness"}
    assert losses["bbox_regression"].item() == 0.0 and losses["bbox_ctrness"].item() == 0.0
    assert torch.isfinite(losses["classification"])
    mixed = model(tiny_images, [empty, tiny_targets[1]])
    total = sum(mixed.values())
    assert torch.isfinite(total) and mixed["bbox_regression"].item() > 0
    total.backward()


def test_eval_outputs_and_batched_input(tiny_fcos, tiny_images):
    model = tiny_fcos(score_thresh=0.0, detections_per_img=9).eval()
    with torch.no_grad():
        listed = model(tiny_images)
        batched = model(torch.stack(tiny_images))
    for out, again in zip(listed, batched):
        assert out["boxes"].shape == (9, 4) and out["labels"].dtype == torch.int64
        torch.testing.assert_close(out["scores"], again["scores"])
        assert ((out["scores"] > 0) & (out["scores"] <= 1)).all()


@pytest.mark.parametrize("make_bad, message", [
    (lambda imgs, tg: (imgs, None), "targets are required"),
    (lambda imgs, tg: (imgs, [{**tg[0], "boxes": tg[0]["boxes"][:, :3]}, tg[1]]), r"shape \[N, 4\]"),
    (lambda imgs, tg: (imgs, [{"boxes": tg[0]["boxes"]}, tg[1]]), "lacks"),
    (lambda imgs, tg: (imgs[0], tg), "single tensor"),
])
def test_bad_inputs_raise_value_error(make_bad, message, tiny_fcos, tiny_images, tiny_targets):
    model = tiny_fcos().train()
    images, targets = make_bad(tiny_images, tiny_targets)
    with pytest.raises(ValueError, match=message):
        model(images, targets)


def test_head_output_shapes():
    head = FCOSHead(32, 1, 5)
    out = head([torch.randn(2, 32, 6, 5), torch.randn(2, 32, 3, 3)])
    assert out["cls_logits"].shape == (2, 39, 5)
    assert out["bbox_regression"].shape == (2, 39, 4) and (out["bbox_regression"] >= 0).all()
    assert out["bbox_ctrness"].shape == (2, 39, 1)
