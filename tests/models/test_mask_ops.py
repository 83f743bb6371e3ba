"""Mask branch maths: targets, loss, per-class selection, and the vectorised paste against a per-detection loop."""
import time

import pytest
import torch
import torch.nn.functional as F

from torchdet.models import mask_ops
from torchdet.models.mask_ops import (maskrcnn_inference, maskrcnn_loss, paste_masks_in_image,
                                      project_masks_on_boxes)


def paste_one_by_one(masks, boxes, img_shape, padding=1):
    """Reference paste, one detection at a time, following torchvision's recipe step by step:
    pad the mask, grow the box by (M + 2p) / M about its centre, truncate it to integers, resize the
    mask bilinearly (align_corners=False) to the integer box (x2 - x1 + 1 by y2 - y1 + 1, at least 1)
    and copy the part inside the image."""
    m = masks.shape[-1]
    scale = (m + 2 * padding) / m
    padded = F.pad(masks, (padding,) * 4)
    half_w = (boxes[:, 2] - boxes[:, 0]) * 0.5 * scale
    half_h = (boxes[:, 3] - boxes[:, 1]) * 0.5 * scale
    cx = (boxes[:, 2] + boxes[:, 0]) * 0.5
    cy = (boxes[:, 3] + boxes[:, 1]) * 0.5
    grown = torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=1).to(torch.int64)
    im_h, im_w = img_shape
    out = torch.zeros(len(masks), 1, im_h, im_w, dtype=masks.dtype)
    for i, (mask, box) in enumerate(zip(padded, grown.tolist())):
        w = max(box[2] - box[0] + 1, 1)
        h = max(box[3] - box[1] + 1, 1)
        resized = F.interpolate(mask[None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        x0, x1 = max(box[0], 0), min(box[2] + 1, im_w)
        y0, y1 = max(box[1], 0), min(box[3] + 1, im_h)
        if x1 > x0 and y1 > y0:
            out[i, 0, y0:y1, x0:x1] = resized[y0 - box[1]:y1 - box[1], x0 - box[0]:x1 - box[0]]
    return out


def random_boxes(n, height, width, generator, max_frac=0.6):
    xy = torch.rand(n, 2, generator=generator) * torch.tensor([width, height]) * 1.1 - 5
    wh = torch.rand(n, 2, generator=generator) * torch.tensor([width, height]) * max_frac
    boxes = torch.cat([xy, xy + wh], dim=1)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    return boxes


# ---- training targets and loss ---------------------------------------------------------------------


def test_project_masks_on_boxes_crops_and_resamples():
    gt = torch.zeros(2, 20, 30, dtype=torch.uint8)
    gt[0, :, :15] = 1  # left half
    gt[1] = 1
    # RoIAlign (aligned=False) samples 2 points per bin: here at x = 0.5 .. 13.5, then 16.5 .. 29.5.
    boxes = torch.tensor([[0.0, 0.0, 14.0, 20.0], [16.0, 0.0, 30.0, 20.0], [0.0, 0.0, 30.0, 20.0]])
    targets = project_masks_on_boxes(gt, boxes, torch.tensor([0, 0, 1]), 7)
    assert targets.shape == (3, 7, 7) and targets.dtype == torch.float32
    assert torch.allclose(targets[0], torch.ones(7, 7))  # inside the left half
    assert torch.equal(targets[1], torch.zeros(7, 7))  # the right half of mask 0 is empty
    assert torch.allclose(targets[2], torch.ones(7, 7))


def test_maskrcnn_loss_is_bce_at_the_gt_label():
    g = torch.Generator().manual_seed(0)
    gt_masks = [(torch.rand(2, 24, 24, generator=g) > 0.5).to(torch.uint8), (torch.rand(1, 16, 20, generator=g) > 0.5).to(torch.uint8)]
    gt_labels = [torch.tensor([3, 1]), torch.tensor([2])]
    proposals = [torch.tensor([[1.0, 2.0, 20.0, 22.0], [0.0, 0.0, 12.0, 9.0], [5.0, 5.0, 23.0, 23.0]]),
                 torch.tensor([[2.0, 1.0, 18.0, 15.0]])]
    matched = [torch.tensor([0, 1, 0]), torch.tensor([0])]
    logits = torch.randn(4, 5, 14, 14, generator=g)
    loss = maskrcnn_loss(logits, proposals, gt_masks, gt_labels, matched)

    targets = torch.cat([project_masks_on_boxes(m, p, i, 14) for m, p, i in zip(gt_masks, proposals, matched)])
    labels = torch.tensor([3, 1, 3, 2])
    expected = F.binary_cross_entropy_with_logits(logits[torch.arange(4), labels], targets)
    assert torch.allclose(loss, expected)


def test_maskrcnn_loss_without_positives_is_a_connected_zero():
    logits = torch.randn(0, 3, 14, 14, requires_grad=True)
    loss = maskrcnn_loss(logits, [torch.zeros(0, 4)], [torch.zeros(1, 10, 10, dtype=torch.uint8)],
                         [torch.tensor([1])], [torch.zeros(0, dtype=torch.long)])
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert logits.grad is not None


def test_maskrcnn_inference_picks_the_predicted_class_and_splits():
    logits = torch.randn(5, 4, 28, 28)
    labels = [torch.tensor([1, 3]), torch.tensor([], dtype=torch.long), torch.tensor([0, 2, 2])]
    probs = maskrcnn_inference(logits, labels)
    assert [p.shape for p in probs] == [(2, 1, 28, 28), (0, 1, 28, 28), (3, 1, 28, 28)]
    flat = torch.cat(probs)
    for i, label in enumerate([1, 3, 0, 2, 2]):
        torch.testing.assert_close(flat[i, 0], logits[i, label].sigmoid(), rtol=0, atol=1e-6)  # SIMD tails round differently


# ---- pasting ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("padding", [0, 1, 2])
def test_paste_matches_the_per_detection_recipe(padding):
    g = torch.Generator().manual_seed(padding)
    height, width = 61, 83
    boxes = random_boxes(40, height, width, g)
    boxes[0] = torch.tensor([10.0, 10.0, 10.0, 30.0])  # zero width
    boxes[1] = torch.tensor([0.0, 0.0, float(width), float(height)])  # whole image
    boxes[2] = torch.tensor([70.4, 50.2, 83.0, 61.0])  # grows past the border
    boxes[3] = torch.tensor([0.3, 0.2, 1.1, 0.9])  # sub-pixel
    masks = torch.rand(40, 1, 28, 28, generator=g)
    ours = paste_masks_in_image(masks, boxes, (height, width), padding=padding)
    ref = paste_one_by_one(masks, boxes, (height, width), padding=padding)
    assert ours.shape == ref.shape == (40, 1, height, width) and ours.dtype == masks.dtype
    assert (ours - ref).abs().max() < 1e-5


def test_paste_boxes_partly_outside_the_image():
    g = torch.Generator().manual_seed(3)
    boxes = torch.tensor([[-12.7, -3.2, 20.5, 14.0], [30.0, 20.0, 55.9, 47.3], [-3.0, 25.0, 8.0, 60.0]])
    masks = torch.rand(3, 1, 14, 14, generator=g)
    ours = paste_masks_in_image(masks, boxes, (40, 50))
    assert (ours - paste_one_by_one(masks, boxes, (40, 50))).abs().max() < 1e-5


def test_paste_no_detections():
    out = paste_masks_in_image(torch.zeros(0, 1, 28, 28), torch.zeros(0, 4), (30, 40))
    assert out.shape == (0, 1, 30, 40)


def test_paste_a_constant_mask_fills_its_box():
    masks = torch.ones(1, 1, 28, 28)
    out = paste_masks_in_image(masks, torch.tensor([[10.0, 5.0, 29.0, 24.0]]), (40, 40), padding=0)[0, 0]
    assert torch.all(out[5:25, 10:30] == 1) and out.sum() == 20 * 20


@pytest.mark.slow
def test_paste_timing_report():
    """Not a check: prints the vectorised paste's time against the per-detection loop (run with -s), in CPU ms on one thread."""
    g = torch.Generator().manual_seed(0)
    boxes = random_boxes(100, 480, 640, g, max_frac=0.5)
    masks = torch.rand(100, 1, 28, 28, generator=g)

    def best_ms(fn, repeat=5):
        """CPU time of the best run, on one thread: steadier than wall time on a shared machine."""
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            fn()
            times = []
            for _ in range(repeat):
                start = time.process_time()
                fn()
                times.append(time.process_time() - start)
        finally:
            torch.set_num_threads(threads)
        return 1000 * min(times)

    fast = best_ms(lambda: paste_masks_in_image(masks, boxes, (480, 640)))
    slow = best_ms(lambda: paste_one_by_one(masks, boxes, (480, 640)))
    print(f"\npaste_masks_in_image, 100 detections, 480x640: vectorised {fast:.1f} ms, loop {slow:.1f} ms")


# ---- TorchScript and tracing -----------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_scripted_paste_equals_eager():
    g = torch.Generator().manual_seed(5)
    boxes = random_boxes(12, 45, 70, g)
    masks = torch.rand(12, 1, 28, 28, generator=g)
    scripted = torch.jit.script(paste_masks_in_image)
    assert torch.equal(scripted(masks, boxes, [45, 70], 1), paste_masks_in_image(masks, boxes, [45, 70]))


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_traced_paste_follows_the_image_size():
    """Traced on one image size, the paste runs at the size of the image given later (export)."""

    def paste(masks, boxes, image):
        return paste_masks_in_image(masks, boxes, [image.shape[-2], image.shape[-1]])

    g = torch.Generator().manual_seed(6)
    masks = torch.rand(5, 1, 28, 28, generator=g)
    traced = torch.jit.trace(paste, (masks, random_boxes(5, 40, 50, g), torch.zeros(3, 40, 50)), check_trace=False)
    boxes = random_boxes(5, 72, 61, g, max_frac=0.9)  # more rows inside boxes than at trace time
    out = traced(masks, boxes, torch.zeros(3, 72, 61))
    assert out.shape == (5, 1, 72, 61)
    assert torch.equal(out, paste_masks_in_image(masks, boxes, (72, 61)))


# ---- the paste op's forms -------------------------------------------------------------------------


@pytest.mark.parametrize("seed,n", [(0, 7), (1, 1), (2, 0)])
def test_every_paste_form_matches_the_reference(seed, n, monkeypatch):
    monkeypatch.setattr(mask_ops, "_rows_per_chunk", lambda width: 3)  # several chunks
    g = torch.Generator().manual_seed(seed)
    boxes = random_boxes(n, 37, 52, g)
    masks = torch.rand(n, 1, 28, 28, generator=g)
    expected = mask_ops.paste_masks_dispatch.reference(masks, boxes, [37, 52], 1)
    assert expected.shape == (n, 1, 37, 52)
    forms = mask_ops.paste_masks_dispatch.implementations()
    assert set(forms) == {"reference", "row_chunks"}
    assert [mask_ops.paste_masks_dispatch.select("cpu", m)[0] for m in ("eager", "trace")] == ["row_chunks", "reference"]
    for name, form in forms.items():
        torch.testing.assert_close(form(masks, boxes, [37, 52], 1), expected, rtol=0, atol=1e-6,
                                   msg=lambda m: f"{name}: {m}")
