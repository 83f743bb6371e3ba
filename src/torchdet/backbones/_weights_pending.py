"""Backbone constructors without published weights accept ``weights`` as torchvision's do, and refuse any value.

Only the detectors' backbones (``resnet50``, ``mobilenet_v3_large``, ``vgg16``) load checkpoints, through
``torchdet.weights``; the other constructors (``resnet18``, ``mobilenet_v2``, ``vgg16_bn`` ...) call this.
"""
from typing import Any


def require_no_weights(builder: str, weights: Any) -> None:
    """Raise a clear error for pretrained weights of a backbone that torchdet has none for."""
    if weights is not None:
        raise NotImplementedError(
            f"{builder}: pretrained weights are not available in this version of torchdet; got weights={weights!r}. "
            "Only resnet50, mobilenet_v3_large and vgg16 (the detectors' backbones) have them. "
            "Pass weights=None to build a randomly initialised backbone."
        )
