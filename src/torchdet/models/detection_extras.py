"""Per-detection extras, opt-in: every class's probabilities and a feature vector per detection.

A detector's ``detection_extras`` (default ``()``: nothing added, nothing computed) names what
its eval detections also carry, one row per detection:

- ``"scores_all"`` ``[D, num_classes]``: the probabilities of every class at the detection's
  RoI / anchor, on the scale of ``scores`` (``scores[i] == scores_all[i, labels[i]]``).
- ``"features"`` ``[D, F]``: the representation the classifier read for the detection.

Eager only: scripted, traced and exported models return what they always did (the extras are
off while tracing).
"""
from __future__ import annotations

import contextlib
from typing import Iterable, Iterator, List, Tuple

import torch
from torch import Tensor, nn

__all__ = ["DETECTION_EXTRAS", "check_extras", "active_extras", "captured_outputs", "features_at_anchors", "features_at_points"]

DETECTION_EXTRAS = ("scores_all", "features")


def check_extras(extras: Iterable[str]) -> Tuple[str, ...]:
    """``extras`` as a tuple, refusing a name that is not one of :data:`DETECTION_EXTRAS`."""
    if isinstance(extras, str):
        raise ValueError(f"detection_extras must be a sequence of names, got the string {extras!r}; "
                         f"write detection_extras = ({extras!r},)")
    chosen = tuple(extras)
    unknown = [name for name in chosen if name not in DETECTION_EXTRAS]
    if unknown:
        raise ValueError(f"unknown detection extras {unknown}; choose from {list(DETECTION_EXTRAS)}")
    return chosen


def active_extras(extras: Iterable[str]) -> Tuple[str, ...]:
    """The extras to compute now: ``extras`` (checked), or none while tracing (exports keep their outputs)."""
    chosen = check_extras(extras)
    return () if torch.jit.is_tracing() else chosen


@contextlib.contextmanager
def captured_outputs(module: nn.Module) -> Iterator[List[Tensor]]:
    """Collect ``module``'s outputs, call by call, while the block runs (e.g. a head tower, once per level)."""
    outputs: List[Tensor] = []
    handle = module.register_forward_hook(lambda _module, _inputs, output: outputs.append(output))
    try:
        yield outputs
    finally:
        handle.remove()


def features_at_anchors(maps: List[Tensor], image: int, anchor_index: Tensor, num_anchors: int) -> Tensor:
    """The ``[D, C]`` feature vectors of ``[D]`` anchors of ``image``, each at its own level and cell.

    ``maps`` are per level ``[N, C, H_l, W_l]``; the ``num_anchors`` anchors are numbered level by
    level, cells row-major, then the cell's ``A`` anchors (``A`` the same on every level), as
    dense heads order their outputs.
    """
    cells = [m.shape[-2] * m.shape[-1] for m in maps]
    anchors_per_cell = num_anchors // sum(cells)
    out = maps[0].new_zeros((anchor_index.numel(), maps[0].shape[1]))
    start = 0
    for level_map, level_cells in zip(maps, cells):
        rows = level_cells * anchors_per_cell
        in_level = (anchor_index >= start) & (anchor_index < start + rows)
        cell = torch.div(anchor_index[in_level] - start, anchors_per_cell, rounding_mode="floor")
        width = level_map.shape[-1]
        y, x = torch.div(cell, width, rounding_mode="floor"), cell % width
        out[in_level] = level_map[image][:, y, x].t()
        start += rows
    return out


def features_at_points(maps: List[Tensor], image: int, points: Tensor, image_size: Tuple[int, int]) -> Tensor:
    """``[D, sum_l C_l]``: every level's feature vector at the cell holding each of ``[D, 2]`` (x, y) points.

    ``maps`` are per level ``[N, C_l, H_l, W_l]`` covering an ``(H, W)`` ``image_size``; a point
    ``(x, y)`` falls in cell ``(floor(x / W * W_l), floor(y / H * H_l))``, clamped to the map.
    """
    height, width = image_size
    parts: List[Tensor] = []
    for level_map in maps:
        h_l, w_l = level_map.shape[-2], level_map.shape[-1]
        x = (points[:, 0] / width * w_l).floor().long().clamp(0, w_l - 1)
        y = (points[:, 1] / height * h_l).floor().long().clamp(0, h_l - 1)
        parts.append(level_map[image][:, y, x].t())
    return torch.cat(parts, dim=1)
