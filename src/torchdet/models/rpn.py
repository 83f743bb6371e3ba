"""The Region Proposal Network: score and refine anchors into a few thousand class-agnostic proposals."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchdet.errors import InvalidInputError
from torchdet.models.anchor_utils import AnchorGenerator
from torchdet.models.box_coder import BoxCoder
from torchdet.models.image_list import ImageList
from torchdet.models.matcher import Matcher
from torchdet.models.sampler import BalancedPositiveNegativeSampler
from torchdet.ops.boxes import box_iou, clip_boxes_to_image
from torchdet.ops.misc import Conv2dNormActivation
from torchdet.ops.nms import batched_nms


class RPNHead(nn.Module):
    """Shared 3x3 conv(s), then per-anchor objectness logits and box deltas, on every level.

    Args:
        in_channels: channels of every feature map.
        num_anchors: anchors per feature-map cell.
        conv_depth: number of 3x3 conv + ReLU layers before the two predictors.
    """

    _version = 2

    def __init__(self, in_channels: int, num_anchors: int, conv_depth: int = 1) -> None:
        super().__init__()
        self.conv = nn.Sequential(*[
            Conv2dNormActivation(in_channels, in_channels, kernel_size=3, norm_layer=None)
            for _ in range(conv_depth)
        ])
        self.cls_logits = nn.Conv2d(in_channels, num_anchors, kernel_size=1, stride=1)
        self.bbox_pred = nn.Conv2d(in_channels, num_anchors * 4, kernel_size=1, stride=1)
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.normal_(layer.weight, std=0.01)
                if layer.bias is not None:
                    nn.init.constant_(layer.bias, 0)

    def _load_from_state_dict(self, state_dict: Dict[str, Any], prefix: str, local_metadata: Dict[str, Any],
                              strict: bool, missing_keys: List[str], unexpected_keys: List[str],
                              error_msgs: List[str]) -> None:
        # Checkpoints from before version 2 hold a single conv as `conv.weight`/`conv.bias`.
        version = local_metadata.get("version", None)
        if version is None or version < 2:
            for name in ("weight", "bias"):
                old_key, new_key = f"{prefix}conv.{name}", f"{prefix}conv.0.0.{name}"
                if old_key in state_dict:
                    state_dict[new_key] = state_dict.pop(old_key)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def forward(self, x: List[Tensor]) -> Tuple[List[Tensor], List[Tensor]]:
        """Per level ``[N, C, H, W]`` -> per level objectness ``[N, A, H, W]`` and deltas ``[N, A*4, H, W]``."""
        logits, bbox_reg = [], []
        for feature in x:
            t = self.conv(feature)
            logits.append(self.cls_logits(t))
            bbox_reg.append(self.bbox_pred(t))
        return logits, bbox_reg


def permute_and_flatten(layer: Tensor, N: int, A: int, C: int, H: int, W: int) -> Tensor:
    """``[N, A*C, H, W]`` -> ``[N, H*W*A, C]``, ordered cell by cell, anchors within a cell."""
    layer = layer.view(N, -1, C, H, W)
    layer = layer.permute(0, 3, 4, 1, 2)
    return layer.reshape(N, -1, C)


def concat_box_prediction_layers(box_cls: List[Tensor], box_regression: List[Tensor]) -> Tuple[Tensor, Tensor]:
    """Flatten per-level head outputs to match the anchors' order.

    Returns:
        scores ``[N * sum_l H_l*W_l*A_l, C]`` and deltas ``[N * sum_l H_l*W_l*A_l, 4]``.
    """
    cls_flat, reg_flat = [], []
    for cls_level, reg_level in zip(box_cls, box_regression):
        N, AxC, H, W = cls_level.shape
        A = reg_level.shape[1] // 4
        C = AxC // A
        cls_flat.append(permute_and_flatten(cls_level, N, A, C, H, W))
        reg_flat.append(permute_and_flatten(reg_level, N, A, 4, H, W))
    scores = torch.cat(cls_flat, dim=1).flatten(0, -2)
    deltas = torch.cat(reg_flat, dim=1).reshape(-1, 4)
    return scores, deltas


def _traced_min(size: int, bound: int) -> int:
    """``min(size, bound)``, recorded in the graph when ``size`` is traced (a 0-dim tensor while tracing)."""
    if torch.jit.is_scripting():
        return min(size, bound)
    if torch.jit.is_tracing():
        return _clamp_traced(size, bound)
    return _symbolic_min(size, bound)


@torch.jit.unused
def _symbolic_min(size: int, bound: int) -> int:
    """``min`` that keeps a symbolic size (torch.export) symbolic instead of guarding on it."""
    return torch.sym_min(size, bound)


def _clamp_traced(size: int, bound: int) -> int:
    return torch.clamp(torch.as_tensor(size), max=bound)  # type: ignore[return-value]  # a traced int


class RegionProposalNetwork(nn.Module):
    """Anchors -> objectness and deltas -> top proposals per image (and, in training, the RPN losses).

    Args:
        anchor_generator: the anchors for every feature level.
        head: objectness and box-delta predictor (e.g. :class:`RPNHead`).
        fg_iou_thresh: anchors with IoU >= this with a ground truth are positive.
        bg_iou_thresh: anchors with IoU < this with every ground truth are negative.
        batch_size_per_image: anchors sampled per image for the losses.
        positive_fraction: at most this fraction of the sample is positive.
        pre_nms_top_n: ``dict(training=..., testing=...)``, proposals kept per level before NMS.
        post_nms_top_n: ``dict(training=..., testing=...)``, proposals kept per image after NMS.
        nms_thresh: IoU threshold of the per-level NMS.
        score_thresh: drop proposals whose objectness probability is below this.
    """

    def __init__(self, anchor_generator: AnchorGenerator, head: nn.Module, fg_iou_thresh: float,
                 bg_iou_thresh: float, batch_size_per_image: int, positive_fraction: float,
                 pre_nms_top_n: Dict[str, int], post_nms_top_n: Dict[str, int], nms_thresh: float,
                 score_thresh: float = 0.0) -> None:
        super().__init__()
        self.anchor_generator = anchor_generator
        self.head = head
        self.box_coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
        self.box_similarity = box_iou
        self.proposal_matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=True)
        self.fg_bg_sampler = BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        self._pre_nms_top_n = pre_nms_top_n
        self._post_nms_top_n = post_nms_top_n
        self.nms_thresh = nms_thresh
        self.score_thresh = score_thresh
        self.min_size = 1e-3

    def pre_nms_top_n(self) -> int:
        return self._pre_nms_top_n["training" if self.training else "testing"]

    def post_nms_top_n(self) -> int:
        return self._post_nms_top_n["training" if self.training else "testing"]

    def assign_targets_to_anchors(self, anchors: List[Tensor], targets: List[Dict[str, Tensor]]
                                  ) -> Tuple[List[Tensor], List[Tensor]]:
        """Per image: anchor labels ``[A]`` (1 object, 0 background, -1 ignored) and matched gt boxes ``[A, 4]``."""
        labels, matched_gt_boxes = [], []
        for anchors_per_image, target in zip(anchors, targets):
            gt_boxes = target["boxes"]
            if gt_boxes.numel() == 0:
                device = anchors_per_image.device
                matched = torch.zeros(anchors_per_image.shape, dtype=torch.float32, device=device)
                labels_per_image = torch.zeros((anchors_per_image.shape[0],), dtype=torch.float32, device=device)
            else:
                quality = self.box_similarity(gt_boxes, anchors_per_image)  # [M, A]
                matched_idxs = self.proposal_matcher(quality)
                matched = gt_boxes[matched_idxs.clamp(min=0)]
                labels_per_image = (matched_idxs >= 0).to(dtype=torch.float32)
                # torch.where, not masked assignment: a mask index syncs with the host
                labels_per_image = torch.where(matched_idxs == self.proposal_matcher.BELOW_LOW_THRESHOLD,
                                               torch.zeros_like(labels_per_image), labels_per_image)
                labels_per_image = torch.where(matched_idxs == self.proposal_matcher.BETWEEN_THRESHOLDS,
                                               torch.full_like(labels_per_image, -1.0), labels_per_image)
            labels.append(labels_per_image)
            matched_gt_boxes.append(matched)
        return labels, matched_gt_boxes

    def _get_top_n_idx(self, objectness: Tensor, num_anchors_per_level: List[int]) -> Tensor:
        """Indices ``[N, K]`` of the top ``pre_nms_top_n`` anchors of each level, by objectness ``[N, A]``."""
        top_n: List[Tensor] = []
        offset = 0
        for level_scores in objectness.split(num_anchors_per_level, 1):
            num_anchors = level_scores.shape[1]
            k = _traced_min(num_anchors, self.pre_nms_top_n())  # a trace keeps the level's size in the graph
            _, idx = level_scores.topk(k, dim=1)
            top_n.append(idx + offset)
            offset += num_anchors
        return torch.cat(top_n, dim=1)

    def filter_proposals(self, proposals: Tensor, objectness: Tensor, image_shapes: List[Tuple[int, int]],
                         num_anchors_per_level: List[int]) -> Tuple[List[Tensor], List[Tensor]]:
        """Top-n per level, clip, drop tiny and low-score boxes, NMS per level, keep ``post_nms_top_n``.

        Args:
            proposals: decoded anchors ``[N, A, 4]``.
            objectness: logits ``[N * A, 1]``.

        Returns:
            per image, boxes ``[K_i, 4]`` and objectness probabilities ``[K_i]``.
        """
        num_images = proposals.shape[0]
        device = proposals.device
        objectness = objectness.detach().reshape(num_images, -1)
        levels = torch.cat([torch.full((n,), idx, dtype=torch.int64, device=device)
                            for idx, n in enumerate(num_anchors_per_level)], 0)
        levels = levels.reshape(1, -1).expand_as(objectness)

        top_n_idx = self._get_top_n_idx(objectness, num_anchors_per_level)
        batch_idx = torch.arange(num_images, device=device)[:, None]
        objectness = objectness[batch_idx, top_n_idx]
        levels = levels[batch_idx, top_n_idx]
        proposals = proposals[batch_idx, top_n_idx]
        objectness_prob = torch.sigmoid(objectness)

        final_boxes, final_scores = [], []
        for boxes, scores, lvl, image_shape in zip(proposals, objectness_prob, levels, image_shapes):
            boxes = clip_boxes_to_image(boxes, image_shape)
            # remove_small_boxes and the score threshold as one mask: one sync instead of two
            widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
            valid = (widths >= self.min_size) & (heights >= self.min_size) & (scores >= self.score_thresh)
            keep = torch.where(valid)[0]
            boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
            keep = batched_nms(boxes, scores, lvl, self.nms_thresh)[: self.post_nms_top_n()]
            final_boxes.append(boxes[keep])
            final_scores.append(scores[keep])
        return final_boxes, final_scores

    def compute_loss(self, objectness: Tensor, pred_bbox_deltas: Tensor, labels: List[Tensor],
                     regression_targets: List[Tensor], generator: Optional[torch.Generator] = None
                     ) -> Tuple[Tensor, Tensor]:
        """Objectness BCE over the sampled anchors; smooth-L1 (beta 1/9) over the sampled positives / sample size.

        Args:
            objectness: ``[N * A, 1]`` logits; pred_bbox_deltas: ``[N * A, 4]``;
            labels, regression_targets: per image ``[A]`` and ``[A, 4]``.
            generator: the sampler's random source (``None``: the global one).
        """
        sampled_pos, sampled_neg = self.fg_bg_sampler(labels, generator)
        sampled_pos_inds = torch.where(torch.cat(sampled_pos, dim=0))[0]
        sampled_neg_inds = torch.where(torch.cat(sampled_neg, dim=0))[0]
        sampled_inds = torch.cat([sampled_pos_inds, sampled_neg_inds], dim=0)

        objectness = objectness.flatten()
        labels_all = torch.cat(labels, dim=0)
        targets_all = torch.cat(regression_targets, dim=0)

        box_loss = F.smooth_l1_loss(pred_bbox_deltas[sampled_pos_inds], targets_all[sampled_pos_inds],
                                    beta=1 / 9, reduction="sum") / sampled_inds.numel()
        objectness_loss = F.binary_cross_entropy_with_logits(objectness[sampled_inds], labels_all[sampled_inds])
        return objectness_loss, box_loss

    def forward(self, images: ImageList, features: Dict[str, Tensor],
                targets: Optional[List[Dict[str, Tensor]]] = None) -> Tuple[List[Tensor], Dict[str, Tensor]]:
        """Proposals per image ``[K_i, 4]`` (in the resized image's pixels) and, in training, the RPN losses."""
        boxes, objectness, pred_bbox_deltas, anchors = self._propose(images, features)
        losses: Dict[str, Tensor] = {}
        if self.training:
            if targets is None:
                raise InvalidInputError("targets are required to train the RPN; pass one dict per image with 'boxes'.")
            losses = self.losses(objectness, pred_bbox_deltas, anchors, targets)
        return boxes, losses

    @torch.jit.unused
    def forward_with_losses(self, images: ImageList, features: Dict[str, Tensor], targets: List[Dict[str, Tensor]],
                            generator: Optional[torch.Generator] = None) -> Tuple[List[Tensor], Dict[str, Tensor]]:
        """The proposals of the current mode (eval: ``testing`` top-n) and the RPN's training losses.

        The losses do not depend on the proposals: they score the anchors' objectness and deltas,
        sampling anchors with ``generator``.
        """
        boxes, objectness, pred_bbox_deltas, anchors = self._propose(images, features)
        return boxes, self.losses(objectness, pred_bbox_deltas, anchors, targets, generator)

    def _propose(self, images: ImageList, features: Dict[str, Tensor]
                 ) -> Tuple[List[Tensor], Tensor, Tensor, List[Tensor]]:
        """Per-image proposals, with the flat ``[N * A, 1]`` objectness, ``[N * A, 4]`` deltas and the anchors."""
        feature_maps = list(features.values())
        objectness, pred_bbox_deltas = self.head(feature_maps)
        anchors = self.anchor_generator(images, feature_maps)
        num_images = len(anchors)

        expected_per_location = self.anchor_generator.num_anchors_per_location()
        for level, level_objectness in enumerate(objectness):
            if level_objectness.shape[1] != expected_per_location[level]:
                raise InvalidInputError(
                    f"the RPN head predicts {level_objectness.shape[1]} anchors per location on feature level {level} "
                    f"but the anchor generator makes {expected_per_location[level]} there; build the head with "
                    "num_anchors_per_location() of the generator, which must be the same on every level."
                )
        num_anchors_per_level = [o[0].shape[0] * o[0].shape[1] * o[0].shape[2] for o in objectness]
        objectness, pred_bbox_deltas = concat_box_prediction_layers(objectness, pred_bbox_deltas)
        # Proposals are not differentiated through: the box loss acts on the deltas directly.
        proposals = self.box_coder.decode(pred_bbox_deltas.detach(), anchors).view(num_images, -1, 4)
        boxes, _scores = self.filter_proposals(proposals, objectness, images.image_sizes, num_anchors_per_level)
        return boxes, objectness, pred_bbox_deltas, anchors

    def losses(self, objectness: Tensor, pred_bbox_deltas: Tensor, anchors: List[Tensor],
               targets: List[Dict[str, Tensor]], generator: Optional[torch.Generator] = None) -> Dict[str, Tensor]:
        """``{"loss_objectness", "loss_rpn_box_reg"}`` of the flat head outputs against the targets' boxes."""
        labels, matched_gt_boxes = self.assign_targets_to_anchors(anchors, targets)
        regression_targets = self.box_coder.encode(matched_gt_boxes, anchors)
        loss_objectness, loss_rpn_box_reg = self.compute_loss(objectness, pred_bbox_deltas, labels,
                                                              regression_targets, generator)
        return {"loss_objectness": loss_objectness, "loss_rpn_box_reg": loss_rpn_box_reg}
