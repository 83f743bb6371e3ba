"""Exception types that carry torchdet's messages and satisfy torchvision's callers too.

torchvision signals bad input with ``assert`` in the models, anchors and ``roi_align``
(``AssertionError``) and with ``TORCH_CHECK`` in its compiled ops (``RuntimeError``); torchdet
raises ``ValueError`` with a message that names the value and the fix. Each class below is both,
so ``except ValueError`` (torchdet's documented contract) and ``except AssertionError`` /
``except RuntimeError`` (code written for torchvision) catch the same error.
"""
from __future__ import annotations

__all__ = ["InvalidInputError", "InvalidOpInputError"]


class InvalidInputError(ValueError, AssertionError):
    """Bad input where torchvision asserts: images, targets, anchors, RoI boxes."""


class InvalidOpInputError(ValueError, RuntimeError):
    """Bad input to an op where torchvision's compiled kernel raises ``RuntimeError`` (``nms``)."""
