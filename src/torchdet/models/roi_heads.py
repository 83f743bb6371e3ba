"""RoIHeads: classify and refine proposals into detections (with optional mask and keypoint branches)."""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchdet.errors import InvalidInputError, InvalidInputTypeError, MissingInputKeyError
from torchdet.models import keypoint_ops, mask_ops
from torchdet.models.box_coder import BoxCoder
from torchdet.models.matcher import Matcher
from torchdet.models.sampler import BalancedPositiveNegativeSampler
from torchdet.ops.boxes import box_iou, clip_boxes_to_image, remove_small_boxes
from torchdet.ops.dispatch import OpDispatcher
from torchdet.ops.nms import batched_nms

Target = Dict[str, Tensor]


# Activations per chunk when a mask / keypoint head runs in chunks of RoIs (see _conv_head_in_chunks).
_ROI_CHUNK_BYTES = 16 * 2**20


def _conv_head_reference(head: nn.Module, predictor: nn.Module, pooled: Tensor) -> Tensor:
    """``predictor(head(pooled))`` for the mask and keypoint branches: ``[R, C, 14, 14]`` -> logits."""
    return predictor(head(pooled))


# The mask and keypoint conv heads: TorchScript, tracing and training run the reference.
conv_head_dispatch = OpDispatcher("roi_conv_head", reference=_conv_head_reference)


@conv_head_dispatch.register("channels_last_chunks", devices=("cpu",), modes=("eager",))
def _conv_head_in_chunks(head: nn.Module, predictor: nn.Module, pooled: Tensor) -> Tensor:
    """The reference, in eval on chunks of about 16 MiB of activations in channels-last layout.

    oneDNN's fast layout (the backbone already uses it), and 100 RoIs at once would keep 40-80 MB
    buffers, which miss the cache and, above glibc's 32 MB mmap threshold, come back as fresh
    zeroed pages on every layer. Training runs the reference.
    """
    if head.training or predictor.training or pooled.dim() != 4 or pooled.shape[0] == 0:
        return predictor(head(pooled))
    # The widest activation is up to 4x the input per RoI (the mask predictor's 28x28 upsampling).
    per_roi = 4 * pooled[0].numel() * pooled.element_size()
    step = max(1, _ROI_CHUNK_BYTES // per_roi)
    chunks = [predictor(head(part.contiguous(memory_format=torch.channels_last)))
              for part in pooled.split(step)]
    return torch.cat(chunks).contiguous()


@torch.jit.unused
def _conv_head(head: nn.Module, predictor: nn.Module, pooled: Tensor) -> Tensor:
    return conv_head_dispatch(pooled.device, head, predictor, pooled)


def fastrcnn_loss(class_logits: Tensor, box_regression: Tensor, labels: List[Tensor],
                  regression_targets: List[Tensor]) -> Tuple[Tensor, Tensor]:
    """Fast R-CNN losses: cross entropy over classes; smooth-L1 (beta 1/9) on the true class's deltas.

    Args:
        class_logits: ``[R, num_classes]``; box_regression: ``[R, num_classes * 4]``.
        labels: per image ``[R_i]`` int64 (0 background); regression_targets: per image ``[R_i, 4]``.

    The box loss is summed over positives and divided by the number of sampled proposals.
    """
    labels_all = torch.cat(labels, dim=0)
    targets_all = torch.cat(regression_targets, dim=0)
    classification_loss = F.cross_entropy(class_logits, labels_all)

    pos_inds = torch.where(labels_all > 0)[0]
    labels_pos = labels_all[pos_inds]
    N = class_logits.shape[0]
    box_regression = box_regression.reshape(N, box_regression.size(-1) // 4, 4)
    box_loss = F.smooth_l1_loss(box_regression[pos_inds, labels_pos], targets_all[pos_inds],
                                beta=1 / 9, reduction="sum")
    return classification_loss, box_loss / labels_all.numel()


def _positive_proposals(proposals: List[Tensor], labels: List[Tensor], matched_idxs: List[Tensor]
                        ) -> Tuple[List[Tensor], List[Tensor]]:
    """Per image, the foreground proposals and the gt index each matched."""
    pos_proposals: List[Tensor] = []
    pos_matched_idxs: List[Tensor] = []
    for props, lbls, idxs in zip(proposals, labels, matched_idxs):
        pos = torch.where(lbls > 0)[0]
        pos_proposals.append(props[pos])
        pos_matched_idxs.append(idxs[pos])
    return pos_proposals, pos_matched_idxs


class RoIHeads(nn.Module):
    """Second stage of a two-stage detector: box classification/regression, plus masks and keypoints.

    Args:
        box_roi_pool: pools ``[R, C, 7, 7]`` features per proposal (e.g. MultiScaleRoIAlign).
        box_head: pooled features -> ``[R, D]`` representation.
        box_predictor: representation -> class logits ``[R, K]`` and deltas ``[R, K*4]``.
        fg_iou_thresh, bg_iou_thresh: proposal/gt IoU at or above which a proposal is foreground,
            and below which it is background.
        batch_size_per_image, positive_fraction: proposals sampled per image for the losses.
        bbox_reg_weights: box coder weights; ``None`` -> ``(10, 10, 5, 5)``.
        score_thresh, nms_thresh, detections_per_img: inference post-processing.
        mask_roi_pool, mask_head, mask_predictor: the Mask R-CNN branch (all or none).
        keypoint_roi_pool, keypoint_head, keypoint_predictor: the Keypoint R-CNN branch.
    """

    def __init__(self, box_roi_pool: nn.Module, box_head: nn.Module, box_predictor: nn.Module,
                 fg_iou_thresh: float, bg_iou_thresh: float, batch_size_per_image: int,
                 positive_fraction: float, bbox_reg_weights: Optional[Tuple[float, float, float, float]],
                 score_thresh: float, nms_thresh: float, detections_per_img: int,
                 mask_roi_pool: Optional[nn.Module] = None, mask_head: Optional[nn.Module] = None,
                 mask_predictor: Optional[nn.Module] = None, keypoint_roi_pool: Optional[nn.Module] = None,
                 keypoint_head: Optional[nn.Module] = None, keypoint_predictor: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.box_similarity = box_iou
        self.proposal_matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=False)
        self.fg_bg_sampler = BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        if bbox_reg_weights is None:
            bbox_reg_weights = (10.0, 10.0, 5.0, 5.0)
        self.box_coder = BoxCoder(bbox_reg_weights)

        self.box_roi_pool = box_roi_pool
        self.box_head = box_head
        self.box_predictor = box_predictor

        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img

        self.mask_roi_pool = mask_roi_pool
        self.mask_head = mask_head
        self.mask_predictor = mask_predictor

        self.keypoint_roi_pool = keypoint_roi_pool
        self.keypoint_head = keypoint_head
        self.keypoint_predictor = keypoint_predictor

    def has_mask(self) -> bool:
        return self.mask_roi_pool is not None and self.mask_head is not None and self.mask_predictor is not None

    def has_keypoint(self) -> bool:
        return (self.keypoint_roi_pool is not None and self.keypoint_head is not None
                and self.keypoint_predictor is not None)

    # ---- training: targets for the sampled proposals ------------------------------------------

    def assign_targets_to_proposals(self, proposals: List[Tensor], gt_boxes: List[Tensor],
                                    gt_labels: List[Tensor]) -> Tuple[List[Tensor], List[Tensor]]:
        """Per image: matched gt index ``[R_i]`` (clamped to >= 0) and label ``[R_i]`` (0 bg, -1 ignored)."""
        matched_idxs: List[Tensor] = []
        labels: List[Tensor] = []
        for proposals_in_image, gt_boxes_in_image, gt_labels_in_image in zip(proposals, gt_boxes, gt_labels):
            if gt_boxes_in_image.numel() == 0:
                device = proposals_in_image.device
                clamped = torch.zeros((proposals_in_image.shape[0],), dtype=torch.int64, device=device)
                labels_in_image = torch.zeros((proposals_in_image.shape[0],), dtype=torch.int64, device=device)
            else:
                quality = self.box_similarity(gt_boxes_in_image, proposals_in_image)  # [M, R]
                matched = self.proposal_matcher(quality)
                clamped = matched.clamp(min=0)
                labels_in_image = gt_labels_in_image[clamped].to(dtype=torch.int64)
                labels_in_image[matched == self.proposal_matcher.BELOW_LOW_THRESHOLD] = 0
                labels_in_image[matched == self.proposal_matcher.BETWEEN_THRESHOLDS] = -1
            matched_idxs.append(clamped)
            labels.append(labels_in_image)
        return matched_idxs, labels

    def subsample(self, labels: List[Tensor]) -> List[Tensor]:
        """Per image, the indices of the sampled proposals (positives and negatives)."""
        pos_masks, neg_masks = self.fg_bg_sampler(labels)
        return [torch.where(pos | neg)[0] for pos, neg in zip(pos_masks, neg_masks)]

    def add_gt_proposals(self, proposals: List[Tensor], gt_boxes: List[Tensor]) -> List[Tensor]:
        """Append each image's ground-truth boxes to its proposals."""
        return [torch.cat((p, gt)) for p, gt in zip(proposals, gt_boxes)]

    def check_targets(self, targets: Optional[List[Target]]) -> None:
        if targets is None:
            raise InvalidInputError(
                "targets are required in training; pass one dict per image with 'boxes' and 'labels'.")
        required = ["boxes", "labels"]
        if self.has_mask():
            required.append("masks")
        for i, t in enumerate(targets):
            for key in required:
                if key not in t:
                    raise MissingInputKeyError(f"target of image {i} lacks '{key}'; give it 'boxes', 'labels' "
                                     "(and 'masks' for Mask R-CNN).")

    def select_training_samples(self, proposals: List[Tensor], targets: Optional[List[Target]]
                                ) -> Tuple[List[Tensor], List[Tensor], List[Tensor], List[Tensor]]:
        """Add gt boxes to the proposals, match, sample; return proposals, matched_idxs, labels, regression targets."""
        self.check_targets(targets)
        assert targets is not None
        dtype, device = proposals[0].dtype, proposals[0].device
        gt_boxes = [t["boxes"].to(dtype) for t in targets]
        gt_labels = [t["labels"] for t in targets]

        proposals = self.add_gt_proposals(proposals, gt_boxes)
        matched_idxs, labels = self.assign_targets_to_proposals(proposals, gt_boxes, gt_labels)
        sampled_inds = self.subsample(labels)

        matched_gt_boxes: List[Tensor] = []
        for img_id, inds in enumerate(sampled_inds):
            proposals[img_id] = proposals[img_id][inds]
            labels[img_id] = labels[img_id][inds]
            matched_idxs[img_id] = matched_idxs[img_id][inds]
            gt_boxes_in_image = gt_boxes[img_id]
            if gt_boxes_in_image.numel() == 0:
                gt_boxes_in_image = torch.zeros((1, 4), dtype=dtype, device=device)
            matched_gt_boxes.append(gt_boxes_in_image[matched_idxs[img_id]])
        regression_targets = self.box_coder.encode(matched_gt_boxes, proposals)
        return proposals, matched_idxs, labels, regression_targets

    # ---- inference ------------------------------------------------------------------------------

    def postprocess_detections(self, class_logits: Tensor, box_regression: Tensor, proposals: List[Tensor],
                               image_shapes: List[Tuple[int, int]]) -> Tuple[List[Tensor], List[Tensor], List[Tensor]]:
        """Per-class boxes and softmax scores -> per image boxes ``[D, 4]``, scores ``[D]``, labels ``[D]``.

        Drops the background class, scores ``<= score_thresh`` and boxes smaller than 1e-2,
        runs NMS per class and keeps the ``detections_per_img`` best.
        """
        device = class_logits.device
        num_classes = class_logits.shape[-1]
        boxes_per_image = [p.shape[0] for p in proposals]
        pred_boxes = self.box_coder.decode(box_regression, proposals)  # [R, K, 4]
        pred_scores = F.softmax(class_logits, -1)  # [R, K]

        all_boxes: List[Tensor] = []
        all_scores: List[Tensor] = []
        all_labels: List[Tensor] = []
        for boxes, scores, image_shape in zip(pred_boxes.split(boxes_per_image, 0),
                                              pred_scores.split(boxes_per_image, 0), image_shapes):
            boxes = clip_boxes_to_image(boxes, image_shape)
            labels = torch.arange(num_classes, device=device).view(1, -1).expand_as(scores)
            # Column 0 is background.
            boxes = boxes[:, 1:].reshape(-1, 4)
            scores = scores[:, 1:].reshape(-1)
            labels = labels[:, 1:].reshape(-1)

            inds = torch.where(scores > self.score_thresh)[0]
            boxes, scores, labels = boxes[inds], scores[inds], labels[inds]
            keep = remove_small_boxes(boxes, min_size=1e-2)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = batched_nms(boxes, scores, labels, self.nms_thresh)[: self.detections_per_img]
            all_boxes.append(boxes[keep])
            all_scores.append(scores[keep])
            all_labels.append(labels[keep])
        return all_boxes, all_scores, all_labels

    # ---- the branches ---------------------------------------------------------------------------

    def _mask_branch(self, features: Dict[str, Tensor], proposals: List[Tensor], image_shapes: List[Tuple[int, int]],
                     targets: Optional[List[Target]], labels: Optional[List[Tensor]],
                     matched_idxs: Optional[List[Tensor]], result: List[Dict[str, Tensor]]) -> Dict[str, Tensor]:
        pos_matched_idxs: List[Tensor] = []
        if self.training:
            if targets is None or labels is None or matched_idxs is None:
                raise ValueError("training the mask branch needs targets, labels and matched_idxs.")
            mask_proposals, pos_matched_idxs = _positive_proposals(proposals, labels, matched_idxs)
        else:
            mask_proposals = [r["boxes"] for r in result]
        # The `is not None` tests let TorchScript skip the branch of a model without masks.
        if self.mask_roi_pool is not None and self.mask_head is not None and self.mask_predictor is not None:
            pooled = self.mask_roi_pool(features, mask_proposals, image_shapes)
            if torch.jit.is_scripting():  # TorchScript cannot hand modules to the op: its reference inline
                mask_logits = self.mask_predictor(self.mask_head(pooled))
            else:
                mask_logits = _conv_head(self.mask_head, self.mask_predictor, pooled)
        else:
            raise ValueError("the mask branch needs mask_roi_pool, mask_head and mask_predictor.")
        if self.training:
            assert targets is not None
            gt_masks = [t["masks"] for t in targets]
            gt_labels = [t["labels"] for t in targets]
            loss = mask_ops.maskrcnn_loss(mask_logits, mask_proposals, gt_masks, gt_labels, pos_matched_idxs)
            return {"loss_mask": loss}
        labels_per_image = [r["labels"] for r in result]
        mask_probs = mask_ops.maskrcnn_inference(mask_logits, labels_per_image)
        for prob, r in zip(mask_probs, result):
            r["masks"] = prob
        return {}

    def _keypoint_branch(self, features: Dict[str, Tensor], proposals: List[Tensor],
                         image_shapes: List[Tuple[int, int]], targets: Optional[List[Target]],
                         labels: Optional[List[Tensor]], matched_idxs: Optional[List[Tensor]],
                         result: List[Dict[str, Tensor]]) -> Dict[str, Tensor]:
        pos_matched_idxs: List[Tensor] = []
        if self.training:
            if targets is None or labels is None or matched_idxs is None:
                raise ValueError("training the keypoint branch needs targets, labels and matched_idxs.")
            keypoint_proposals, pos_matched_idxs = _positive_proposals(proposals, labels, matched_idxs)
        else:
            keypoint_proposals = [r["boxes"] for r in result]
        if (self.keypoint_roi_pool is not None and self.keypoint_head is not None
                and self.keypoint_predictor is not None):
            pooled = self.keypoint_roi_pool(features, keypoint_proposals, image_shapes)
            if torch.jit.is_scripting():  # TorchScript cannot hand modules to the op: its reference inline
                keypoint_logits = self.keypoint_predictor(self.keypoint_head(pooled))
            else:
                keypoint_logits = _conv_head(self.keypoint_head, self.keypoint_predictor, pooled)
        else:
            raise ValueError("the keypoint branch needs keypoint_roi_pool, keypoint_head and keypoint_predictor.")
        if self.training:
            assert targets is not None
            gt_keypoints = [t["keypoints"] for t in targets]
            loss = keypoint_ops.keypointrcnn_loss(keypoint_logits, keypoint_proposals, gt_keypoints, pos_matched_idxs)
            return {"loss_keypoint": loss}
        keypoints, keypoint_scores = keypoint_ops.keypointrcnn_inference(keypoint_logits, keypoint_proposals)
        for kps, kp_scores, r in zip(keypoints, keypoint_scores, result):
            r["keypoints"] = kps
            r["keypoints_scores"] = kp_scores
        return {}

    def forward(self, features: Dict[str, Tensor], proposals: List[Tensor], image_shapes: List[Tuple[int, int]],
                targets: Optional[List[Target]] = None) -> Tuple[List[Dict[str, Tensor]], Dict[str, Tensor]]:
        """Detections per image (eval) or the second-stage losses (training).

        Args:
            features: feature maps by name, ``[B, C, H_l, W_l]``.
            proposals: per image ``[R_i, 4]`` in the resized image's pixels.
            image_shapes: each resized image's ``(h, w)``.
        """
        if targets is not None:
            for i, t in enumerate(targets):
                if not t["boxes"].is_floating_point():
                    raise InvalidInputTypeError(
                        f"target boxes of image {i} must be floating point; got {t['boxes'].dtype}.")
                if t["labels"].dtype != torch.int64:
                    raise InvalidInputTypeError(f"target labels of image {i} must be int64; got {t['labels'].dtype}.")
                if self.has_keypoint() and "keypoints" in t and t["keypoints"].dtype != torch.float32:
                    raise InvalidInputTypeError(
                        f"target keypoints of image {i} must be float32; got {t['keypoints'].dtype}.")

        labels: Optional[List[Tensor]] = None
        matched_idxs: Optional[List[Tensor]] = None
        regression_targets: Optional[List[Tensor]] = None
        if self.training:
            proposals, matched_idxs, labels, regression_targets = self.select_training_samples(proposals, targets)

        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)

        result: List[Dict[str, Tensor]] = []
        losses: Dict[str, Tensor] = {}
        if self.training:
            assert labels is not None and regression_targets is not None
            loss_classifier, loss_box_reg = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
            losses = {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}
        else:
            boxes, scores, det_labels = self.postprocess_detections(class_logits, box_regression, proposals,
                                                                    image_shapes)
            for b, s, l in zip(boxes, scores, det_labels):
                result.append({"boxes": b, "labels": l, "scores": s})

        if self.has_mask():
            losses.update(self._mask_branch(features, proposals, image_shapes, targets, labels, matched_idxs, result))
        if self.has_keypoint():
            losses.update(self._keypoint_branch(features, proposals, image_shapes, targets, labels, matched_idxs,
                                                result))
        return result, losses
