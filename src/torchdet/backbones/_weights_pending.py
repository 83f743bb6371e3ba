"""Backbone constructors accept `weights` as torchvision's do; loading them arrives with torchdet.weights."""
from typing import Any


def require_no_weights(builder: str, weights: Any) -> None:
    """Raise a clear error for pretrained backbone weights until the weights enums are wired in."""
    if weights is not None:
        raise NotImplementedError(
            f"{builder}: pretrained weights are not available in this version of torchdet yet; "
            f"got weights={weights!r}. Pass weights=None to build a randomly initialised backbone."
        )
