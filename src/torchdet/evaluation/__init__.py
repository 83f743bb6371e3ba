"""Evaluation: COCO AP/AR of a detector on a dataset (pycocotools' COCOeval).

`torchdet.evaluation.api.evaluate` is what `torchdet evaluate` runs; `evaluate_model` scores a
model already in memory, `evaluate_coco` scores COCO results.
"""
from torchdet.evaluation.coco_eval import CocoMetrics, evaluate_coco, format_metrics
from torchdet.evaluation.evaluate import EvalResult, evaluate_model

__all__ = ["evaluate_model", "EvalResult", "evaluate_coco", "CocoMetrics", "format_metrics"]
