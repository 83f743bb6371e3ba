"""Training, evaluation and prediction: the toolkit behind `torchdet train / evaluate / predict`.

The four functions below are the Python face of the CLI commands; the classes are the parts
they are built from, for users who write their own loop.
"""
from torchdet.engine.api import evaluate, predict, resume, train
from torchdet.engine.checkpoint import load_checkpoint, save_checkpoint
from torchdet.engine.coco_eval import evaluate_coco
from torchdet.engine.ema import ModelEMA
from torchdet.engine.evaluate import evaluate_model
from torchdet.engine.predict import predict_images
from torchdet.engine.schedulers import WarmupScheduler
from torchdet.engine.train import ModelSpec, TrainConfig, Trainer

__all__ = [
    "train", "resume", "evaluate", "predict",
    "TrainConfig", "Trainer", "ModelSpec", "ModelEMA", "WarmupScheduler",
    "save_checkpoint", "load_checkpoint", "evaluate_model", "evaluate_coco", "predict_images",
]
