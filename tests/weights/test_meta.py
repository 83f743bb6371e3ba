"""The enums' metadata equals torchvision 0.28's published values."""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest

from torchdet.weights import backbone, detection
from torchdet.weights.meta import (
    COCO_CATEGORIES,
    COCO_PERSON_CATEGORIES,
    COCO_PERSON_KEYPOINT_NAMES,
    IMAGENET_CATEGORIES,
)

MANIFEST = Path(__file__).parents[1] / "oracle" / "golden" / "state_dict_manifest.json"
BASE = "https://download.pytorch.org/models/"
RECIPES = "https://github.com/pytorch/vision/tree/main/references/detection#"

# member -> (file name, num_params, COCO-val2017 metrics, GFLOPS, MB, recipe)
PUBLISHED = {
    "FasterRCNN_ResNet50_FPN_Weights.COCO_V1": (
        "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth", 41755286, {"box_map": 37.0}, 134.38, 159.743,
        RECIPES + "faster-r-cnn-resnet-50-fpn"),
    "FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1": (
        "fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth", 43712278, {"box_map": 46.7}, 280.371, 167.104,
        "https://github.com/pytorch/vision/pull/5763"),
    "FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1": (
        "fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth", 19386354, {"box_map": 32.8}, 4.494, 74.239,
        RECIPES + "faster-r-cnn-mobilenetv3-large-fpn"),
    "FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.COCO_V1": (
        "fasterrcnn_mobilenet_v3_large_320_fpn-907ea3f9.pth", 19386354, {"box_map": 22.8}, 0.719, 74.239,
        RECIPES + "faster-r-cnn-mobilenetv3-large-320-fpn"),
    "MaskRCNN_ResNet50_FPN_Weights.COCO_V1": (
        "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth", 44401393, {"box_map": 37.9, "mask_map": 34.6}, 134.38, 169.84,
        RECIPES + "mask-r-cnn"),
    "MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1": (
        "maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth", 46359409, {"box_map": 47.4, "mask_map": 41.8}, 333.577,
        177.219, "https://github.com/pytorch/vision/pull/5773"),
    "KeypointRCNN_ResNet50_FPN_Weights.COCO_LEGACY": (
        "keypointrcnn_resnet50_fpn_coco-9f466800.pth", 59137258, {"box_map": 50.6, "kp_map": 61.1}, 133.924,
        226.054, "https://github.com/pytorch/vision/issues/1606"),
    "KeypointRCNN_ResNet50_FPN_Weights.COCO_V1": (
        "keypointrcnn_resnet50_fpn_coco-fc266e95.pth", 59137258, {"box_map": 54.6, "kp_map": 65.0}, 137.42,
        226.054, RECIPES + "keypoint-r-cnn"),
    "RetinaNet_ResNet50_FPN_Weights.COCO_V1": (
        "retinanet_resnet50_fpn_coco-eeacb38b.pth", 34014999, {"box_map": 36.4}, 151.54, 130.267,
        RECIPES + "retinanet"),
    "RetinaNet_ResNet50_FPN_V2_Weights.COCO_V1": (
        "retinanet_resnet50_fpn_v2_coco-5905b1c5.pth", 38198935, {"box_map": 41.5}, 152.238, 146.037,
        "https://github.com/pytorch/vision/pull/5756"),
    "FCOS_ResNet50_FPN_Weights.COCO_V1": (
        "fcos_resnet50_fpn_coco-99b0c9b7.pth", 32269600, {"box_map": 39.2}, 128.207, 123.608,
        RECIPES + "fcos-resnet-50-fpn"),
    "SSD300_VGG16_Weights.COCO_V1": (
        "ssd300_vgg16_coco-b556d3b4.pth", 35641826, {"box_map": 25.1}, 34.858, 135.988, RECIPES + "ssd300-vgg16"),
    "SSDLite320_MobileNet_V3_Large_Weights.COCO_V1": (
        "ssdlite320_mobilenet_v3_large_coco-a79551df.pth", 3440060, {"box_map": 21.3}, 0.583, 13.418,
        RECIPES + "ssdlite320-mobilenetv3-large"),
}

# member -> (file name, num_params, (acc@1, acc@5), GFLOPS, MB, resize_size)
PUBLISHED_IMAGENET = {
    "ResNet50_Weights.IMAGENET1K_V1": ("resnet50-0676ba61.pth", 25557032, (76.130, 92.862), 4.089, 97.781, 256),
    "ResNet50_Weights.IMAGENET1K_V2": ("resnet50-11ad3fa6.pth", 25557032, (80.858, 95.434), 4.089, 97.79, 232),
    "MobileNet_V3_Large_Weights.IMAGENET1K_V1": ("mobilenet_v3_large-8738ca79.pth", 5483032, (74.042, 91.340),
                                                 0.217, 21.114, 256),
    "MobileNet_V3_Large_Weights.IMAGENET1K_V2": ("mobilenet_v3_large-5c1a4163.pth", 5483032, (75.274, 92.566),
                                                 0.217, 21.107, 232),
    "VGG16_Weights.IMAGENET1K_V1": ("vgg16-397923af.pth", 138357544, (71.592, 90.382), 15.47, 527.796, 256),
    "VGG16_Weights.IMAGENET1K_FEATURES": ("vgg16_features-amdegroot-88682ab5.pth", 138357544,
                                          (math.nan, math.nan), 15.47, 527.802, 256),
}

BUILDER_OF = {
    "FasterRCNN_ResNet50_FPN_Weights": "fasterrcnn_resnet50_fpn",
    "FasterRCNN_ResNet50_FPN_V2_Weights": "fasterrcnn_resnet50_fpn_v2",
    "FasterRCNN_MobileNet_V3_Large_FPN_Weights": "fasterrcnn_mobilenet_v3_large_fpn",
    "FasterRCNN_MobileNet_V3_Large_320_FPN_Weights": "fasterrcnn_mobilenet_v3_large_320_fpn",
    "MaskRCNN_ResNet50_FPN_Weights": "maskrcnn_resnet50_fpn",
    "MaskRCNN_ResNet50_FPN_V2_Weights": "maskrcnn_resnet50_fpn_v2",
    "KeypointRCNN_ResNet50_FPN_Weights": "keypointrcnn_resnet50_fpn",
    "RetinaNet_ResNet50_FPN_Weights": "retinanet_resnet50_fpn",
    "RetinaNet_ResNet50_FPN_V2_Weights": "retinanet_resnet50_fpn_v2",
    "FCOS_ResNet50_FPN_Weights": "fcos_resnet50_fpn",
    "SSD300_VGG16_Weights": "ssd300_vgg16",
    "SSDLite320_MobileNet_V3_Large_Weights": "ssdlite320_mobilenet_v3_large",
}

# Builders whose pretrained backbone uses FrozenBatchNorm2d (its affine values are buffers, not parameters).
FROZEN_BN = {"fasterrcnn_resnet50_fpn", "fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_mobilenet_v3_large_320_fpn",
             "maskrcnn_resnet50_fpn", "keypointrcnn_resnet50_fpn", "retinanet_resnet50_fpn", "fcos_resnet50_fpn"}


def _member(full_name: str):  # noqa: ANN202
    enum_name, member = full_name.split(".")
    module = detection if hasattr(detection, enum_name) else backbone
    return getattr(module, enum_name)[member]


def test_every_member_is_covered() -> None:
    members = {repr(m) for name in detection.__all__ for m in getattr(detection, name)}
    assert members == set(PUBLISHED)
    members = {repr(m) for name in backbone.__all__ for m in getattr(backbone, name)}
    assert members == set(PUBLISHED_IMAGENET)


@pytest.mark.parametrize("full_name", sorted(PUBLISHED))
def test_detection_meta_is_torchvisions(full_name: str) -> None:
    file_name, num_params, metrics, ops, size, recipe = PUBLISHED[full_name]
    weights = _member(full_name)
    assert weights.url == BASE + file_name and weights.file_name == file_name
    meta = weights.meta
    assert meta["num_params"] == num_params
    assert meta["_metrics"] == {"COCO-val2017": metrics}
    assert meta["_ops"] == ops and meta["_file_size"] == size
    assert meta["recipe"] == recipe
    assert meta["min_size"] == (1, 1)
    assert "These weights" in meta["_docs"]
    if full_name.startswith("KeypointRCNN"):
        assert meta["categories"] == ["no person", "person"]
        assert meta["keypoint_names"] == COCO_PERSON_KEYPOINT_NAMES
    else:
        assert meta["categories"] == COCO_CATEGORIES and "keypoint_names" not in meta


@pytest.mark.parametrize("full_name", sorted(PUBLISHED_IMAGENET))
def test_imagenet_meta_is_torchvisions(full_name: str) -> None:
    file_name, num_params, (top1, top5), ops, size, resize = PUBLISHED_IMAGENET[full_name]
    weights = _member(full_name)
    assert weights.url == BASE + file_name
    meta = weights.meta
    assert meta["num_params"] == num_params and meta["_ops"] == ops and meta["_file_size"] == size
    acc = meta["_metrics"]["ImageNet-1K"]
    for got, want in ((acc["acc@1"], top1), (acc["acc@5"], top5)):
        assert (math.isnan(got) and math.isnan(want)) or got == want
    assert weights.transforms().resize_size == [resize] and weights.transforms().crop_size == [224]
    if full_name == "VGG16_Weights.IMAGENET1K_FEATURES":
        assert meta["categories"] is None
    else:
        assert meta["categories"] == IMAGENET_CATEGORIES
    assert meta["min_size"] == ((32, 32) if full_name.startswith("VGG") else (1, 1))


def test_defaults_are_torchvisions() -> None:
    assert backbone.ResNet50_Weights.DEFAULT is backbone.ResNet50_Weights.IMAGENET1K_V2
    assert backbone.MobileNet_V3_Large_Weights.DEFAULT is backbone.MobileNet_V3_Large_Weights.IMAGENET1K_V2
    assert backbone.VGG16_Weights.DEFAULT is backbone.VGG16_Weights.IMAGENET1K_V1
    assert detection.KeypointRCNN_ResNet50_FPN_Weights.DEFAULT is detection.KeypointRCNN_ResNet50_FPN_Weights.COCO_V1
    for name in detection.__all__:
        enum = getattr(detection, name)
        assert enum.DEFAULT is enum.COCO_V1


def test_coco_categories() -> None:
    assert len(COCO_CATEGORIES) == 91 and COCO_CATEGORIES[0] == "__background__"
    assert [i for i, n in enumerate(COCO_CATEGORIES) if n == "N/A"] == [12, 26, 29, 30, 45, 66, 68, 69, 71, 83]
    assert COCO_CATEGORIES[1] == "person" and COCO_CATEGORIES[90] == "toothbrush"
    assert COCO_CATEGORIES[13] == "stop sign" and COCO_CATEGORIES[67] == "dining table"
    assert len(set(COCO_CATEGORIES) - {"N/A"}) == 81
    assert COCO_PERSON_CATEGORIES == ["no person", "person"]


def test_keypoint_names() -> None:
    assert len(COCO_PERSON_KEYPOINT_NAMES) == 17
    assert COCO_PERSON_KEYPOINT_NAMES[:3] == ["nose", "left_eye", "right_eye"]
    assert COCO_PERSON_KEYPOINT_NAMES[-1] == "right_ankle"


def test_imagenet_categories() -> None:
    assert len(IMAGENET_CATEGORIES) == 1000 and len(set(IMAGENET_CATEGORIES)) == 1000
    assert IMAGENET_CATEGORIES[0] == "tench" and IMAGENET_CATEGORIES[999] == "toilet tissue"
    assert IMAGENET_CATEGORIES[134] == "crane bird" and IMAGENET_CATEGORIES[517] == "crane"
    assert IMAGENET_CATEGORIES[638] == "maillot" and IMAGENET_CATEGORIES[639] == "maillot tank suit"
    digest = hashlib.sha256("\n".join(IMAGENET_CATEGORIES).encode()).hexdigest()
    assert digest == "0b0f9fee7c952f257418d62aa701f023a9da13b443a14f5c4291e5724d92967c"


@pytest.mark.parametrize("enum_name", detection.__all__)
def test_num_params_matches_the_oracle_state_dict(enum_name: str) -> None:
    """Trainable parameters implied by torchvision's state_dict keys: running statistics are buffers,
    and so are the backbone's affine BatchNorm values where the pretrained builder freezes them."""
    builder = BUILDER_OF[enum_name]
    manifest = json.loads(MANIFEST.read_text())[builder]
    count = 0
    for key, shape in manifest.items():
        module, leaf = key.rsplit(".", 1)
        if leaf in ("running_mean", "running_var", "num_batches_tracked"):
            continue
        is_bn = f"{module}.running_mean" in manifest
        if is_bn and builder in FROZEN_BN:
            assert module.startswith("backbone.body."), key  # only the backbone has BatchNorm there
            continue
        count += math.prod(shape)
    assert getattr(detection, enum_name).DEFAULT.meta["num_params"] == count
