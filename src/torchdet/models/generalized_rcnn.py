"""GeneralizedRCNN: the two-stage detector pipeline, wired from four parts."""
from __future__ import annotations

import warnings
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from torchdet.models.validation import validate_image_list, validate_inputs


class GeneralizedRCNN(nn.Module):
    """transform -> backbone -> RPN -> RoI heads -> postprocess.

    Args:
        backbone: images ``[B, 3, H, W]`` -> a feature map or an ordered dict of them.
        rpn: features -> proposals (and the RPN losses in training).
        roi_heads: features and proposals -> detections (and the second-stage losses).
        transform: normalises, resizes and batches the images, and maps detections back.

    ``forward(images, targets=None)`` returns the losses in training and the detections in eval:
    one dict per image with ``boxes`` ``[D, 4]`` (xyxy, original pixels), ``labels`` ``[D]`` int64,
    ``scores`` ``[D]`` (and ``masks`` / ``keypoints`` when the heads have those branches).
    Scripted with ``torch.jit.script``, it returns both, as the tuple ``(losses, detections)``
    (TorchScript needs one return type), as torchvision's models do.
    """

    def __init__(self, backbone: nn.Module, rpn: nn.Module, roi_heads: nn.Module, transform: nn.Module) -> None:
        super().__init__()
        self.transform = transform
        self.backbone = backbone
        self.rpn = rpn
        self.roi_heads = roi_heads
        self._has_warned = False  # the scripted model warns once about its tuple return

    @torch.jit.unused
    def _validate(self, images: Union[Tensor, List[Tensor]], targets: Optional[List[Dict[str, Tensor]]]
                  ) -> List[Tensor]:
        """Eager boundary checks (named errors); returns the images as a list."""
        has_mask = getattr(self.roi_heads, "has_mask", None)
        has_keypoint = getattr(self.roi_heads, "has_keypoint", None)
        return validate_inputs(images, targets, training=self.training,
                               require_masks=bool(has_mask()) if callable(has_mask) else False,
                               require_keypoints=bool(has_keypoint()) if callable(has_keypoint) else False)

    @torch.jit.unused
    def eager_outputs(self, losses: Dict[str, Tensor], detections: List[Dict[str, Tensor]]
                      ) -> Union[Dict[str, Tensor], List[Dict[str, Tensor]]]:
        """The eager contract: the losses in training, the detections in eval."""
        if self.training:
            return losses
        return detections

    def forward(self, images: List[Tensor], targets: Optional[List[Dict[str, Tensor]]] = None
                ) -> Tuple[Dict[str, Tensor], List[Dict[str, Tensor]]]:
        """Losses (training) or per-image detections (eval) for ``[3, H, W]`` images or a ``[B, 3, H, W]`` batch.

        The annotation is the scripted signature; eagerly the losses or the detections come alone.
        """
        if torch.jit.is_scripting():
            image_list = validate_image_list(images, targets, self.training)
        else:
            image_list = self._validate(images, targets)
        # Each image's (height, width); while tracing these stay traced sizes, so that boxes and
        # masks are mapped back to the input's size at run time, not the size seen by the trace.
        original_image_sizes: List[Tuple[int, int]] = []
        for img in image_list:
            size = img.shape[-2:]
            original_image_sizes.append((size[0], size[1]))

        batch, targets = self.transform(image_list, targets)
        features = self.backbone(batch.tensors)
        if isinstance(features, Tensor):
            features = OrderedDict([("0", features)])
        proposals, proposal_losses = self.rpn(batch, features, targets)
        detections, detector_losses = self.roi_heads(features, proposals, batch.image_sizes, targets)
        detections = self.transform.postprocess(detections, batch.image_sizes, original_image_sizes)

        losses: Dict[str, Tensor] = {}
        losses.update(detector_losses)
        losses.update(proposal_losses)
        if torch.jit.is_scripting():
            if not self._has_warned:
                warnings.warn("RCNN always returns a (Losses, Detections) tuple in scripting")
                self._has_warned = True
            return losses, detections
        return self.eager_outputs(losses, detections)
