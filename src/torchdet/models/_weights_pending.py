"""For detection builders without published weights (``torchdet.models.tiny``): accept ``weights`` and
``weights_backbone`` as torchvision's builders do, and refuse any value. The zoo's builders load theirs
through ``torchdet.weights``."""
from typing import Any


def require_no_weights(builder: str, weights: Any, weights_backbone: Any) -> None:
    """Raise a clear error for pretrained weights of a builder that has none."""
    if weights is not None or weights_backbone is not None:
        raise NotImplementedError(
            f"{builder}: pretrained weights are not available in this version of torchdet yet; "
            f"got weights={weights!r}, weights_backbone={weights_backbone!r}. "
            "Pass weights=None, weights_backbone=None to build a randomly initialised model."
        )
