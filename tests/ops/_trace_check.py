"""Shared check for the ops tests: a module traces under torch.fx and exports under torch.export."""
from __future__ import annotations

from typing import Sequence

import torch


def assert_traces_and_exports(module: torch.nn.Module, args: Sequence[object], other_args: Sequence[object] = ()) -> None:
    """fx.symbolic_trace and export(strict=False) give the eager output (also on ``other_args``)."""
    expected = module(*args)
    traced = torch.fx.symbolic_trace(module)
    torch.testing.assert_close(traced(*args), expected)
    exported = torch.export.export(module, tuple(args), strict=False).module()
    torch.testing.assert_close(exported(*args), expected)
    if other_args:
        torch.testing.assert_close(exported(*other_args), module(*other_args))
