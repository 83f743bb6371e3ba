import math

import torch
import torch.nn.functional as F
from torch import nn

from torchdet.models import roi_heads
from torchdet.models.roi_heads import RoIHeads, fastrcnn_loss


class _FlatPool(nn.Module):
    """A stand-in RoI pool: [R, C, 2, 2] features from each box's coordinates (no ops dependency)."""

    def forward(self, features, boxes, image_shapes):
        b = torch.cat(boxes)
        return (b / 64.0).repeat(1, 4).view(-1, 4, 2, 2)


class _Head(nn.Module):
    def forward(self, x):
        return x.flatten(1)


class _Predictor(nn.Module):
    def __init__(self, num_classes=3):
        super().__init__()
        self.cls_score = nn.Linear(16, num_classes)
        self.bbox_pred = nn.Linear(16, num_classes * 4)

    def forward(self, x):
        return self.cls_score(x), self.bbox_pred(x)


def _heads(**kw):
    torch.manual_seed(0)
    args = dict(fg_iou_thresh=0.5, bg_iou_thresh=0.5, batch_size_per_image=512, positive_fraction=0.25,
                bbox_reg_weights=None, score_thresh=0.05, nms_thresh=0.5, detections_per_img=100)
    args.update(kw)
    return RoIHeads(_FlatPool(), _Head(), _Predictor(), **args)


def test_fastrcnn_loss_hand_checked():
    logits = torch.zeros(3, 3)
    regression = torch.zeros(3, 12)
    regression[0, 4:8] = torch.tensor([1.0, 0.0, 0.0, 0.0])  # class 1 deltas of the positive
    labels = [torch.tensor([1, 0]), torch.tensor([0])]
    targets = [torch.zeros(2, 4), torch.zeros(1, 4)]
    cls_loss, box_loss = fastrcnn_loss(logits, regression, labels, targets)
    assert math.isclose(float(cls_loss), math.log(3.0), rel_tol=1e-6)
    # smooth L1 (beta 1/9) of 1.0 is 1 - 0.5/9, divided by the 3 sampled proposals.
    assert math.isclose(float(box_loss), (1 - 0.5 / 9) / 3, rel_tol=1e-6)


def test_postprocess_drops_background_thresholds_and_caps():
    heads = _heads(score_thresh=0.2, detections_per_img=2)
    logits = torch.tensor([[0.0, 5.0, 0.0], [0.0, 0.0, 5.0], [5.0, 0.0, 0.0], [0.0, 4.0, 0.0]])
    proposals = [torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50], [60, 0, 70, 10]])]
    boxes, scores, labels = heads.postprocess_detections(logits, torch.zeros(4, 12), proposals, [(100, 100)])
    assert labels[0].tolist() == [1, 2] and boxes[0].shape == (2, 4)
    torch.testing.assert_close(scores[0], F.softmax(logits, -1)[[0, 1], [1, 2]])
    assert labels[0].dtype == torch.int64


def test_postprocess_clips_to_image():
    heads = _heads(score_thresh=0.0)
    boxes, _, _ = heads.postprocess_detections(torch.zeros(1, 3), torch.zeros(1, 12),
                                               [torch.tensor([[-5.0, -5.0, 50.0, 40.0]])], [(30, 20)])
    assert boxes[0].tolist() == [[0.0, 0.0, 20.0, 30.0]] * 2


def test_training_adds_gt_and_handles_empty_image():
    heads = _heads().train()
    proposals = [torch.tensor([[0.0, 0, 10, 10], [30, 30, 40, 40]]), torch.tensor([[0.0, 0, 10, 10]])]
    targets = [{"boxes": torch.tensor([[1.0, 1.0, 10.0, 10.0]]), "labels": torch.tensor([2])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    props, matched, labels, reg = heads.select_training_samples(proposals, targets)
    assert [len(p) for p in props] == [3, 1]  # the gt box is appended as a proposal
    assert sorted(labels[0].tolist()) == [0, 2, 2] and labels[1].tolist() == [0]
    result, losses = heads({"0": torch.zeros(2, 1, 8, 8)}, proposals, [(64, 64), (64, 64)], targets)
    assert result == [] and set(losses) == {"loss_classifier", "loss_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values())
    losses["loss_classifier"].backward()


def test_eval_forward_outputs():
    heads = _heads(score_thresh=0.0).eval()
    proposals = [torch.tensor([[0.0, 0, 10, 10], [30, 30, 40, 40]]), torch.zeros(0, 4)]
    result, losses = heads({"0": torch.zeros(2, 1, 8, 8)}, proposals, [(64, 64), (64, 64)])
    assert losses == {} and len(result) == 2
    assert set(result[0]) == {"boxes", "labels", "scores"} and len(result[0]["boxes"]) == 4
    assert result[1]["boxes"].shape == (0, 4)


def test_every_conv_head_form_matches_the_reference(monkeypatch):
    monkeypatch.setattr(roi_heads, "_ROI_CHUNK_BYTES", 3 * 4 * 8 * 14 * 14 * 4)  # chunks of 3 RoIs
    torch.manual_seed(0)
    head = nn.Sequential(nn.Conv2d(8, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1)).eval()
    predictor = nn.ConvTranspose2d(6, 4, 2, stride=2).eval()
    pooled = torch.randn(10, 8, 14, 14)
    forms = roi_heads.conv_head_dispatch.implementations()
    assert set(forms) == {"reference", "channels_last_chunks"}
    with torch.no_grad():
        expected = predictor(head(pooled))
        for name, form in forms.items():
            out = form(head, predictor, pooled)
            assert out.is_contiguous(), name
            torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5, msg=lambda m: f"{name}: {m}")
