"""The model registry, under the zoo's namespace: ``from torchdet.models.registry import register_model``.

It is defined in ``torchdet.weights.registry`` because the backbones register too, and they are
imported by ``torchdet.models`` (so they cannot import this package while it loads).
"""
from torchdet.weights.registry import (
    DETECTION_OUTPUTS,
    TASKS,
    ModelRecord,
    build_model,
    builder_accepts,
    get_model,
    get_model_builder,
    get_model_record,
    get_model_weights,
    get_weight,
    list_models,
    model_outputs,
    outputs_of,
    record_of,
    register_model,
    registered_models,
)

__all__ = [
    "ModelRecord", "register_model", "registered_models", "get_model_record", "record_of", "outputs_of",
    "list_models", "get_model_builder", "get_model", "get_model_weights", "get_weight",
    "build_model", "builder_accepts", "model_outputs", "TASKS", "DETECTION_OUTPUTS",
]
