"""loop_over_batch: a one-image ONNX graph becomes a graph with a free batch axis."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Tuple

import pytest
import torch
from torch import Tensor, nn

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from torchdet.export.batch_loop import loop_over_batch  # noqa: E402
from torchdet.export.onnx import run_onnx  # noqa: E402


class PerImage(nn.Module):
    """One image ``[1, 3, H, W]`` -> its channel means ``[1, 3]``, a padded top-k of the pixels of
    channel 0 above 0.5 ``[1, 4]`` and their count ``[1]`` (data-dependent, as NMS output is)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([1.0, 2.0, 3.0]))

    def forward(self, images: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        means = images.mean(dim=(2, 3)) * self.scale
        values = images[0, 0].flatten()
        kept = values[values > 0.5]
        top = torch.cat([kept, kept.new_zeros(4)])[:4]
        count = torch.ones_like(kept, dtype=torch.int64).sum()
        return means, top[None], count[None]


def _export(tmp_path: Path, opset: int) -> Path:
    one = tmp_path / "one.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(PerImage(), (torch.rand(1, 3, 2, 3),), str(one), opset_version=opset, dynamo=False,
                          input_names=["images"], output_names=["means", "top", "count"],
                          dynamic_axes={"images": {2: "height", 3: "width"}})
    looped = tmp_path / "looped.onnx"
    onnx.save(loop_over_batch(onnx.load(str(one))), str(looped))
    return looped


@pytest.mark.parametrize("opset", [11, 17])
@pytest.mark.parametrize("batch", [1, 3])
def test_outputs_are_the_per_image_outputs_stacked(tmp_path: Path, opset: int, batch: int) -> None:
    path = _export(tmp_path, opset)
    images = torch.rand(batch, 3, 4, 5, generator=torch.Generator().manual_seed(batch))
    outputs = run_onnx(path, images)
    per_image = [PerImage()(images[i:i + 1]) for i in range(batch)]
    for k, name in enumerate(("means", "top", "count")):
        expected = torch.cat([p[k] for p in per_image]).detach()
        assert outputs[name].shape == expected.shape
        torch.testing.assert_close(outputs[name], expected)


def test_weights_are_stored_once(tmp_path: Path) -> None:
    looped = onnx.load(str(_export(tmp_path, 17)))
    names = [t.name for t in looped.graph.initializer]
    assert len(names) == len(set(names))
    assert any(t.dims == [3] for t in looped.graph.initializer)  # the parameter, in the outer graph


class Add(nn.Module):
    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return a + b


def test_a_graph_with_other_inputs_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "two.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Add(), (torch.rand(1, 2), torch.rand(1, 2)), str(path), dynamo=False,
                          input_names=["a", "b"])
    with pytest.raises(ValueError, match="single input 'images'"):
        loop_over_batch(onnx.load(str(path)))
