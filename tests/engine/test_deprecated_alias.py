"""torchdet.engine: the old names still work, with a DeprecationWarning naming the new place."""
import pytest
import torch

import torchdet.engine as engine
from torchdet.checkpoint import RunCheckpoint
from torchdet.training import TrainConfig


def test_old_names_resolve_to_the_new_modules_with_a_warning():
    with pytest.warns(DeprecationWarning, match="torchdet.training.loop.TrainConfig"):
        assert engine.TrainConfig is TrainConfig
    with pytest.warns(DeprecationWarning, match="torchdet.inference.api.predict"):
        from torchdet.inference.api import predict
        assert engine.predict is predict
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        engine.nope


def test_old_checkpoint_functions_go_through_run_checkpoint(tmp_path):
    path = tmp_path / "old.pt"
    with pytest.warns(DeprecationWarning):
        engine.save_checkpoint({"model": {"w": torch.ones(1)}, "builder": "fcos_tiny",
                                "builder_kwargs": {"num_classes": 2}, "categories": ["circle"]}, path)
    assert RunCheckpoint.load(path).categories == ["__background__", "circle"]
    with pytest.warns(DeprecationWarning):
        assert engine.load_checkpoint(path)["categories"] == ["__background__", "circle"]
