"""SSD300-VGG16: parity with torchvision (oracle), hard negative mining, inference and input checks."""
import pytest
import torch

from _oracle import assert_detections_match, assert_losses_match, assert_same_manifest
from torchdet.models.default_boxes import DefaultBoxGenerator
from torchdet.backbones.vgg import make_layers
from torchdet.models.ssd import SSD, SSDFeatureExtractorVGG, SSDHead, hard_negative_mask, ssd300_vgg16
from torchdet.weights.backbone import VGG16_Weights
from torchdet.weights.hub import CheckpointDownloadError


pytestmark = pytest.mark.usefixtures("one_thread")

VGG16_LAYERS = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


@pytest.fixture(scope="module")
def builder():
    return ssd300_vgg16


def test_state_dict_manifest(golden):
    assert_same_manifest(golden[1], "ssd300_vgg16")


def test_eval_matches_torchvision(golden):
    case, _, detections, _ = golden
    assert_detections_match(detections, case["eval_outputs"])


def test_train_losses_match_torchvision(golden):
    case, _, _, losses = golden
    assert_losses_match(losses, case["train_losses"])


def test_builder_defaults_and_feature_maps(golden):
    model = golden[1]
    assert (model.score_thresh, model.nms_thresh, model.detections_per_img, model.topk_candidates) == (0.0, 0.45, 50, 400)
    assert model.transform.fixed_size == (300, 300) and model.transform.size_divisible == 1
    assert model.transform.image_std == [1.0 / 255.0] * 3
    assert model.box_coder.weights == (10.0, 10.0, 5.0, 5.0)
    assert model.neg_to_pos_ratio == 3.0
    assert float(SSDFeatureExtractorVGG(make_layers(VGG16_LAYERS), highres=False).scale_weight[0].item()) == 20.0
    assert model.backbone.features[16].ceil_mode  # maxpool3: 75 -> 38
    with torch.no_grad():
        features = model.backbone.eval()(torch.zeros(1, 3, 300, 300))
    assert [tuple(f.shape[1:]) for f in features.values()] == [
        (512, 38, 38), (1024, 19, 19), (512, 10, 10), (256, 5, 5), (256, 3, 3), (256, 1, 1)]


def test_builder_weights_errors(offline_hub):
    # torchvision's default backbone is the SSD paper's VGG-16 features: offline, the error names its file.
    with pytest.raises(CheckpointDownloadError, match="weights_backbone=None") as info:
        ssd300_vgg16()
    assert str(offline_hub / VGG16_Weights.IMAGENET1K_FEATURES.file_name) in str(info.value)
    with pytest.raises(ValueError, match="COCO_V1"):  # checked before anything is built or read
        ssd300_vgg16(weights="COCO")
    with pytest.raises(ValueError, match="num_classes=3"):
        ssd300_vgg16(weights="DEFAULT", num_classes=3)


def test_hard_negative_mask_picks_the_hardest_background():
    cls_loss = torch.tensor([[0.1, 5.0, 0.3, 0.9, 0.2, 0.4, 0.8, 0.7],
                             [0.5, 0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8]])
    foreground = torch.tensor([[0, 1, 0, 0, 0, 0, 0, 0],
                               [0, 0, 0, 0, 0, 0, 0, 0]], dtype=torch.bool)
    mask = hard_negative_mask(cls_loss, foreground, 3.0)
    assert mask[0].nonzero().flatten().tolist() == [3, 6, 7]  # 3 negatives per positive, highest loss, never index 1
    assert not mask[1].any()  # no positives, no negatives


# --- a tiny SSD for behavioural tests ----------------------------------------------------------------

@pytest.fixture
def tiny_ssd(make_tiny_backbone):
    """``tiny_ssd(**kwargs)``: SSD on two levels (strides 8 and 16, 8 and 16 channels: no ``out_channels``,
    the head finds them by a dry run), 64 x 64 input, 4 classes, seeded weights."""
    def build(**kwargs) -> SSD:
        anchors = DefaultBoxGenerator([[2], [2, 3]], min_ratio=0.2, max_ratio=0.9)
        return SSD(make_tiny_backbone((8, 16), stride=8), anchors, (64, 64), num_classes=4, **kwargs)
    return build


def _images():
    g = torch.Generator().manual_seed(1)
    return [torch.rand(3, 48, 80, generator=g), torch.rand(3, 64, 64, generator=g)]


def _targets():
    return [{"boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0], [20.0, 10.0, 60.0, 45.0]]), "labels": torch.tensor([1, 3])},
            {"boxes": torch.tensor([[10.0, 12.0, 50.0, 44.0]]), "labels": torch.tensor([2])}]


def test_out_channels_found_by_a_dry_run(tiny_ssd):
    model = tiny_ssd()
    assert isinstance(model.head, SSDHead)
    assert model.head.classification_head.module_list[1].in_channels == 16
    assert model.head.classification_head.module_list[1].out_channels == 6 * 4


def test_zero_box_images_train(tiny_ssd):
    model = tiny_ssd().train()
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    losses = model(_images(), [empty, empty])
    assert set(losses) == {"bbox_regression", "classification"}
    assert losses["bbox_regression"].item() == 0.0 and losses["classification"].item() == 0.0
    mixed = model(_images(), [empty, _targets()[1]])
    total = sum(mixed.values())
    assert torch.isfinite(total) and mixed["classification"].item() > 0
    total.backward()


def test_eval_settings_and_sizes(tiny_ssd):
    model = tiny_ssd(score_thresh=0.0, detections_per_img=11, topk_candidates=4, nms_thresh=1.0).eval()
    images = _images()
    with torch.no_grad():
        out = model(images)
    for o, image in zip(out, images):
        assert o["boxes"].shape == (11, 4)
        assert (o["labels"] >= 1).all() and o["labels"].dtype == torch.int64  # never background
        assert (o["boxes"][:, 2] <= image.shape[-1]).all() and (o["boxes"][:, 3] <= image.shape[-2]).all()
    model.detections_per_img = 1000
    with torch.no_grad():
        out = model(images[:1])
    assert len(out[0]["boxes"]) <= 3 * 4  # at most topk_candidates per foreground class


@pytest.mark.parametrize("make_bad, message", [
    (lambda imgs, tg: (imgs, None), "targets are required"),
    (lambda imgs, tg: (imgs, [{**tg[0], "boxes": tg[0]["boxes"].flip(1)}, tg[1]]), "x1 < x2"),
    (lambda imgs, tg: ([imgs[0].to(torch.uint8), imgs[1]], tg), "floating point"),
])
def test_bad_inputs_raise_value_error(make_bad, message, tiny_ssd):
    model = tiny_ssd().train()
    images, targets = make_bad(_images(), _targets())
    with pytest.raises(ValueError, match=message):
        model(images, targets)
