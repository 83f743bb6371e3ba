"""Keypoint R-CNN: checkpoint keys, parity with torchvision (the oracle), and the user-facing contract."""
import math

import pytest
import torch
from torch import nn

from _oracle import assert_detections_match, assert_losses_match, assert_same_manifest, build_filled, load_case
from torchdet.models import keypoint_rcnn
from torchdet.models.anchor_utils import AnchorGenerator
from torchdet.ops.poolers import MultiScaleRoIAlign
from torchdet.weights.backbone import ResNet50_Weights
from torchdet.weights.hub import CheckpointDownloadError


def test_parity_with_torchvision():
    """Same keys and shapes as torchvision's checkpoint; same detections, keypoints and losses on the oracle's inputs."""
    name = "keypointrcnn_resnet50_fpn"
    case = load_case(name)
    # train_kwargs only add the samplers' batch sizes, which eval never reads: one model serves both.
    changed = {k for k, v in case["train_kwargs"].items() if case["kwargs"].get(k, object()) != v}
    assert changed <= {"rpn_batch_size_per_image", "box_batch_size_per_image"}, changed
    model = build_filled(keypoint_rcnn.keypointrcnn_resnet50_fpn, case["weights_seed"], **case["train_kwargs"]).eval()
    assert_same_manifest(model, name)
    with torch.no_grad():
        outputs = model(case["images"])
    assert_detections_match(outputs, case["eval_outputs"])

    torch.manual_seed(0)
    model.train()
    with torch.no_grad():  # the same losses, without keeping the graph
        losses = model(case["images"], case["targets"])
    assert_losses_match(losses, case["train_losses"])


# ---- the contract, on a tiny model -----------------------------------------------------------------


def tiny_keypointrcnn(**kwargs):
    """A one-level, 16-channel Keypoint R-CNN with 5 keypoints: fast enough for contract tests."""
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(3, 16, 3, stride=4, padding=1), nn.ReLU())
    backbone.out_channels = 16
    defaults = dict(
        num_classes=2, min_size=96, max_size=128, box_score_thresh=0.0, box_detections_per_img=10,
        rpn_anchor_generator=AnchorGenerator(((16, 32, 64),), ((0.5, 1.0, 2.0),)),
        rpn_pre_nms_top_n_test=50, rpn_post_nms_top_n_test=20, rpn_pre_nms_top_n_train=50,
        rpn_post_nms_top_n_train=20, box_batch_size_per_image=32,
        box_roi_pool=MultiScaleRoIAlign(["0"], 7, 2), keypoint_roi_pool=MultiScaleRoIAlign(["0"], 14, 2),
        keypoint_head=keypoint_rcnn.KeypointRCNNHeads(16, (32, 32)),
        keypoint_predictor=keypoint_rcnn.KeypointRCNNPredictor(32, 5),
    )
    return keypoint_rcnn.KeypointRCNN(backbone, **{**defaults, **kwargs})


def _images():
    g = torch.Generator().manual_seed(1)
    return [torch.rand(3, 90, 120, generator=g), torch.rand(3, 110, 70, generator=g)]


def _targets():
    g = torch.Generator().manual_seed(2)
    boxes = [torch.tensor([[10.0, 20.0, 60.0, 80.0], [50.0, 5.0, 110.0, 40.0]]), torch.tensor([[5.0, 10.0, 50.0, 100.0]])]
    targets = []
    for b in boxes:
        lo, size = b[:, None, :2], b[:, None, 2:] - b[:, None, :2]
        xy = lo + torch.rand(len(b), 5, 2, generator=g) * size
        visibility = torch.tensor([2.0, 2.0, 1.0, 0.0, 2.0]).expand(len(b), 5)[..., None]
        targets.append({"boxes": b, "labels": torch.ones(len(b), dtype=torch.int64),
                        "keypoints": torch.cat([xy, visibility], dim=-1)})
    return targets


def test_eval_keypoints_in_original_pixels():
    model = tiny_keypointrcnn().eval()
    images = _images()
    with torch.no_grad():
        out = model(images)
    for det in out:
        assert set(det) == {"boxes", "labels", "scores", "keypoints", "keypoints_scores"}
        n = len(det["boxes"])
        assert n > 0
        assert det["keypoints"].shape == (n, 5, 3) and det["keypoints"].dtype == torch.float32
        assert det["keypoints_scores"].shape == (n, 5)
        assert bool((det["keypoints"][..., 2] == 1).all())
        # Each keypoint lies in its (possibly sub-pixel) box, clamped to at least 1 px a side.
        boxes = det["boxes"][:, None]
        x, y = det["keypoints"][..., 0], det["keypoints"][..., 1]
        assert bool((x >= boxes[..., 0]).all() and (x <= torch.maximum(boxes[..., 2], boxes[..., 0] + 1)).all())
        assert bool((y >= boxes[..., 1]).all() and (y <= torch.maximum(boxes[..., 3], boxes[..., 1] + 1)).all())


def test_training_adds_the_keypoint_loss_and_backpropagates():
    model = tiny_keypointrcnn().train()
    losses = model(_images(), _targets())
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_keypoint", "loss_objectness", "loss_rpn_box_reg"}
    assert all(math.isfinite(float(v.detach())) for v in losses.values())
    sum(losses.values()).backward()
    assert model.roi_heads.keypoint_predictor.kps_score_lowres.weight.grad is not None


def test_bad_keypoint_targets_raise_value_error_naming_the_image():
    model = tiny_keypointrcnn().train()
    images = _images()
    bad = _targets()
    bad[1]["keypoints"] = bad[1]["keypoints"][..., :2]
    with pytest.raises(ValueError, match=r"keypoints of image 1 must be a tensor of shape \[N, K, 3\]"):
        model(images, bad)
    bad = _targets()
    bad[0]["keypoints"] = bad[0]["keypoints"][:1]
    with pytest.raises(ValueError, match="image 0 has keypoints for 1 instances and 2 boxes"):
        model(images, bad)
    bad = _targets()
    del bad[0]["keypoints"]
    with pytest.raises(ValueError, match=r"target of image 0 lacks \['keypoints'\]"):
        model(images, bad)


def test_heads_and_predictor_shapes_and_keys():
    head = keypoint_rcnn.KeypointRCNNHeads(8, (16, 16, 16))
    assert sorted(head.state_dict()) == ["0.bias", "0.weight", "2.bias", "2.weight", "4.bias", "4.weight"]
    predictor = keypoint_rcnn.KeypointRCNNPredictor(16, 7)
    assert predictor(head(torch.rand(2, 8, 14, 14))).shape == (2, 7, 56, 56)
    assert predictor.out_channels == 7


def test_constructor_defaults_and_errors(offline_hub):
    backbone = nn.Conv2d(3, 8, 3)
    backbone.out_channels = 8
    model = keypoint_rcnn.KeypointRCNN(backbone, num_classes=2)
    assert model.transform.min_size == (640, 672, 704, 736, 768, 800)
    assert model.roi_heads.keypoint_predictor.out_channels == 17
    assert model.roi_heads.fg_bg_sampler.batch_size_per_image == 512
    with pytest.raises(ValueError, match="num_keypoints should be None when keypoint_predictor is specified"):
        keypoint_rcnn.KeypointRCNN(backbone, num_classes=2, num_keypoints=5,
                                   keypoint_predictor=keypoint_rcnn.KeypointRCNNPredictor(512, 5))
    with pytest.raises(TypeError, match="keypoint_roi_pool"):
        keypoint_rcnn.KeypointRCNN(backbone, num_classes=2, keypoint_roi_pool=nn.Identity())
    # Offline with an empty cache, the ImageNet backbone cannot load: the error names the file and the way out.
    with pytest.raises(CheckpointDownloadError, match="weights_backbone=None") as info:
        keypoint_rcnn.keypointrcnn_resnet50_fpn(weights_backbone="DEFAULT")
    assert str(offline_hub / ResNet50_Weights.IMAGENET1K_V2.file_name) in str(info.value)
    # The COCO weights fix 2 classes and 17 keypoints; checked before anything is built or read.
    with pytest.raises(ValueError, match="num_keypoints=9 .* num_keypoints=17"):
        keypoint_rcnn.keypointrcnn_resnet50_fpn(weights="DEFAULT", num_keypoints=9)
    with pytest.raises(ValueError, match="num_classes=3 .* num_classes=2"):
        keypoint_rcnn.keypointrcnn_resnet50_fpn(weights="COCO_LEGACY", num_classes=3)


def test_builder_defaults():
    model = keypoint_rcnn.keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_keypoints=9)
    assert model.roi_heads.box_predictor.cls_score.out_features == 2
    assert model.roi_heads.keypoint_predictor.out_channels == 9
    assert len(model.roi_heads.keypoint_head) == 16  # 8 convs, 8 ReLUs
