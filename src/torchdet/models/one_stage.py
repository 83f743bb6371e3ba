"""The forward pass shared by the one-stage detectors (RetinaNet, FCOS, SSD and SSDlite).

Every one-stage detector runs the same pipeline: check the inputs, resize and normalise,
backbone, head on every feature map, anchors; then, in training, match anchors to ground
truth and take the losses, or, in eval, pick and decode detections and map them back to the
input images' pixels. Only the losses and the detection step differ, so
:class:`OneStageDetector` holds the pipeline and the models override two hooks,
:meth:`~OneStageDetector.head_losses` and :meth:`~OneStageDetector.head_detections`.

Scriptable: TorchScript compiles the inherited ``forward`` against each model's own hooks.
"""
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from torchdet.models.dense_prediction import as_feature_list, model_outputs
from torchdet.models.detection_extras import active_extras, captured_outputs, check_extras, features_at_anchors
from torchdet.models.transform import GeneralizedRCNNTransform
from torchdet.models.validation import require_eval_with_targets, validate_image_list, validate_inputs
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

    :meth:`forward_with_losses` gives the losses and the detections of one eval-mode pass.
    ``detection_extras`` (default ``()``) may name ``"scores_all"`` (``[D, num_classes]``, see
    :meth:`class_probabilities`) and ``"features"`` (``[D, F]``, see :meth:`detection_features`)
    to add to each eval detection (eager only; scripted and exported models ignore it); a model's
    :meth:`head_detections` then keeps each detection's ``anchor_index`` for them.
    """

    __jit_unused_properties__ = ["detection_extras"]

    @property
    def detection_extras(self) -> Tuple[str, ...]:
        """What eval detections carry besides boxes, labels and scores: ``()`` (default) or some of
        ``("scores_all", "features")`` (checked when set). Eager only."""
        return self.__dict__.get("_detection_extras", ())

    @detection_extras.setter
    def detection_extras(self, extras: Tuple[str, ...]) -> None:
        self._detection_extras = check_extras(extras)

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

    @torch.jit.unused
    def class_probabilities(self, head_outputs: Dict[str, Tensor], image: int, anchor_index: Tensor) -> Tensor:
        """``scores_all``: ``[D, num_classes]`` probabilities at ``[D]`` anchors of ``image``, on the scale of
        the detections' scores. Default: the sigmoid of ``cls_logits`` (RetinaNet's multi-label scores)."""
        return torch.sigmoid(head_outputs["cls_logits"][image][anchor_index])

    @torch.jit.unused
    def feature_tower(self) -> Optional[nn.Module]:
        """The module whose output on each level is the per-location feature (``features``): by default
        the classification tower ``head.classification_head.conv``; ``None`` when the head has none."""
        classification_head = getattr(self.head, "classification_head", None)
        return getattr(classification_head, "conv", None)

    @torch.jit.unused
    def detection_features(self, features: List[Tensor], tower_maps: List[Tensor], anchors: Tensor, image: int,
                           anchor_index: Tensor, image_size: Tuple[int, int]) -> Tensor:
        """``features``: ``[D, C]``, the classification tower's output (``tower_maps``, per level
        ``[N, C, H_l, W_l]``) at each detection's own level and cell; ``anchors`` ``[M, 4]`` are the image's."""
        if not tower_maps:
            raise ValueError(f"{type(self).__name__}'s head has no classification tower (head.classification_head."
                             "conv) to take features from; drop 'features' from detection_extras")
        return features_at_anchors(tower_maps, image, anchor_index, anchors.shape[0])

    @torch.jit.unused
    def tracked_anchors(self, anchor_index: Tensor) -> Optional[Tensor]:
        """``anchor_index`` (``[K]``, the candidates') when detection extras are on, else ``None``.

        :meth:`head_detections` hands it to ``select_detections``, eagerly only.
        """
        return anchor_index if active_extras(self.detection_extras) else None

    @torch.jit.unused
    def _run_head(self, features: List[Tensor]) -> Tuple[Dict[str, Tensor], List[Tensor]]:
        """The head's outputs and, when ``features`` are asked for, the tower's output on each level."""
        tower = self.feature_tower() if "features" in active_extras(self.detection_extras) else None
        if tower is None:
            return self.head(features), []
        with captured_outputs(tower) as tower_maps:
            head_outputs = self.head(features)
        return head_outputs, tower_maps

    @torch.jit.unused
    def _add_extras(self, detections: List[Dict[str, Tensor]], head_outputs: Dict[str, Tensor],
                    anchors: List[Tensor], features: List[Tensor], tower_maps: List[Tensor],
                    image_size: Tuple[int, int]) -> None:
        """Replace each detection's ``anchor_index`` by the asked-for extras."""
        extras = active_extras(self.detection_extras)
        for image, detection in enumerate(detections):
            if "anchor_index" not in detection:
                continue
            anchor_index = detection.pop("anchor_index")
            if "scores_all" in extras:
                detection["scores_all"] = self.class_probabilities(head_outputs, image, anchor_index)
            if "features" in extras:
                detection["features"] = self.detection_features(features, tower_maps, anchors[image], image,
                                                                anchor_index, image_size)

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
        tower_maps: List[Tensor] = []
        if torch.jit.is_scripting():
            head_outputs = self.head(features)
        else:
            head_outputs, tower_maps = self._run_head(features)
        anchors = self.anchor_generator(batch, features)
        losses: Dict[str, Tensor] = {}
        detections: List[Dict[str, Tensor]] = []
        if self.training:
            assert targets is not None
            losses = self.head_losses(targets, head_outputs, anchors, features)
        else:
            detections = self.head_detections(head_outputs, anchors, features, batch.image_sizes)
            if not torch.jit.is_scripting():
                padded_size = (batch.tensors.shape[-2], batch.tensors.shape[-1])
                self._add_extras(detections, head_outputs, anchors, features, tower_maps, padded_size)
            detections = self.transform.postprocess(detections, batch.image_sizes, original_image_sizes)
        if torch.jit.is_scripting():
            return losses, detections
        else:
            return model_outputs(self.training, losses, detections)

    @torch.jit.unused
    def forward_with_losses(self, images: Union[Tensor, List[Tensor]], targets: List[Dict[str, Tensor]]
                            ) -> Tuple[Dict[str, Tensor], List[Dict[str, Tensor]]]:
        """The training losses and the detections of one eval-mode pass (the model must be in eval mode).

        The detections are exactly ``model(images)``'s; the losses are :meth:`head_losses` on the same
        head outputs. One-stage losses sample nothing at random (every anchor is matched; SSD's hard
        negatives are chosen by loss), so they differ from a training step's on the same batch only
        in that normalisation layers use (and keep) their running statistics and the images are
        resized as in eval. Gradients flow when enabled.

        Returns:
            ``(losses, detections)``: the loss dict of a training step, and one dict per image as
            ``forward`` returns in eval.
        """
        require_eval_with_targets(self.training, targets)
        image_list = validate_inputs(images, targets, training=True)
        original_image_sizes = [(img.shape[-2], img.shape[-1]) for img in image_list]
        batch, resized_targets = self.transform(image_list, targets)
        assert resized_targets is not None
        features = as_feature_list(self.backbone(batch.tensors))
        head_outputs, tower_maps = self._run_head(features)
        anchors = self.anchor_generator(batch, features)
        losses = self.head_losses(resized_targets, head_outputs, anchors, features)
        detections = self.head_detections(head_outputs, anchors, features, batch.image_sizes)
        padded_size = (batch.tensors.shape[-2], batch.tensors.shape[-1])
        self._add_extras(detections, head_outputs, anchors, features, tower_maps, padded_size)
        detections = self.transform.postprocess(detections, batch.image_sizes, original_image_sizes)
        return losses, detections
