"""The forward pass shared by the one-stage detectors (RetinaNet, FCOS, SSD and SSDlite).

Every one-stage detector runs the same pipeline: check the inputs, resize and normalise,
backbone, head on every feature map, anchors; then, in training, match anchors to ground
truth and take the losses, or, in eval, pick and decode detections and map them back to the
input images' pixels. Only the losses and the detection step differ, so
:class:`OneStageDetector` holds the pipeline and the models override two hooks,
:meth:`~OneStageDetector.head_losses` and :meth:`~OneStageDetector.head_detections`.

Scriptable: TorchScript compiles the inherited ``forward`` against each model's own hooks.
"""
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from torchdet.models.dense_prediction import as_feature_list, model_outputs
from torchdet.models.transform import GeneralizedRCNNTransform
from torchdet.models.validation import validate_image_list, validate_inputs
from torchdet.ops.boxes import box_iou
from torchdet.weights.presets import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["OneStageDetector", "unmatched", "require_out_channels", "detection_transform"]

def unmatched(anchors: Tensor) -> Tensor:
    """``[M]`` matched index -1 (background) for every one of ``[M, 4]`` anchors: an image with no boxes."""
    return torch.full((anchors.size(0),), -1, dtype=torch.int64, device=anchors.device)


def require_out_channels(backbone: nn.Module) -> None:
    """A head built for ``backbone`` needs its ``out_channels``; fail at construction when it is missing."""
    if not hasattr(backbone, "out_channels"):
        raise ValueError(
            "backbone should contain an attribute out_channels specifying the number of output channels "
            "(assumed to be the same for all the levels); set backbone.out_channels = <channels>."
        )


def detection_transform(min_size: int, max_size: int, image_mean: Optional[List[float]],
                        image_std: Optional[List[float]], **kwargs: Any) -> GeneralizedRCNNTransform:
    """The resize-and-normalise transform, with ImageNet's mean and std where none is given."""
    # Copies: the transform keeps the lists, and a model's must not be another's.
    return GeneralizedRCNNTransform(min_size, max_size, list(IMAGENET_MEAN) if image_mean is None else image_mean,
                                    list(IMAGENET_STD) if image_std is None else image_std, **kwargs)


class OneStageDetector(nn.Module):
    """Base of the one-stage detectors: inputs -> transform -> backbone -> head -> anchors -> losses or detections.

    A subclass sets ``transform`` (a :class:`GeneralizedRCNNTransform`), ``backbone`` (returns a
    feature map or an ordered dict of them), ``head`` (``List[Tensor]`` features ->
    ``Dict[str, Tensor]`` outputs, ``[N, M, *]`` each) and ``anchor_generator`` (``[M, 4]``
    anchors per image), and overrides :meth:`head_losses` and :meth:`head_detections`.
    """

    def head_losses(self, targets: List[Dict[str, Tensor]], head_outputs: Dict[str, Tensor],
                    anchors: List[Tensor], features: List[Tensor]) -> Dict[str, Tensor]:
        """Training losses of the head's ``[N, M, *]`` outputs against the (resized) targets.

        ``anchors`` holds one ``[M, 4]`` tensor per image; ``features`` the ``[N, C, H_l, W_l]`` maps.
        """
        raise NotImplementedError(f"{type(self).__name__} must override head_losses")

    def head_detections(self, head_outputs: Dict[str, Tensor], anchors: List[Tensor], features: List[Tensor],
                        image_sizes: List[Tuple[int, int]]) -> List[Dict[str, Tensor]]:
        """Per image ``{"boxes" [K, 4], "scores" [K], "labels" [K]}`` in the resized image's pixels.

        ``image_sizes`` are the images' ``(H, W)`` after resizing (the boxes are clipped to them).
        """
        raise NotImplementedError(f"{type(self).__name__} must override head_detections")

    def match_by_iou(self, targets: List[Dict[str, Tensor]], anchors: List[Tensor]) -> List[Tensor]:
        """Per image, the ``[M]`` ground-truth index ``self.proposal_matcher`` gives each anchor by IoU.

        Negative values are the matcher's background / ignored codes; an image without boxes is all -1.
        """
        matched_idxs: List[Tensor] = []
        for anchors_i, target in zip(anchors, targets):
            if target["boxes"].numel() == 0:
                matched_idxs.append(unmatched(anchors_i))
            else:
                matched_idxs.append(self.proposal_matcher(box_iou(target["boxes"], anchors_i)))
        return matched_idxs

    def forward(self, images: List[Tensor], targets: Optional[List[Dict[str, Tensor]]] = None
                ) -> Tuple[Dict[str, Tensor], List[Dict[str, Tensor]]]:
        """Training: the model's losses. Eval: per image ``{"boxes" [K, 4] xyxy, "scores" [K],
        "labels" [K] int64}`` in the input image's pixels.

        ``images`` is a list of ``[3, H, W]`` float tensors in 0..1 (eager mode also takes one
        ``[B, 3, H, W]`` tensor). Scripted, the model returns ``(losses, detections)``.
        """
        if torch.jit.is_scripting():
            image_list = validate_image_list(images, targets, self.training)
        else:
            image_list = validate_inputs(images, targets, training=self.training)
        # Sizes as the shapes give them: ints, or traced values while tracing (kept dynamic).
        original_image_sizes = [(img.shape[-2], img.shape[-1]) for img in image_list]
        batch, targets = self.transform(image_list, targets)
        features = as_feature_list(self.backbone(batch.tensors))
        head_outputs = self.head(features)
        anchors = self.anchor_generator(batch, features)
        losses: Dict[str, Tensor] = {}
        detections: List[Dict[str, Tensor]] = []
        if self.training:
            assert targets is not None
            losses = self.head_losses(targets, head_outputs, anchors, features)
        else:
            detections = self.head_detections(head_outputs, anchors, features, batch.image_sizes)
            detections = self.transform.postprocess(detections, batch.image_sizes, original_image_sizes)
        if torch.jit.is_scripting():
            return losses, detections
        else:
            return model_outputs(self.training, losses, detections)
