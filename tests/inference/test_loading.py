"""Loading `--weights`: weights that do not fit say what differs and what to pass."""
import pytest
import torch
from torch import nn

from torchdet.checkpoint import RunCheckpoint
from torchdet.inference.loading import load_inference_model, load_weights


def test_mismatched_weights_say_what_differs():
    model = nn.Sequential(nn.Linear(2, 3))
    other = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1)).state_dict()
    with pytest.raises(ValueError, match="another architecture") as info:
        load_weights(model, other, "'x.pt'")
    message = str(info.value)
    assert "'x.pt'" in message and "other shapes" in message and "not in the model" in message
    assert "--num-classes" in message


def test_a_weights_only_file_needs_the_builder(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"model": {"w": torch.ones(1)}}, path)
    with pytest.raises(ValueError, match="holds weights only.*--model NAME"):
        load_inference_model(str(path))


def test_a_checkpoint_loads_as_its_recorded_builder(tmp_path):
    from torchdet.models.registry import build_model

    kwargs = {"num_classes": 3, "min_size": 64, "max_size": 64}
    model = build_model("fcos_tiny", kwargs)
    path = RunCheckpoint(model=model.state_dict(), builder="fcos_tiny", builder_kwargs=kwargs,
                         categories=["circle", "square"]).save(tmp_path / "best.pt")  # schema-0 style names
    loaded, spec, ckpt = load_inference_model(str(path))
    assert not loaded.training and spec.builder == "fcos_tiny"
    assert spec.categories == ["__background__", "circle", "square"] == ckpt.categories
