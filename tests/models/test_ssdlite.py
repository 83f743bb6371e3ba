"""SSDlite320-MobileNetV3-Large: parity with torchvision (oracle), structure, defaults and training."""
import pytest
import torch
from torch import nn

from _oracle import assert_detections_match, assert_losses_match, assert_same_manifest
from torchdet.models import ssdlite
from torchdet.models.ssdlite import SSDLiteHead, ssdlite320_mobilenet_v3_large
from torchdet.weights.backbone import MobileNet_V3_Large_Weights
from torchdet.weights.detection import SSDLite320_MobileNet_V3_Large_Weights
from torchdet.weights.hub import CheckpointDownloadError


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def builder():
    return ssdlite320_mobilenet_v3_large


def test_state_dict_manifest(golden):
    assert_same_manifest(golden[1], "ssdlite320_mobilenet_v3_large")


def test_eval_matches_torchvision(golden):
    case, _, detections, _ = golden
    assert_detections_match(detections, case["eval_outputs"])


def test_train_losses_match_torchvision(golden):
    case, _, _, losses = golden
    assert_losses_match(losses, case["train_losses"])


@pytest.fixture(scope="module")
def default_model():
    return ssdlite320_mobilenet_v3_large(weights_backbone=None, num_classes=3)


def test_builder_defaults(default_model):
    model = default_model
    assert (model.score_thresh, model.nms_thresh, model.detections_per_img, model.topk_candidates) == (0.001, 0.55, 300, 300)
    assert model.transform.fixed_size == (320, 320)
    assert model.transform.image_mean == [0.5] * 3 and model.transform.image_std == [0.5] * 3
    assert isinstance(model.head, SSDLiteHead)
    assert model.head.classification_head.module_list[0][1].out_channels == 6 * 3
    bn = model.backbone.extra[0][0][1]
    assert isinstance(bn, nn.BatchNorm2d) and (bn.eps, bn.momentum) == (0.001, 0.03)
    assert all(p.requires_grad for p in model.backbone.parameters())  # no weights: all 6 stages train
    assert model.anchor_generator.num_anchors_per_location() == [6] * 6
    assert model.backbone.features[1][-1][0].out_channels == 480  # reduced tail: C5 halved (960 -> 480)


def test_builder_weights_errors(offline_hub):
    # torchvision's default is an ImageNet backbone: offline with an empty cache, the error says what to do.
    with pytest.raises(CheckpointDownloadError, match="weights_backbone=None") as info:
        ssdlite320_mobilenet_v3_large(num_classes=3)
    assert str(offline_hub / MobileNet_V3_Large_Weights.IMAGENET1K_V1.file_name) in str(info.value)
    with pytest.raises(ValueError, match="num_classes=3"):  # checked before anything is built or read
        ssdlite320_mobilenet_v3_large(weights="DEFAULT", num_classes=3)


def test_reduced_tail_unless_an_imagenet_backbone_is_loaded(monkeypatch):
    """As torchvision: the COCO weights were trained from scratch with the reduced tail; only an ImageNet
    backbone keeps the full C5. (Checkpoints are not read here: the loaders are replaced by recorders.)"""
    requested, loaded = [], []
    real_backbone = ssdlite.mobilenet_v3_large

    def backbone(*, weights=None, **kwargs):
        requested.append(weights)
        return real_backbone(weights=None, **kwargs)

    monkeypatch.setattr(ssdlite, "mobilenet_v3_large", backbone)
    monkeypatch.setattr(ssdlite, "load_weights", lambda model, weights, progress: loaded.append(weights) or model)

    model = ssdlite320_mobilenet_v3_large(weights="DEFAULT")  # weights_backbone keeps its default, ignored
    assert requested == [None] and loaded == [SSDLite320_MobileNet_V3_Large_Weights.COCO_V1]
    assert model.backbone.features[1][-1][0].out_channels == 480
    assert model.head.classification_head.module_list[0][1].out_channels == 6 * 91

    model = ssdlite320_mobilenet_v3_large(num_classes=3)  # the default ImageNet backbone: full tail
    assert requested[1:] == [MobileNet_V3_Large_Weights.IMAGENET1K_V1] and len(loaded) == 1
    assert model.backbone.features[1][-1][0].out_channels == 960


def test_feature_maps(golden):
    with torch.no_grad():
        features = golden[1].backbone.eval()(torch.zeros(1, 3, 320, 320))
    assert [tuple(f.shape[1:]) for f in features.values()] == [
        (672, 20, 20), (480, 10, 10), (512, 5, 5), (256, 3, 3), (256, 2, 2), (128, 1, 1)]


def test_zero_box_image_trains(default_model):
    model = default_model.train()
    images = [torch.rand(3, 100, 120), torch.rand(3, 90, 90)]
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    one = {"boxes": torch.tensor([[10.0, 10.0, 60.0, 70.0]]), "labels": torch.tensor([2])}
    with torch.no_grad():
        losses = model(images, [empty, one])
        assert all(torch.isfinite(v) for v in losses.values()) and losses["bbox_regression"].item() > 0
        losses = model(images, [empty, empty])
        assert losses["bbox_regression"].item() == 0.0 and losses["classification"].item() == 0.0
