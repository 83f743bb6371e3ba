"""The COCO weights of the twelve detection builders, with torchvision 0.28's names, files and metadata.

Metrics are COCO val2017 mAP (box, mask, keypoint); ``_ops`` is GFLOPS and ``_file_size`` MB, as
torchvision publishes them. ``num_params`` counts ``model.parameters()`` of the model built with
these weights (FrozenBatchNorm2d buffers are not parameters).
"""
from typing import Any, Dict

from torchdet.weights._api import Weights, WeightsEnum
from torchdet.weights.meta import COCO_CATEGORIES, COCO_PERSON_CATEGORIES, COCO_PERSON_KEYPOINT_NAMES
from torchdet.weights.presets import ObjectDetection

__all__ = [
    "FasterRCNN_ResNet50_FPN_Weights",
    "FasterRCNN_ResNet50_FPN_V2_Weights",
    "FasterRCNN_MobileNet_V3_Large_FPN_Weights",
    "FasterRCNN_MobileNet_V3_Large_320_FPN_Weights",
    "MaskRCNN_ResNet50_FPN_Weights",
    "MaskRCNN_ResNet50_FPN_V2_Weights",
    "KeypointRCNN_ResNet50_FPN_Weights",
    "RetinaNet_ResNet50_FPN_Weights",
    "RetinaNet_ResNet50_FPN_V2_Weights",
    "FCOS_ResNet50_FPN_Weights",
    "SSD300_VGG16_Weights",
    "SSDLite320_MobileNet_V3_Large_Weights",
]

_BASE_URL = "https://download.pytorch.org/models/"
_RECIPES = "https://github.com/pytorch/vision/tree/main/references/detection"
_PAPER_DOCS = "These weights were produced by following a similar training recipe as on the paper."
_ENHANCED_DOCS = "These weights were produced using an enhanced training recipe to boost the model accuracy."


def _coco(
    file_name: str,
    *,
    num_params: int,
    recipe: str,
    metrics: Dict[str, float],
    ops: float,
    file_size: float,
    docs: str = _PAPER_DOCS,
    person_keypoints: bool = False,
) -> Weights:
    """A COCO-trained detector's ``Weights`` (categories, min_size and transform shared by all)."""
    meta: Dict[str, Any] = {"categories": COCO_CATEGORIES, "min_size": (1, 1)}
    if person_keypoints:
        meta = {"categories": COCO_PERSON_CATEGORIES, "keypoint_names": COCO_PERSON_KEYPOINT_NAMES,
                "min_size": (1, 1)}
    meta.update({
        "num_params": num_params,
        "recipe": recipe,
        "_metrics": {"COCO-val2017": dict(metrics)},
        "_ops": ops,
        "_file_size": file_size,
        "_docs": docs,
    })
    return Weights(url=_BASE_URL + file_name, transforms=ObjectDetection, meta=meta)


class FasterRCNN_ResNet50_FPN_Weights(WeightsEnum):
    COCO_V1 = _coco("fasterrcnn_resnet50_fpn_coco-258fb6c6.pth", num_params=41755286,
                    recipe=_RECIPES + "#faster-r-cnn-resnet-50-fpn", metrics={"box_map": 37.0},
                    ops=134.38, file_size=159.743)
    DEFAULT = COCO_V1


class FasterRCNN_ResNet50_FPN_V2_Weights(WeightsEnum):
    COCO_V1 = _coco("fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth", num_params=43712278,
                    recipe="https://github.com/pytorch/vision/pull/5763", metrics={"box_map": 46.7},
                    ops=280.371, file_size=167.104, docs=_ENHANCED_DOCS)
    DEFAULT = COCO_V1


class FasterRCNN_MobileNet_V3_Large_FPN_Weights(WeightsEnum):
    COCO_V1 = _coco("fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth", num_params=19386354,
                    recipe=_RECIPES + "#faster-r-cnn-mobilenetv3-large-fpn", metrics={"box_map": 32.8},
                    ops=4.494, file_size=74.239)
    DEFAULT = COCO_V1


class FasterRCNN_MobileNet_V3_Large_320_FPN_Weights(WeightsEnum):
    COCO_V1 = _coco("fasterrcnn_mobilenet_v3_large_320_fpn-907ea3f9.pth", num_params=19386354,
                    recipe=_RECIPES + "#faster-r-cnn-mobilenetv3-large-320-fpn", metrics={"box_map": 22.8},
                    ops=0.719, file_size=74.239)
    DEFAULT = COCO_V1


class MaskRCNN_ResNet50_FPN_Weights(WeightsEnum):
    COCO_V1 = _coco("maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth", num_params=44401393,
                    recipe=_RECIPES + "#mask-r-cnn", metrics={"box_map": 37.9, "mask_map": 34.6},
                    ops=134.38, file_size=169.84)
    DEFAULT = COCO_V1


class MaskRCNN_ResNet50_FPN_V2_Weights(WeightsEnum):
    COCO_V1 = _coco("maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth", num_params=46359409,
                    recipe="https://github.com/pytorch/vision/pull/5773",
                    metrics={"box_map": 47.4, "mask_map": 41.8}, ops=333.577, file_size=177.219,
                    docs=_ENHANCED_DOCS)
    DEFAULT = COCO_V1


class KeypointRCNN_ResNet50_FPN_Weights(WeightsEnum):
    COCO_LEGACY = _coco("keypointrcnn_resnet50_fpn_coco-9f466800.pth", num_params=59137258,
                        recipe="https://github.com/pytorch/vision/issues/1606",
                        metrics={"box_map": 50.6, "kp_map": 61.1}, ops=133.924, file_size=226.054,
                        docs="\n                These weights were produced by following a similar training "
                             "recipe as on the paper but use a checkpoint\n                from an early epoch."
                             "\n            ",
                        person_keypoints=True)
    COCO_V1 = _coco("keypointrcnn_resnet50_fpn_coco-fc266e95.pth", num_params=59137258,
                    recipe=_RECIPES + "#keypoint-r-cnn", metrics={"box_map": 54.6, "kp_map": 65.0},
                    ops=137.42, file_size=226.054, person_keypoints=True)
    DEFAULT = COCO_V1


class RetinaNet_ResNet50_FPN_Weights(WeightsEnum):
    COCO_V1 = _coco("retinanet_resnet50_fpn_coco-eeacb38b.pth", num_params=34014999,
                    recipe=_RECIPES + "#retinanet", metrics={"box_map": 36.4}, ops=151.54, file_size=130.267)
    DEFAULT = COCO_V1


class RetinaNet_ResNet50_FPN_V2_Weights(WeightsEnum):
    COCO_V1 = _coco("retinanet_resnet50_fpn_v2_coco-5905b1c5.pth", num_params=38198935,
                    recipe="https://github.com/pytorch/vision/pull/5756", metrics={"box_map": 41.5},
                    ops=152.238, file_size=146.037, docs=_ENHANCED_DOCS)
    DEFAULT = COCO_V1


class FCOS_ResNet50_FPN_Weights(WeightsEnum):
    COCO_V1 = _coco("fcos_resnet50_fpn_coco-99b0c9b7.pth", num_params=32269600,
                    recipe=_RECIPES + "#fcos-resnet-50-fpn", metrics={"box_map": 39.2}, ops=128.207,
                    file_size=123.608)
    DEFAULT = COCO_V1


class SSD300_VGG16_Weights(WeightsEnum):
    COCO_V1 = _coco("ssd300_vgg16_coco-b556d3b4.pth", num_params=35641826,
                    recipe=_RECIPES + "#ssd300-vgg16", metrics={"box_map": 25.1}, ops=34.858,
                    file_size=135.988)
    DEFAULT = COCO_V1


class SSDLite320_MobileNet_V3_Large_Weights(WeightsEnum):
    COCO_V1 = _coco("ssdlite320_mobilenet_v3_large_coco-a79551df.pth", num_params=3440060,
                    recipe=_RECIPES + "#ssdlite320-mobilenetv3-large", metrics={"box_map": 21.3}, ops=0.583,
                    file_size=13.418)
    DEFAULT = COCO_V1
