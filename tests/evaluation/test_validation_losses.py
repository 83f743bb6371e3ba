"""evaluate_model(with_losses=True): the validation losses come from the detections' own forward."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from _tiny_shapes import make_tiny_shapes
from torchdet.data.formats import open_dataset
from torchdet.evaluation.evaluate import evaluate_model
from torchdet.models.tiny import fasterrcnn_tiny, fcos_tiny


class _Plain(nn.Module):
    """A detector without forward_with_losses: evaluation falls back to a second, training-mode forward."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args):  # noqa: ANN201, ANN002
        return self.model(*args)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):
    files = make_tiny_shapes(Path(tmp_path_factory.mktemp("shapes")), train=1, val=6)
    return open_dataset("coco", str(files["val"]), role="val")


@pytest.mark.parametrize("builder", [fcos_tiny, fasterrcnn_tiny])
def test_one_backbone_pass_per_batch_and_the_same_detections(builder, dataset) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    names = list(dataset.categories)
    model = builder(num_classes=len(names), min_size=64, max_size=64).eval()
    calls = []
    model.backbone.register_forward_hook(lambda *_: calls.append(1))

    def run(m: nn.Module, with_losses: bool):
        calls.clear()
        result = evaluate_model(m, dataset, device=torch.device("cpu"), model_categories=names, batch_size=4,
                                with_losses=with_losses)
        return result, len(calls)

    plain, plain_calls = run(model, False)
    with_losses, loss_calls = run(model, True)
    fallback, fallback_calls = run(_Plain(model), True)
    assert plain_calls == loss_calls == 2  # 6 images in batches of 4
    assert fallback_calls == 4
    assert with_losses.detections == plain.detections
    assert sorted(with_losses.losses) == sorted(fallback.losses)
    assert all(torch.isfinite(torch.tensor(v)) for v in with_losses.losses.values())
    assert not model.training
