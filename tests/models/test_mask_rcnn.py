"""Mask R-CNN: checkpoint keys, parity with torchvision (the oracle), and the user-facing contract."""
import math

import pytest
import torch
from torch import nn

from _oracle import assert_detections_match, assert_losses_match, assert_same_manifest, build_filled, load_case
from torchdet.models import mask_rcnn
from torchdet.models.anchor_utils import AnchorGenerator
from torchdet.ops.poolers import MultiScaleRoIAlign


@pytest.mark.parametrize("name", ["maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2"])
def test_parity_with_torchvision(name):
    """Same keys and shapes as torchvision's checkpoints; same detections, masks and losses on the oracle's inputs."""
    case = load_case(name)
    # train_kwargs only add the samplers' batch sizes, which eval never reads: one model serves both.
    changed = {k for k, v in case["train_kwargs"].items() if case["kwargs"].get(k, object()) != v}
    assert changed <= {"rpn_batch_size_per_image", "box_batch_size_per_image"}, changed
    model = build_filled(getattr(mask_rcnn, name), case["weights_seed"], **case["train_kwargs"]).eval()
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


def tiny_maskrcnn(**kwargs):
    """A one-level, 16-channel Mask R-CNN: fast enough for contract tests."""
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(3, 16, 3, stride=4, padding=1), nn.ReLU())
    backbone.out_channels = 16
    defaults = dict(
        num_classes=4, min_size=96, max_size=128, box_score_thresh=0.0, box_detections_per_img=10,
        rpn_anchor_generator=AnchorGenerator(((16, 32, 64),), ((0.5, 1.0, 2.0),)),
        rpn_pre_nms_top_n_test=50, rpn_post_nms_top_n_test=20, rpn_pre_nms_top_n_train=50,
        rpn_post_nms_top_n_train=20, box_batch_size_per_image=32,
        box_roi_pool=MultiScaleRoIAlign(["0"], 7, 2), mask_roi_pool=MultiScaleRoIAlign(["0"], 14, 2),
        mask_head=mask_rcnn.MaskRCNNHeads(16, (256,), 1),
    )
    return mask_rcnn.MaskRCNN(backbone, **{**defaults, **kwargs})


def _images():
    g = torch.Generator().manual_seed(1)
    return [torch.rand(3, 90, 120, generator=g), torch.rand(3, 110, 70, generator=g)]


def _targets():
    masks0 = torch.zeros(2, 90, 120, dtype=torch.uint8)
    masks0[0, 20:80, 10:60] = 1
    masks0[1, 5:40, 50:110] = 1
    masks1 = torch.zeros(1, 110, 70, dtype=torch.uint8)
    masks1[0, 10:100, 5:50] = 1
    return [
        {"boxes": torch.tensor([[10.0, 20.0, 60.0, 80.0], [50.0, 5.0, 110.0, 40.0]]), "labels": torch.tensor([1, 3]),
         "masks": masks0},
        {"boxes": torch.tensor([[5.0, 10.0, 50.0, 100.0]]), "labels": torch.tensor([2]), "masks": masks1},
    ]


def test_eval_masks_are_probabilities_at_the_original_size():
    model = tiny_maskrcnn().eval()
    images = _images()
    with torch.no_grad():
        out = model(images)
    for det, image in zip(out, images):
        assert set(det) == {"boxes", "labels", "scores", "masks"}
        n = len(det["boxes"])
        assert n > 0
        assert det["masks"].shape == (n, 1, *image.shape[-2:]) and det["masks"].dtype == torch.float32
        assert bool((det["masks"] >= 0).all() and (det["masks"] <= 1).all())


def test_training_adds_the_mask_loss_and_backpropagates():
    model = tiny_maskrcnn().train()
    losses = model(_images(), _targets())
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}
    assert all(math.isfinite(float(v.detach())) for v in losses.values())
    sum(losses.values()).backward()
    assert model.roi_heads.mask_predictor.mask_fcn_logits.weight.grad is not None


def test_bad_mask_targets_raise_value_error_naming_the_image():
    model = tiny_maskrcnn().train()
    images = _images()
    bad = _targets()
    bad[1]["masks"] = torch.zeros(1, 100, 70, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"masks of image 1 have size \[100, 70\] but the image is \[110, 70\]"):
        model(images, bad)
    bad = _targets()
    bad[0]["masks"] = bad[0]["masks"][:1]
    with pytest.raises(ValueError, match="image 0 has 1 masks for 2 boxes"):
        model(images, bad)
    bad = _targets()
    del bad[1]["masks"]
    with pytest.raises(ValueError, match=r"target of image 1 lacks \['masks'\]"):
        model(images, bad)


def test_heads_and_predictor_shapes_and_keys():
    head = mask_rcnn.MaskRCNNHeads(8, (16, 16), 2, norm_layer=nn.BatchNorm2d)
    assert sorted(head.state_dict())[:2] == ["0.0.weight", "0.1.bias"]
    assert "0.0.bias" not in head.state_dict()  # the norm replaces the conv's bias
    features = head(torch.rand(3, 8, 14, 14))
    assert features.shape == (3, 16, 14, 14)
    predictor = mask_rcnn.MaskRCNNPredictor(16, 12, 5)
    assert predictor(features).shape == (3, 5, 28, 28)
    assert list(dict(predictor.named_children())) == ["conv5_mask", "relu", "mask_fcn_logits"]


def test_heads_load_checkpoints_with_the_old_key_names():
    """Checkpoints saved before the Conv2dNormActivation layout name the convs mask_fcn1, mask_fcn2 ..."""
    head = mask_rcnn.MaskRCNNHeads(8, (16, 16), 1)
    old = {f"mask_fcn{i + 1}.{kind}": torch.full_like(getattr(head[i][0], kind), float(i))
           for i in range(2) for kind in ("weight", "bias")}
    head.load_state_dict(old)
    assert bool((head[1][0].weight == 1).all() and (head[0][0].bias == 0).all())


def test_constructor_errors():
    backbone = nn.Conv2d(3, 8, 3)
    backbone.out_channels = 8
    with pytest.raises(ValueError, match="num_classes should be None when mask_predictor is specified"):
        mask_rcnn.MaskRCNN(backbone, num_classes=3, mask_predictor=mask_rcnn.MaskRCNNPredictor(256, 256, 3))
    with pytest.raises(TypeError, match="mask_roi_pool"):
        mask_rcnn.MaskRCNN(backbone, num_classes=3, mask_roi_pool=nn.Identity())
    # Weights are checked before anything is built or read.
    with pytest.raises(ValueError, match="num_classes=3 .* num_classes=91"):
        mask_rcnn.maskrcnn_resnet50_fpn(weights="DEFAULT", num_classes=3)
    with pytest.raises(ValueError, match="COCO_V1"):
        mask_rcnn.maskrcnn_resnet50_fpn_v2(weights="COCO")
    with pytest.raises(TypeError, match="another model"):
        mask_rcnn.maskrcnn_resnet50_fpn(weights=mask_rcnn.MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1)


def test_builders_default_to_coco_classes_and_trainable_batchnorm():
    model = mask_rcnn.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=5)
    assert model.roi_heads.mask_predictor.mask_fcn_logits.out_channels == 5
    assert model.roi_heads.box_predictor.cls_score.out_features == 5
    assert isinstance(model.backbone.body.bn1, nn.BatchNorm2d)
    assert all(p.requires_grad for p in model.backbone.parameters())  # 5 trainable layers without weights
