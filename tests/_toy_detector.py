"""A toy detector with the torchvision detection contract, for fast tests of training, evaluation
and inference.

It is built through a "module:function" builder name (`_toy_detector:toy_detector`), has
BatchNorm (to check evaluation modes), and draws random numbers in training (to check that
resuming restores the random state). It learns a little; it is not meant to detect well.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BUILDER = "_toy_detector:toy_detector"


class ToyDetector(nn.Module):
    def __init__(self, num_classes: int, num_queries: int = 4, size: int = 32) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_queries = num_queries
        self.size = size
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.box_head = nn.Linear(8 * 16, num_queries * 4)
        self.cls_head = nn.Linear(8 * 16, num_queries * num_classes)

    def forward(self, images: List[Tensor], targets: Optional[List[Dict[str, Tensor]]] = None) -> Any:
        x = torch.stack([F.interpolate(img[None], size=(self.size, self.size), mode="bilinear",
                                       align_corners=False)[0] for img in images])
        f = self.features(x)
        rel = torch.sigmoid(self.box_head(f)).view(-1, self.num_queries, 4)  # x, y, w, h in 0..1
        logits = self.cls_head(f).view(-1, self.num_queries, self.num_classes)
        sizes = torch.tensor([[img.shape[-1], img.shape[-2]] * 2 for img in images], dtype=torch.float32)
        xyxy = torch.cat([rel[..., :2] * 0.5, rel[..., :2] * 0.5 + rel[..., 2:] * 0.5], dim=-1)
        if self.training:
            assert targets is not None
            box_losses, cls_losses = [], []
            for i, t in enumerate(targets):
                order = torch.randperm(self.num_queries)  # random: checks the RNG state on resume
                n = min(len(t["boxes"]), self.num_queries)
                labels = torch.zeros(self.num_queries, dtype=torch.int64)
                labels[order[:n]] = t["labels"][:n]
                cls_losses.append(F.cross_entropy(logits[i], labels))
                if n:
                    gt = t["boxes"][:n] / sizes[i]
                    box_losses.append(F.l1_loss(xyxy[i, order[:n]], gt))
            box = torch.stack(box_losses).mean() if box_losses else xyxy.sum() * 0
            return {"loss_classifier": torch.stack(cls_losses).mean(), "loss_box_reg": box}
        probs = logits.softmax(-1)[..., 1:]
        scores, labels = probs.max(-1)
        return [{"boxes": xyxy[i] * sizes[i], "scores": scores[i], "labels": labels[i] + 1}
                for i in range(len(images))]


def toy_detector(*, weights: Any = None, weights_backbone: Any = None, num_classes: int = 91,
                 num_queries: int = 4, **kwargs: Any) -> ToyDetector:
    assert weights is None and weights_backbone is None
    return ToyDetector(num_classes, num_queries)
