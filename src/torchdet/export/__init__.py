"""Export detectors to deployable graphs (ONNX; needs the `torchdet[export]` extra to run)."""
from torchdet.export.onnx import DeployableDetector, run_onnx, to_onnx

__all__ = ["DeployableDetector", "run_onnx", "to_onnx"]
