"""torchdet: object detection in pure PyTorch, checkpoint-compatible with torchvision's detection zoo."""

__version__ = "0.1.0"
