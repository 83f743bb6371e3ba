"""`torchdet models` lists the builders with their meta."""
from __future__ import annotations

import json

from torchdet.cli import main
from torchdet.models.registry import list_models


def test_table_lists_every_builder(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in list_models(module="torchdet.models"):
        assert name in out
    assert "fcos_tiny" in out and "box AP" in out


def test_json_and_filter(capsys):
    assert main(["models", "maskrcnn", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["builder"] for r in rows] == ["maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2"]
    assert rows[0]["outputs"] == ["boxes", "masks"] and rows[0]["box_ap"] == 37.9
