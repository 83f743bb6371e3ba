"""Training: `train` / `resume` (what `torchdet train` runs) and the parts of the loop.

The classes are for users who write their own loop; the run checkpoint they write is
`torchdet.checkpoint.RunCheckpoint`.
"""
from torchdet.checkpoint import ModelSpec
from torchdet.training.api import resume, train
from torchdet.training.ema import ModelEMA
from torchdet.training.loop import TrainConfig, Trainer, TrainResult
from torchdet.training.schedulers import WarmupScheduler

__all__ = ["train", "resume", "TrainConfig", "Trainer", "TrainResult", "ModelSpec", "ModelEMA", "WarmupScheduler"]
