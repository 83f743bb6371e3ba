"""Same seed, same initial weights: each builder's random init matches torchvision's.

``oracle/golden/seeded_init.json`` holds, per builder, torchvision's state_dict after
``torch.manual_seed(0)`` and ``builder(weights=None, weights_backbone=None)``: each tensor's shape,
its sum and sum of squares (float64) and its first four values. A model that creates and
initialises its parameters in torchvision's order, with the same distributions, draws the same
random numbers and matches: sums to a relative 1e-6, first values exactly.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, List

import pytest
import torch

import torchdet.models as models

SEEDED_INIT = Path(__file__).parents[1] / "oracle" / "golden" / "seeded_init.json"

BUILDERS = ["fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2", "fasterrcnn_mobilenet_v3_large_fpn",
            "fasterrcnn_mobilenet_v3_large_320_fpn", "maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2",
            "keypointrcnn_resnet50_fpn", "retinanet_resnet50_fpn", "retinanet_resnet50_fpn_v2", "fcos_resnet50_fpn",
            "ssd300_vgg16", "ssdlite320_mobilenet_v3_large"]


@pytest.fixture(scope="module")
def seeded_init() -> Dict[str, Dict[str, Dict[str, Any]]]:
    with open(SEEDED_INIT) as f:
        return json.load(f)["builders"]


def mismatches(state_dict: Dict[str, torch.Tensor], expected: Dict[str, Dict[str, Any]]) -> List[str]:
    """Keys whose shape, sum, sum of squares or first four values differ from the oracle's."""
    problems = [f"{key}: missing" for key in expected if key not in state_dict]
    problems += [f"{key}: not in torchvision's state_dict" for key in state_dict if key not in expected]
    for key, facts in expected.items():
        if key not in state_dict:
            continue
        tensor = state_dict[key]
        values = tensor.detach().to(torch.float64).flatten()
        if list(tensor.shape) != facts["shape"]:
            problems.append(f"{key}: shape {list(tensor.shape)}, expected {facts['shape']}")
            continue
        total, total_sq = values.sum().item(), (values * values).sum().item()
        if not math.isclose(total, facts["sum"], rel_tol=1e-6, abs_tol=1e-9):
            problems.append(f"{key}: sum {total}, expected {facts['sum']}")
        elif not math.isclose(total_sq, facts["sumsq"], rel_tol=1e-6, abs_tol=1e-9):
            problems.append(f"{key}: sum of squares {total_sq}, expected {facts['sumsq']}")
        elif values[:4].tolist() != facts["head"]:
            problems.append(f"{key}: first values {values[:4].tolist()}, expected {facts['head']}")
    return problems


def test_oracle_covers_the_twelve_builders(seeded_init: Dict[str, Dict[str, Dict[str, Any]]]) -> None:
    assert sorted(seeded_init) == sorted(BUILDERS)


@pytest.mark.parametrize("name", BUILDERS)
def test_seeded_init_matches_torchvision(name: str, seeded_init: Dict[str, Dict[str, Dict[str, Any]]]) -> None:
    torch.manual_seed(0)
    model = getattr(models, name)(weights=None, weights_backbone=None)
    problems = mismatches(model.state_dict(), seeded_init[name])
    assert not problems, f"{len(problems)} tensors differ from torchvision's seeded init:\n" + "\n".join(problems[:10])


def test_mismatches_reports_a_changed_tensor() -> None:
    expected = {"w": {"shape": [2], "sum": 3.0, "sumsq": 5.0, "head": [1.0, 2.0]}}
    assert mismatches({"w": torch.tensor([1.0, 2.0])}, expected) == []
    assert mismatches({"w": torch.tensor([2.0, 1.0])}, expected) == ["w: first values [2.0, 1.0], expected [1.0, 2.0]"]
    assert mismatches({}, expected) == ["w: missing"]
