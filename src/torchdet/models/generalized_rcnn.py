"""GeneralizedRCNN: the two-stage detector pipeline, wired from four parts."""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple, Union

from torch import Tensor, nn

from torchdet.models.validation import validate_inputs


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
    """

    def __init__(self, backbone: nn.Module, rpn: nn.Module, roi_heads: nn.Module, transform: nn.Module) -> None:
        super().__init__()
        self.transform = transform
        self.backbone = backbone
        self.rpn = rpn
        self.roi_heads = roi_heads

    def _required_target_keys(self) -> Tuple[bool, bool]:
        has_mask = getattr(self.roi_heads, "has_mask", None)
        has_keypoint = getattr(self.roi_heads, "has_keypoint", None)
        return (bool(has_mask()) if callable(has_mask) else False,
                bool(has_keypoint()) if callable(has_keypoint) else False)

    def forward(self, images: Union[Tensor, Sequence[Tensor]], targets: Optional[List[Dict[str, Tensor]]] = None
                ) -> Union[Dict[str, Tensor], List[Dict[str, Tensor]]]:
        """Losses (training) or per-image detections (eval) for ``[3, H, W]`` images or a ``[B, 3, H, W]`` batch."""
        require_masks, require_keypoints = self._required_target_keys()
        image_list = validate_inputs(images, targets, training=self.training,
                                     require_masks=require_masks, require_keypoints=require_keypoints)
        original_image_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in image_list]

        batch, targets = self.transform(image_list, targets)
        features = self.backbone(batch.tensors)
        if isinstance(features, Tensor):
            features = OrderedDict([("0", features)])
        proposals, proposal_losses = self.rpn(batch, features, targets)
        detections, detector_losses = self.roi_heads(features, proposals, batch.image_sizes, targets)
        detections = self.transform.postprocess(detections, batch.image_sizes, original_image_sizes)

        if self.training:
            return {**detector_losses, **proposal_losses}
        return detections
