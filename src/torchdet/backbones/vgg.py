"""VGG (Simonyan & Zisserman, 2015), the backbone of SSD300.

Module names and state_dict keys follow torchvision's ``torchvision.models.vgg``: ``features.i``
(convs of config "D" at indices 0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28; max-pools at
4, 9, 16, 23, 30), ``avgpool`` and ``classifier.0`` / ``.3`` / ``.6``.
"""
from __future__ import annotations

from typing import Any, Dict, List, Union

import torch
from torch import Tensor, nn

from torchdet.backbones._weights_pending import require_no_weights
from torchdet.weights.backbone import VGG16_Weights
from torchdet.weights.builder_support import load_weights, resolve_backbone_weights
from torchdet.weights.registry import register_model

__all__ = ["VGG", "make_layers", "vgg16", "vgg16_bn"]

# Conv widths, "M" for a 2x2 max-pool.
_CFGS: Dict[str, List[Union[int, str]]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def make_layers(cfg: List[Union[int, str]], batch_norm: bool = False) -> nn.Sequential:
    """3x3 convs (padding 1) each followed by [BatchNorm2d,] ReLU, and 2x2 max-pools at "M"."""
    layers: List[nn.Module] = []
    in_channels = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        out_channels = int(v)
        layers.append(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU(inplace=True))
        in_channels = out_channels
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """``features`` (stride 32, 512 channels), ``avgpool`` to 7x7, ``classifier`` (3 Linear layers).

    Input ``[N, 3, H, W]``; output ``[N, num_classes]``.
    """

    def __init__(self, features: nn.Module, num_classes: int = 1000, init_weights: bool = True,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        if init_weights:
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.constant_(m.bias, 0)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.constant_(m.weight, 1)
                    nn.init.constant_(m.bias, 0)
                elif isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, 0, 0.01)
                    nn.init.constant_(m.bias, 0)

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


@register_model(task="classification", pretrained=VGG16_Weights.IMAGENET1K_V1)
def vgg16(*, weights: Any = None, progress: bool = True, **kwargs: Any) -> VGG:
    """VGG-16 (config "D", no batch norm). kwargs go to VGG (num_classes, init_weights, dropout).

    ``weights``: a ``VGG16_Weights`` member, its name, a checkpoint path, or None (random init).
    ``IMAGENET1K_FEATURES`` (SSD's backbone) holds valid values in ``features`` only.
    """
    weights = resolve_backbone_weights(weights, VGG16_Weights, kwargs)
    if weights is not None:
        kwargs["init_weights"] = False  # the checkpoint overwrites every value
    model = VGG(make_layers(_CFGS["D"], batch_norm=False), **kwargs)
    return model if weights is None else load_weights(model, weights, progress=progress)


def vgg16_bn(*, weights: Any = None, progress: bool = True, **kwargs: Any) -> VGG:
    """VGG-16 with batch norm after every conv. kwargs go to VGG."""
    require_no_weights("vgg16_bn", weights)
    return VGG(make_layers(_CFGS["D"], batch_norm=True), **kwargs)
