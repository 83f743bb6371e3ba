"""Mask R-CNN's mask branch maths: training targets, the loss, and pasting predicted masks into images.

The mask head predicts, for each RoI, an ``M x M`` grid of logits per class. Training compares the
logits of the ground-truth class against the ground-truth mask cropped to the proposal and resampled
to ``M x M``; inference takes the sigmoid at the predicted class and pastes the ``M x M`` probabilities
into the full image at the detected box, as torchvision does.
"""
from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from torchdet.ops.dispatch import OpDispatcher
from torchdet.ops.roi_align import roi_align

def project_masks_on_boxes(gt_masks: Tensor, boxes: Tensor, matched_idxs: Tensor, M: int) -> Tensor:
    """Crop each proposal's matched ground-truth mask and resample it to ``M x M``.

    Args:
        gt_masks: [G, H, W] ground-truth masks of one image (any numeric dtype).
        boxes: [P, 4] proposals (x1, y1, x2, y2) in the image's coordinates.
        matched_idxs: [P] index into ``gt_masks`` of each proposal's ground truth.
        M: side of the mask head's output.

    Returns:
        [P, M, M] float targets in 0..1 (RoIAlign of the masks, spatial scale 1).
    """
    rois = torch.cat([matched_idxs.to(boxes)[:, None], boxes], dim=1)  # [P, 5]
    masks = gt_masks[:, None].to(rois.dtype)  # [G, 1, H, W]
    return roi_align(masks, rois, (M, M), 1.0)[:, 0]


def maskrcnn_loss(
    mask_logits: Tensor,
    proposals: List[Tensor],
    gt_masks: List[Tensor],
    gt_labels: List[Tensor],
    mask_matched_idxs: List[Tensor],
) -> Tensor:
    """Binary cross-entropy of each positive RoI's logits at its ground-truth class.

    Args:
        mask_logits: [P, C, M, M] logits for all positive proposals of the batch, image by image.
        proposals: per image, [P_i, 4] positive proposals.
        gt_masks: per image, [G_i, H, W] ground-truth masks.
        gt_labels: per image, [G_i] ground-truth labels.
        mask_matched_idxs: per image, [P_i] index of each proposal's ground truth.

    Returns:
        Scalar loss; ``0 * mask_logits.sum()`` when there is no positive proposal, so that the
        graph stays connected.
    """
    M = mask_logits.shape[-1]
    labels = torch.cat([lab[idxs] for lab, idxs in zip(gt_labels, mask_matched_idxs)], dim=0)  # [P]
    targets = [project_masks_on_boxes(m, p, i, M) for m, p, i in zip(gt_masks, proposals, mask_matched_idxs)]
    mask_targets = torch.cat(targets, dim=0)  # [P, M, M]
    if mask_targets.numel() == 0:
        return mask_logits.sum() * 0
    logits_at_label = mask_logits[torch.arange(labels.shape[0], device=labels.device), labels]  # [P, M, M]
    return F.binary_cross_entropy_with_logits(logits_at_label, mask_targets)


def maskrcnn_inference(mask_logits: Tensor, labels: List[Tensor]) -> List[Tensor]:
    """Mask probabilities at each detection's predicted class, split per image.

    Args:
        mask_logits: [N, C, M, M] logits for all detections of the batch.
        labels: per image, [N_i] predicted labels (sum of N_i == N).

    Returns:
        Per image, [N_i, 1, M, M] probabilities.
    """
    all_labels = torch.cat(labels, dim=0)  # [N]
    index = torch.arange(mask_logits.shape[0], device=all_labels.device)
    probs = mask_logits.sigmoid()[index, all_labels][:, None]  # [N, 1, M, M]
    return list(probs.split([lab.shape[0] for lab in labels], dim=0))  # shape, not len: symbolic under export


def expand_masks(masks: Tensor, padding: int) -> Tuple[Tensor, float]:
    """Pad the ``M x M`` masks by ``padding`` zeros on each side.

    Args:
        masks: [N, 1, M, M].

    Returns:
        ([N, 1, M + 2p, M + 2p] padded masks, scale ``(M + 2p) / M`` to apply to the boxes).
    """
    M = masks.shape[-1]
    scale = float(M + 2 * padding) / M
    return F.pad(masks, [padding, padding, padding, padding]), scale


def expand_boxes(boxes: Tensor, scale: float) -> Tensor:
    """Scale boxes about their centres. [N, 4] -> [N, 4]"""
    half_w = (boxes[:, 2] - boxes[:, 0]) * 0.5 * scale
    half_h = (boxes[:, 3] - boxes[:, 1]) * 0.5 * scale
    cx = (boxes[:, 2] + boxes[:, 0]) * 0.5
    cy = (boxes[:, 3] + boxes[:, 1]) * 0.5
    return torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=1)


def _linear_resize_taps(
    start: Tensor, size: Tensor, src_len: int, out_len: int, dtype: torch.dtype
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Bilinear (align_corners=False) taps of a 1-D resize-and-paste, for every detection.

    Detection ``n``'s source of length ``src_len`` is resized to ``size[n]`` samples that land on
    output pixels ``start[n] .. start[n] + size[n] - 1``; pixels outside that range get zero weights.

    Args:
        start: [N] int64 first output pixel of each resized source.
        size: [N] int64 resized length (>= 1).

    Returns:
        (i0, i1, w0, w1), each [N, out_len]: output pixel ``p`` of detection ``n`` is
        ``w0 * source[i0] + w1 * source[i1]``.
    """
    n = start.shape[0]
    pixel = torch.arange(out_len, device=start.device)
    j = pixel[None, :] - start[:, None]  # [N, out_len] index into the resized source
    inside = ((j >= 0) & (j < size[:, None])).to(dtype)
    # PyTorch's linear upsampling: src = scale * (j + 0.5) - 0.5 clamped at 0, scale = in / out.
    scale = torch.full((n,), float(src_len), dtype=dtype, device=start.device) / size.to(dtype)
    src = (scale[:, None] * (j.to(dtype) + 0.5) - 0.5).clamp(min=0)
    # Clamped as floats (exact for these integers): ONNX Clip takes no int64 before opset 12.
    i0 = src.floor().clamp(max=src_len - 1).long()  # src >= 0
    i1 = (src.floor() + 1).clamp(max=src_len - 1).long()
    w1 = (src - i0.to(dtype)).clamp(0, 1)
    w0 = 1 - w1
    return i0, i1, w0 * inside, w1 * inside


def _paste_rows_prepared(masks: Tensor, boxes: Tensor, im_h: int, im_w: int, padding: int
                         ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The separable paste of ``paste_masks_in_image`` up to its last step.

    ``im_h`` / ``im_w``: ints, or traced 0-dim tensors while tracing.

    Returns:
        (out ``[N*H, W]`` zeros, rows ``[N*S, W]`` masks resized along x into full-width rows,
        src0, src1 ``[R]`` the two rows each pasted image row mixes, w0, w1 ``[R, 1]`` their
        weights, dst ``[R]`` the row of ``out`` it goes to) for the ``R`` image rows inside boxes.
    """
    n = masks.shape[0]
    padded, scale = expand_masks(masks, padding)
    dtype = masks.dtype if masks.is_floating_point() else torch.float32
    src = padded[:, 0].to(dtype)  # [N, S, S]
    s = src.shape[-1]
    int_boxes = expand_boxes(boxes, scale).to(torch.int64)  # truncation toward zero, as torchvision
    widths = (int_boxes[:, 2] - int_boxes[:, 0] + 1).float().clamp(min=1).long()  # float Clip: opset 11
    heights = (int_boxes[:, 3] - int_boxes[:, 1] + 1).float().clamp(min=1).long()

    x0, x1, u0, u1 = _linear_resize_taps(int_boxes[:, 0], widths, s, im_w, dtype)  # [N, W] each
    # Resized along x and pasted into full-width rows: [N, S, W].
    columns = src.gather(2, x0[:, None, :].expand(n, s, im_w)).mul_(u0[:, None, :])
    columns.addcmul_(src.gather(2, x1[:, None, :].expand(n, s, im_w)), u1[:, None, :])

    y0, y1, v0, v1 = _linear_resize_taps(int_boxes[:, 1], heights, s, im_h, dtype)  # [N, H] each
    y = torch.arange(im_h, device=masks.device)
    rows_inside = (y[None, :] >= int_boxes[:, 1:2]) & (y[None, :] < int_boxes[:, 1:2] + heights[:, None])
    inside = torch.where(rows_inside)
    det, row = inside[0], inside[1]  # [R], [R]
    src0, src1 = det * s + y0[det, row], det * s + y1[det, row]  # [R] rows of `columns`
    w0, w1, dst = v0[det, row, None], v1[det, row, None], det * im_h + row
    out = torch.zeros(n * im_h, im_w, dtype=dtype, device=masks.device)
    return out, columns.reshape(n * s, im_w), src0, src1, w0, w1, dst


def _paste_reference(masks: Tensor, boxes: Tensor, img_shape: List[int], padding: int) -> Tensor:
    """``paste_masks_in_image`` with every image row inside a box pasted in one pass (traceable:
    the image size may be traced values). ``[N, 1, H, W]``."""
    im_h, im_w = img_shape[0], img_shape[1]
    out, rows, src0, src1, w0, w1, dst = _paste_rows_prepared(masks, boxes, im_h, im_w, padding)
    _paste_rows(out, rows, src0, src1, w0, w1, dst)
    return out.reshape(masks.shape[0], 1, im_h, im_w).to(masks.dtype)


paste_masks_dispatch = OpDispatcher("paste_masks", reference=_paste_reference)


@paste_masks_dispatch.register("row_chunks", modes=("eager",))
def _paste_in_row_chunks(masks: Tensor, boxes: Tensor, img_shape: List[int], padding: int) -> Tensor:
    """The reference's values, the rows pasted in chunks so that the temporaries stay small (the
    output is the one big tensor)."""
    im_h, im_w = int(img_shape[0]), int(img_shape[1])
    n = masks.shape[0]
    if n == 0:
        return masks.new_zeros((0, 1, im_h, im_w))
    out, rows, src0, src1, w0, w1, dst = _paste_rows_prepared(masks, boxes, im_h, im_w, padding)
    step = _rows_per_chunk(im_w)
    for start in range(0, dst.shape[0], step):
        stop = start + step
        _paste_rows(out, rows, src0[start:stop], src1[start:stop], w0[start:stop], w1[start:stop], dst[start:stop])
    return out.reshape(n, 1, im_h, im_w).to(masks.dtype)


def paste_masks_in_image(masks: Tensor, boxes: Tensor, img_shape: List[int], padding: int = 1) -> Tensor:
    """Paste ``M x M`` mask probabilities into a full image at their boxes, all detections at once.

    Follows torchvision: the masks are padded by ``padding`` and the boxes grown to match, the boxes
    are truncated to integers, each mask is resized bilinearly (align_corners=False) to its integer
    box (``x2 - x1 + 1`` by ``y2 - y1 + 1``, at least 1) and written there, clipped to the image.
    Bilinear resizing is separable: each mask is first resized along x into full-width image rows
    (two taps per pixel, zero weights outside the box), then every image row inside a box mixes the
    two resized rows it falls between; only rows inside boxes are computed. Forms
    (``paste_masks_dispatch``): the reference pastes all rows in one pass (TorchScript, tracing,
    torch.export); ``"row_chunks"`` (eager) pastes them in chunks of bounded memory.

    Args:
        masks: [N, 1, M, M] probabilities.
        boxes: [N, 4] boxes (x1, y1, x2, y2) in the image's coordinates.
        img_shape: (H, W) of the image; while tracing, traced sizes (the graph pastes at the
            input's size).
        padding: zero border added around each mask before pasting.

    Returns:
        [N, 1, H, W] masks (same dtype as ``masks``), zero outside each box.
    """
    if torch.jit.is_scripting():
        return _paste_reference(masks, boxes, img_shape, padding)
    return _paste_dispatched(masks, boxes, img_shape, padding)


@torch.jit.unused
def _paste_dispatched(masks: Tensor, boxes: Tensor, img_shape: List[int], padding: int) -> Tensor:
    return paste_masks_dispatch(masks.device, masks, boxes, img_shape, padding)


def _rows_per_chunk(width: int) -> int:
    """Image rows pasted at once: at most 2**18 mask values (bounds the temporaries' memory)."""
    return max(1, (1 << 18) // width)


def _paste_rows(out: Tensor, rows: Tensor, src0: Tensor, src1: Tensor, w0: Tensor, w1: Tensor, dst: Tensor) -> None:
    """``out[dst] = w0 * rows[src0] + w1 * rows[src1]``: ``[r]`` indices, ``[r, 1]`` weights, ``[*, W]`` rows."""
    pasted = rows.index_select(0, src0).mul_(w0)  # [r, W]
    pasted.addcmul_(rows.index_select(0, src1), w1)
    out.index_copy_(0, dst, pasted)
