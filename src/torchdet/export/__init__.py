"""Export detectors to deployable forms: ONNX (legacy or dynamo exporter), ``torch.export``
programs and AOTInductor packages (ONNX needs the `torchdet[export]` extra to run).

Importing this package also teaches torch's default ONNX exporter the torchdet custom ops
(``onnx_dynamo.register_default_translations``), so ``torch.onnx.export(model, (images,), path)``
turns NMS and RoIAlign into ONNX ``NonMaxSuppression`` / ``RoiAlign``.
"""
from torchdet.export.exported_program import export_program, load_program, save_program
from torchdet.export.onnx import DeployableDetector, run_onnx, to_onnx
from torchdet.export.onnx_dynamo import register_default_translations, translation_table

register_default_translations()

__all__ = ["DeployableDetector", "run_onnx", "to_onnx", "export_program", "save_program", "load_program",
           "translation_table", "register_default_translations"]
