"""Inference: load a model from `--weights` (a run checkpoint, a weights-only file or a published
weights name) and predict on images.

`torchdet.inference.api.predict` is what `torchdet predict` runs; `predict_images` runs a model
already in memory; `to_coco_results` is the detections' file format.
"""
from torchdet.inference.coco_results import to_coco_results
from torchdet.inference.loading import load_inference_model, load_weights
from torchdet.inference.predict import PredictResult, expand_sources, predict_images

__all__ = ["load_inference_model", "load_weights", "predict_images", "PredictResult", "expand_sources",
           "to_coco_results"]
