"""ImageNet weights of the classification backbones the detectors start from (torchvision 0.28's).

``num_params`` counts the full classifier (with its ``fc`` / ``classifier`` head), as published.
``VGG16_Weights.IMAGENET1K_FEATURES`` (the SSD paper's VGG, ported from amdegroot/ssd.pytorch)
has valid values in ``features`` only, hence no categories and NaN accuracies.
"""
from functools import partial
from typing import Any, Dict, Tuple

from torchdet.weights._api import Weights, WeightsEnum
from torchdet.weights.meta import IMAGENET_CATEGORIES
from torchdet.weights.presets import ImageClassification

__all__ = ["ResNet50_Weights", "MobileNet_V3_Large_Weights", "VGG16_Weights"]

_BASE_URL = "https://download.pytorch.org/models/"
_RECIPES = "https://github.com/pytorch/vision/tree/main/references/classification"
_NEW_RECIPE_BLOG = "https://pytorch.org/blog/how-to-train-state-of-the-art-models-using-torchvision-latest-primitives/"


def _imagenet(
    file_name: str,
    *,
    num_params: int,
    acc: Tuple[float, float],
    ops: float,
    file_size: float,
    common: Dict[str, Any],
    resize_size: int = 256,
    **meta: Any,
) -> Weights:
    """An ImageNet classifier's ``Weights``: ``acc`` is (top-1, top-5) on ImageNet-1K val."""
    transforms = (partial(ImageClassification, crop_size=224) if resize_size == 256
                  else partial(ImageClassification, crop_size=224, resize_size=resize_size))
    return Weights(
        url=_BASE_URL + file_name,
        transforms=meta.pop("transforms", transforms),
        meta={
            **common,
            "num_params": num_params,
            **meta,
            "_metrics": {"ImageNet-1K": {"acc@1": acc[0], "acc@5": acc[1]}},
            "_ops": ops,
            "_file_size": file_size,
        },
    )


_COMMON = {"min_size": (1, 1), "categories": IMAGENET_CATEGORIES}
_VGG_COMMON = {
    "min_size": (32, 32),
    "categories": IMAGENET_CATEGORIES,
    "recipe": _RECIPES + "#alexnet-and-vgg",
    "_docs": "These weights were trained from scratch by using a simplified training recipe.",
}


class ResNet50_Weights(WeightsEnum):
    IMAGENET1K_V1 = _imagenet(
        "resnet50-0676ba61.pth", num_params=25557032, acc=(76.130, 92.862), ops=4.089, file_size=97.781,
        common=_COMMON, recipe=_RECIPES + "#resnet",
        _docs="These weights reproduce closely the results of the paper using a simple training recipe.")
    IMAGENET1K_V2 = _imagenet(
        "resnet50-11ad3fa6.pth", num_params=25557032, acc=(80.858, 95.434), ops=4.089, file_size=97.79,
        common=_COMMON, resize_size=232, recipe="https://github.com/pytorch/vision/issues/3995#issuecomment-1013906621",
        _docs="\n                These weights improve upon the results of the original paper by using TorchVision's "
              f"`new training recipe\n                <{_NEW_RECIPE_BLOG}>`_.\n            ")
    DEFAULT = IMAGENET1K_V2


class MobileNet_V3_Large_Weights(WeightsEnum):
    IMAGENET1K_V1 = _imagenet(
        "mobilenet_v3_large-8738ca79.pth", num_params=5483032, acc=(74.042, 91.340), ops=0.217,
        file_size=21.114, common=_COMMON, recipe=_RECIPES + "#mobilenetv3-large--small",
        _docs="These weights were trained from scratch by using a simple training recipe.")
    IMAGENET1K_V2 = _imagenet(
        "mobilenet_v3_large-5c1a4163.pth", num_params=5483032, acc=(75.274, 92.566), ops=0.217,
        file_size=21.107, common=_COMMON, resize_size=232,
        recipe="https://github.com/pytorch/vision/issues/3995#new-recipe-with-reg-tuning",
        _docs="\n                These weights improve marginally upon the results of the original paper by using a "
              "modified version of\n                TorchVision's `new training recipe\n                "
              f"<{_NEW_RECIPE_BLOG}>`_.\n            ")
    DEFAULT = IMAGENET1K_V2


class VGG16_Weights(WeightsEnum):
    IMAGENET1K_V1 = _imagenet(
        "vgg16-397923af.pth", num_params=138357544, acc=(71.592, 90.382), ops=15.47, file_size=527.796,
        common=_VGG_COMMON)
    IMAGENET1K_FEATURES = _imagenet(
        "vgg16_features-amdegroot-88682ab5.pth", num_params=138357544, acc=(float("nan"), float("nan")),
        ops=15.47, file_size=527.802, common=_VGG_COMMON,
        transforms=partial(ImageClassification, crop_size=224, mean=(0.48235, 0.45882, 0.40784),
                           std=(1.0 / 255.0, 1.0 / 255.0, 1.0 / 255.0)),
        categories=None, recipe="https://github.com/amdegroot/ssd.pytorch#training-ssd",
        _docs="\n                These weights can't be used for classification because they are missing values in "
              "the `classifier`\n                module. Only the `features` module has valid values and can be "
              "used for feature extraction. The weights\n                were trained using the original input "
              "standardization method as described in the paper.\n            ")
    DEFAULT = IMAGENET1K_V1
