"""Every command answers --help."""
from __future__ import annotations

import pytest

from torchdet.cli import build_parser, main

COMMANDS = ["models", "train", "evaluate", "predict", "demo"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: torchdet {command}")


def test_top_level_lists_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert command in out
    assert {"train", "evaluate", "predict"} <= set(build_parser()._subparsers._group_actions[0].choices)
