"""Faster R-CNN: checkpoint keys, parity with torchvision (the oracle), and the user-facing contract."""
import math

import pytest
import torch
from torch import nn

from _oracle import (_match_detections, assert_detections_match, assert_losses_match, assert_same_manifest,
                     build_filled, load_case)
from torchdet.models import faster_rcnn as frcnn
from torchdet.models.anchor_utils import AnchorGenerator
from torchdet.ops.misc import FrozenBatchNorm2d
from torchdet.ops.poolers import MultiScaleRoIAlign
from torchdet.weights.backbone import MobileNet_V3_Large_Weights, ResNet50_Weights
from torchdet.weights.detection import FasterRCNN_MobileNet_V3_Large_FPN_Weights, MaskRCNN_ResNet50_FPN_Weights
from torchdet.weights.hub import CheckpointDownloadError

BUILDERS = [
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
]


def assert_detections_match_up_to_near_ties(ours, ref, max_swaps=2, score_tol=1e-5):
    """The oracle's rule, except that a few detections may swap with a score-tied rival.

    With random weights every class score sits near 1/91 and many candidates tie to within a
    float32 ulp, so ulp-level noise (thread count and CPU kernels change the backbone's last
    bits, in torchvision too) can decide which of two tied candidates survives NMS or the
    top-``detections_per_img`` cut. Each unmatched reference detection must pair with an
    unmatched detection of ours of the same label whose score is within ``score_tol``; at most
    ``max_swaps`` per image. Anything systematic (sizes, thresholds, decoding) fails this too.
    """
    try:
        assert_detections_match(ours, ref)
        return
    except AssertionError:
        pass
    assert len(ours) == len(ref)
    for i, (o, r) in enumerate(zip(ours, ref)):
        assert len(o["boxes"]) == len(r["boxes"]), f"image {i}: {len(o['boxes'])} detections vs {len(r['boxes'])}"
        idx = _match_detections(o, r)
        unmatched_ref = (idx < 0).nonzero().flatten().tolist()
        free = sorted(set(range(len(o["boxes"]))) - set(idx[idx >= 0].tolist()))
        assert len(unmatched_ref) <= max_swaps, f"image {i}: {len(unmatched_ref)} reference detections unmatched"
        for j in unmatched_ref:
            rivals = [k for k in free if int(o["labels"][k]) == int(r["labels"][j])
                      and abs(float(o["scores"][k]) - float(r["scores"][j])) <= score_tol]
            assert rivals, f"image {i}: reference detection {j} ({r['boxes'][j].tolist()}) has no score-tied rival"
            free.remove(rivals[0])


@pytest.mark.parametrize("name", BUILDERS)
def test_parity_with_torchvision(name):
    """Same keys and shapes as torchvision's checkpoints; same detections and losses on the oracle's inputs."""
    case = load_case(name)
    builder = getattr(frcnn, name)
    # train_kwargs only add the samplers' batch sizes, which eval never reads: one model serves both.
    changed = {k for k, v in case["train_kwargs"].items() if case["kwargs"].get(k, object()) != v}
    assert changed <= {"rpn_batch_size_per_image", "box_batch_size_per_image"}, changed
    model = build_filled(builder, case["weights_seed"], **case["train_kwargs"]).eval()
    assert_same_manifest(model, name)
    with torch.no_grad():
        outputs = model(case["images"])
    assert_detections_match_up_to_near_ties(outputs, case["eval_outputs"])

    torch.manual_seed(0)
    model.train()
    with torch.no_grad():  # the same losses, without keeping the graph
        losses = model(case["images"], case["targets"])
    assert_losses_match(losses, case["train_losses"])


# ---- the contract, on the smallest builder --------------------------------------------------------


# Small inputs and few proposals keep the contract tests fast.
_SMALL = dict(min_size=128, max_size=192, rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_test=50,
              rpn_pre_nms_top_n_train=100, rpn_post_nms_top_n_train=50, box_batch_size_per_image=64)


@pytest.fixture(scope="module")
def small_model():
    model = build_filled(frcnn.fasterrcnn_mobilenet_v3_large_320_fpn, 0, box_score_thresh=0.0,
                         box_detections_per_img=20, **_SMALL)
    return model.eval()


def _images():
    g = torch.Generator().manual_seed(1)
    return [torch.rand(3, 120, 160, generator=g), torch.rand(3, 150, 100, generator=g)]


def _targets():
    return [
        {"boxes": torch.tensor([[10.0, 20.0, 80.0, 100.0], [50.0, 5.0, 150.0, 60.0]]), "labels": torch.tensor([1, 5])},
        {"boxes": torch.tensor([[5.0, 5.0, 60.0, 140.0]]), "labels": torch.tensor([3])},
    ]


def test_eval_outputs_contract(small_model):
    images = _images()
    with torch.no_grad():
        out = small_model(images)
    assert len(out) == 2
    for det, image in zip(out, images):
        assert set(det) == {"boxes", "labels", "scores"}
        n = len(det["boxes"])
        assert 0 < n <= 20
        assert det["boxes"].shape == (n, 4) and det["boxes"].dtype == torch.float32
        assert det["labels"].shape == (n,) and det["labels"].dtype == torch.int64
        assert det["scores"].shape == (n,) and det["scores"].dtype == torch.float32
        assert bool((det["labels"] >= 1).all() and (det["labels"] <= 90).all())
        assert bool((det["scores"][:-1] >= det["scores"][1:]).all())  # best first
        h, w = image.shape[-2:]
        b = det["boxes"]
        assert bool((b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all())


def test_batched_tensor_equals_list(small_model):
    images = torch.rand(2, 3, 120, 160, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        from_batch = small_model(images)
        from_list = small_model(list(images))
    for a, b in zip(from_batch, from_list):
        for k in ("boxes", "labels", "scores"):
            torch.testing.assert_close(a[k], b[k])


def test_bad_inputs_raise_value_error_naming_the_image(small_model):
    images = _images()
    with pytest.raises(ValueError, match="image 1 has 4 channels"):
        small_model([images[0], torch.rand(4, 150, 100)])
    small_model.train()
    try:
        with pytest.raises(ValueError, match="targets are required"):
            small_model(images)
        with pytest.raises(ValueError, match="got 1 targets for 2 images"):
            small_model(images, _targets()[:1])
        bad = _targets()
        bad[1]["boxes"] = torch.tensor([[60.0, 5.0, 5.0, 140.0]])
        with pytest.raises(ValueError, match=r"image 1, box 0 is \[60.0, 5.0, 5.0, 140.0\]"):
            small_model(images, bad)
        bad = _targets()
        bad[0]["labels"] = torch.tensor([1])
        with pytest.raises(ValueError, match="image 0 has 1 labels for 2 boxes"):
            small_model(images, bad)
        bad = _targets()
        bad[1]["boxes"] = torch.tensor([5.0, 5.0, 60.0, 140.0])
        with pytest.raises(ValueError, match=r"image 1 must be a tensor of shape \[N, 4\]"):
            small_model(images, bad)
    finally:
        small_model.eval()


def test_image_without_boxes_trains():
    torch.manual_seed(0)
    model = build_filled(frcnn.fasterrcnn_mobilenet_v3_large_320_fpn, 0, **_SMALL).train()
    targets = _targets()
    targets[1] = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    losses = model(_images(), targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    assert all(math.isfinite(float(v.detach())) for v in losses.values())
    sum(losses.values()).backward()


def test_custom_backbone_example_from_the_docs():
    """torchvision's documented recipe: a MobileNetV2 feature extractor as a one-level backbone."""
    from torchdet.backbones.mobilenet_v2 import mobilenet_v2

    torch.manual_seed(0)
    backbone = mobilenet_v2(weights=None).features
    backbone.out_channels = 1280
    anchor_generator = AnchorGenerator(sizes=((32, 64, 128, 256, 512),), aspect_ratios=((0.5, 1.0, 2.0),))
    roi_pooler = MultiScaleRoIAlign(featmap_names=["0"], output_size=7, sampling_ratio=2)
    model = frcnn.FasterRCNN(backbone, num_classes=2, rpn_anchor_generator=anchor_generator, box_roi_pool=roi_pooler,
                             box_score_thresh=0.0, **_SMALL)
    images = [torch.rand(3, 100, 130), torch.rand(3, 120, 90)]
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2 and all(bool((d["labels"] == 1).all()) for d in out)
    model.train()
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 60.0, 80.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[20.0, 30.0, 70.0, 100.0]]), "labels": torch.tensor([1])}]
    losses = model(images, targets)
    assert all(math.isfinite(float(v.detach())) for v in losses.values())


def test_num_classes_and_box_predictor_errors():
    backbone = nn.Conv2d(3, 8, 3)
    backbone.out_channels = 8
    with pytest.raises(ValueError, match="num_classes should not be None"):
        frcnn.FasterRCNN(backbone)
    with pytest.raises(ValueError, match="num_classes should be None"):
        frcnn.FasterRCNN(backbone, num_classes=3, box_predictor=frcnn.FastRCNNPredictor(1024, 3))
    with pytest.raises(ValueError, match="out_channels"):
        frcnn.FasterRCNN(nn.Sequential(nn.Conv2d(3, 8, 3)), num_classes=3)
    model = frcnn.FasterRCNN(backbone, box_predictor=frcnn.FastRCNNPredictor(1024, 3))
    assert model.roi_heads.box_predictor.cls_score.out_features == 3
    assert model.transform.min_size == (800,) and model.transform.max_size == 1333
    assert model.rpn._pre_nms_top_n == {"training": 2000, "testing": 1000}


def test_builder_defaults():
    model = frcnn.fasterrcnn_mobilenet_v3_large_320_fpn(weights_backbone=None, num_classes=5)
    assert model.roi_heads.box_predictor.cls_score.out_features == 5
    assert model.transform.min_size == (320,) and model.transform.max_size == 640
    assert model.rpn._pre_nms_top_n["testing"] == 150 and model.rpn._post_nms_top_n["testing"] == 150
    assert model.rpn.score_thresh == 0.05
    assert model.rpn.anchor_generator.sizes == ((32, 64, 128, 256, 512),) * 3


def test_builder_weights_errors(offline_hub):
    # torchvision's default is an ImageNet backbone: offline with an empty cache, the error names the
    # file, where to put it, and the way out.
    with pytest.raises(CheckpointDownloadError, match="weights_backbone=None") as info:
        frcnn.fasterrcnn_mobilenet_v3_large_320_fpn(num_classes=5)
    assert str(offline_hub / MobileNet_V3_Large_Weights.IMAGENET1K_V1.file_name) in str(info.value)
    with pytest.raises(CheckpointDownloadError, match="weights=None") as info:
        frcnn.fasterrcnn_mobilenet_v3_large_fpn(weights="DEFAULT")
    assert str(offline_hub / FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1.file_name) in str(info.value)
    # Checked before anything is built or read:
    with pytest.raises(ValueError, match="COCO_V1"):
        frcnn.fasterrcnn_resnet50_fpn(weights="COCO")
    with pytest.raises(ValueError, match="num_classes=5 .* num_classes=91"):
        frcnn.fasterrcnn_resnet50_fpn(weights="DEFAULT", num_classes=5)
    with pytest.raises(TypeError, match="MaskRCNN_ResNet50_FPN_Weights.COCO_V1"):
        frcnn.fasterrcnn_resnet50_fpn(weights=MaskRCNN_ResNet50_FPN_Weights.COCO_V1)
    with pytest.raises(TypeError, match="ResNet50_Weights"):
        frcnn.fasterrcnn_resnet50_fpn(weights_backbone=MobileNet_V3_Large_Weights.IMAGENET1K_V1)


# ---- trainable_backbone_layers and the norm layer ---------------------------------------------------


def test_no_weights_trains_everything_with_batchnorm():
    model = frcnn.fasterrcnn_mobilenet_v3_large_fpn(weights_backbone=None)
    assert all(p.requires_grad for p in model.backbone.parameters())
    norms = [m for m in model.backbone.body.modules() if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d))]
    assert norms and all(isinstance(m, nn.BatchNorm2d) for m in norms)
    with pytest.warns(UserWarning, match="no effect"):
        model = frcnn.fasterrcnn_mobilenet_v3_large_fpn(weights_backbone=None, trainable_backbone_layers=2)
    assert all(p.requires_grad for p in model.backbone.parameters())


def test_pretrained_backbone_freezes_and_uses_frozen_bn(monkeypatch):
    """With ImageNet backbone weights: FrozenBatchNorm2d and only the top stages trainable.

    The backbone constructors are wrapped to record the weights they are given and build without
    reading a checkpoint (tests/weights loads real files through the builders).
    """
    import torchdet.backbones.mobilenet_v3 as mnv3
    import torchdet.backbones.resnet as resnet

    real_resnet50, real_mnv3 = resnet.resnet50, mnv3.mobilenet_v3_large
    requested = []

    def fake(real):
        def build(*, weights=None, **kw):
            requested.append(weights)
            return real(weights=None, **kw)
        return build

    monkeypatch.setattr(resnet, "resnet50", fake(real_resnet50))
    monkeypatch.setattr(mnv3, "mobilenet_v3_large", fake(real_mnv3))

    model = frcnn.fasterrcnn_resnet50_fpn(weights_backbone="IMAGENET1K_V1", trainable_backbone_layers=2)
    assert isinstance(model.backbone.body.bn1, FrozenBatchNorm2d)
    trainable = {n.split(".")[0] for n, p in model.backbone.body.named_parameters() if p.requires_grad}
    assert trainable == {"layer3", "layer4"}

    model = frcnn.fasterrcnn_resnet50_fpn_v2(weights_backbone="IMAGENET1K_V1")  # default 3; v2 keeps BatchNorm2d
    assert isinstance(model.backbone.body.bn1, nn.BatchNorm2d)
    trainable = {n.split(".")[0] for n, p in model.backbone.body.named_parameters() if p.requires_grad}
    assert trainable == {"layer2", "layer3", "layer4"}

    model = frcnn.fasterrcnn_mobilenet_v3_large_320_fpn(weights_backbone="IMAGENET1K_V1")
    norms = [m for m in model.backbone.body.modules() if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d))]
    assert norms and all(isinstance(m, FrozenBatchNorm2d) for m in norms)
    frozen = [p.requires_grad for p in model.backbone.body.parameters()]
    assert not frozen[0] and frozen[-1]  # the stem is frozen, the last stage trains
    assert requested == [ResNet50_Weights.IMAGENET1K_V1] * 2 + [MobileNet_V3_Large_Weights.IMAGENET1K_V1]
    with pytest.raises(ValueError, match="trainable_backbone_layers"):
        frcnn.fasterrcnn_resnet50_fpn(weights_backbone="IMAGENET1K_V1", trainable_backbone_layers=6)

    # Given detection weights, weights_backbone is ignored (no ImageNet file is asked for), yet the backbone
    # is frozen as for any pretrained model and num_classes comes from the weights' categories.
    loaded = []
    monkeypatch.setattr(frcnn, "load_weights", lambda model, weights, progress: loaded.append(weights) or model)
    requested.clear()
    model = frcnn.fasterrcnn_mobilenet_v3_large_320_fpn(weights="DEFAULT")
    assert requested == [None]
    assert loaded == [frcnn.FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.COCO_V1]
    assert model.roi_heads.box_predictor.cls_score.out_features == 91
    norms = [m for m in model.backbone.body.modules() if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d))]
    assert norms and all(isinstance(m, FrozenBatchNorm2d) for m in norms)
    assert not next(model.backbone.body.parameters()).requires_grad  # trainable_backbone_layers defaults to 3
