"""Exception types that carry torchdet's messages and satisfy torchvision's callers too.

torchvision signals bad input with ``assert`` in the models, anchors and ``roi_align``
(``AssertionError``) and with ``TORCH_CHECK`` in its compiled ops (``RuntimeError``); torchdet
raises ``ValueError`` with a message that names the value and the fix. Each class below is both,
so ``except ValueError`` (torchdet's documented contract) and ``except AssertionError`` /
``except RuntimeError`` (code written for torchvision) catch the same error.
"""
from __future__ import annotations

__all__ = ["InvalidInputError", "InvalidInputTypeError", "MissingInputKeyError", "InvalidOpInputError"]


class InvalidInputError(ValueError, AssertionError):
    """Bad input where torchvision asserts: images, targets, anchors, RoI boxes."""


class InvalidInputTypeError(InvalidInputError, TypeError):
    """A wrong type or dtype (images, target boxes/labels/keypoints), where torchvision raises ``TypeError``."""


class MissingInputKeyError(InvalidInputError, KeyError):
    """A target dict lacks a key the model needs, where torchvision's lookup raises ``KeyError``."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""  # KeyError would print the message's repr


class InvalidOpInputError(ValueError, RuntimeError):
    """Bad input to an op where torchvision's compiled kernel raises ``RuntimeError`` (``nms``)."""
