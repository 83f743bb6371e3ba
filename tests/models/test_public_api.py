"""``torchdet.models``: the zoo, its weights enums and the registry in one namespace, as torchvision's."""
import subprocess
import sys

import pytest

import torchdet.models as models
from torchdet.weights import backbone, detection, registry


def test_all_lists_exactly_the_public_names():
    assert len(models.__all__) == len(set(models.__all__))
    assert [n for n in models.__all__ if not hasattr(models, n)] == []
    public = {n for n, v in vars(models).items() if not n.startswith("_") and not isinstance(v, type(sys))}
    assert public == set(models.__all__)


def test_weights_enums_and_registry_are_reexported():
    for name in detection.__all__ + backbone.__all__:
        assert getattr(models, name) is getattr(detection if name in detection.__all__ else backbone, name)
    assert len(detection.__all__) == 12 and len(backbone.__all__) == 3
    assert models.list_models(models) == registry.list_models(module="torchdet.models")
    assert len(models.list_models(models)) == 12
    assert models.get_model_builder("fasterrcnn_resnet50_fpn") is models.fasterrcnn_resnet50_fpn
    assert models.get_model_weights(models.ssd300_vgg16) is models.SSD300_VGG16_Weights
    assert models.get_weight("FCOS_ResNet50_FPN_Weights.COCO_V1") is models.FCOS_ResNet50_FPN_Weights.COCO_V1


@pytest.mark.parametrize("first", ["torchdet.weights.registry", "torchdet.backbones.resnet"])
def test_imports_in_any_order_without_cycles(first):
    """A fresh interpreter: the weights package first, or a backbone first, then the zoo."""
    code = (f"import {first}; from torchdet.weights.registry import get_model_builder; "
            "import torchdet.models as m; assert get_model_builder('maskrcnn_resnet50_fpn') is m.maskrcnn_resnet50_fpn")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
