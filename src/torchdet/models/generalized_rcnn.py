"""GeneralizedRCNN: the two-stage detector pipeline, wired from four parts."""
from __future__ import annotations

import warnings
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from torchdet.models.detection_extras import check_extras
from torchdet.models.validation import require_eval_with_targets, validate_image_list, validate_inputs

# The seed of the fixed generator that samples anchors and proposals for losses computed in eval.
EVAL_LOSS_SEED = 0


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

    :meth:`forward_with_losses` gives the losses and the detections from one eval-mode pass;
    ``detection_extras`` adds every class's probabilities and the RoI's feature to each detection.
    """

    __jit_unused_properties__ = ["detection_extras"]

    def __init__(self, backbone: nn.Module, rpn: nn.Module, roi_heads: nn.Module, transform: nn.Module) -> None:
        super().__init__()
        self.transform = transform
        self.backbone = backbone
        self.rpn = rpn
        self.roi_heads = roi_heads
        self._has_warned = False  # the scripted model warns once about its tuple return

    @property
    def detection_extras(self) -> Tuple[str, ...]:
        """What eval detections carry besides boxes, labels and scores: ``()`` (default) or some of
        ``("scores_all", "features")``: ``scores_all`` ``[D, num_classes]`` is the softmax row of the
        detection's RoI (``scores[i] == scores_all[i, labels[i]]``); ``features`` ``[D, R]`` the box
        head's representation of that RoI (``R`` = its output size, 1024 for the zoo's models).
        Stored on ``roi_heads``; eager only (scripted and exported models ignore it)."""
        return self.roi_heads.detection_extras

    @detection_extras.setter
    def detection_extras(self, extras: Tuple[str, ...]) -> None:
        self.roi_heads.detection_extras = check_extras(extras)

    @torch.jit.unused
    def _validate(self, images: Union[Tensor, List[Tensor]], targets: Optional[List[Dict[str, Tensor]]],
                  training: bool) -> List[Tensor]:
        """Eager boundary checks (named errors; targets required when ``training``); returns the images as a list."""
        has_mask = getattr(self.roi_heads, "has_mask", None)
        has_keypoint = getattr(self.roi_heads, "has_keypoint", None)
        return validate_inputs(images, targets, training=training,
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
            image_list = self._validate(images, targets, self.training)
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

    @torch.jit.unused
    def forward_with_losses(self, images: Union[Tensor, List[Tensor]], targets: List[Dict[str, Tensor]]
                            ) -> Tuple[Dict[str, Tensor], List[Dict[str, Tensor]]]:
        """The training losses and the detections of one eval-mode pass (the model must be in eval mode).

        The detections are exactly ``model(images)``'s; transform, backbone and RPN run once. The
        losses are a training step's definitions; they differ from one on the same batch in that
        normalisation layers use (and keep) their running statistics, the images are resized as
        in eval (``min_size[-1]``, not a random choice), the RoI heads' losses are taken on a
        training-style sample (``batch_size_per_image``, ``positive_fraction``) of the *eval*
        proposals (``rpn_*_nms_top_n_test``) plus the ground-truth boxes, and the RPN's anchor
        sample and that RoI sample are drawn from a fresh generator seeded with ``EVAL_LOSS_SEED``
        (so two calls agree and the global random state is untouched). Gradients flow when enabled.

        Returns:
            ``(losses, detections)``: the loss dict of a training step, and one dict per image as
            ``forward`` returns in eval.
        """
        require_eval_with_targets(self.training, targets)
        image_list = self._validate(images, targets, training=True)
        original_image_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in image_list]
        batch, resized_targets = self.transform(image_list, targets)
        assert resized_targets is not None
        features = self.backbone(batch.tensors)
        if isinstance(features, Tensor):
            features = OrderedDict([("0", features)])
        generator = torch.Generator(device=batch.tensors.device).manual_seed(EVAL_LOSS_SEED)
        proposals, proposal_losses = self.rpn.forward_with_losses(batch, features, resized_targets, generator)
        detections, detector_losses = self.roi_heads.forward_with_losses(features, proposals, batch.image_sizes,
                                                                         resized_targets, generator)
        detections = self.transform.postprocess(detections, batch.image_sizes, original_image_sizes)
        losses: Dict[str, Tensor] = {}
        losses.update(detector_losses)
        losses.update(proposal_losses)
        return losses, detections
