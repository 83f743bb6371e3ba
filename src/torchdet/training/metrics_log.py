"""The per-epoch metrics log of a training run (`RUN/metrics.csv`) and its plot (`RUN/plot.png`).

One CSV row per epoch: ``epoch``, ``lr``, ``time_s``, ``train/<loss>``, ``val/<loss>`` and
``<iou_type>/<metric>`` (``bbox/AP``, ``bbox/AP50``...). Columns may appear in later epochs
(the file is rewritten with the union of columns), and a resumed run keeps earlier rows.
"""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

from torchdet.atomic import atomic_path

PathLike = Union[str, os.PathLike]
Row = Dict[str, float]


def read_metrics(path: PathLike) -> List[Row]:
    """The rows of a metrics CSV as floats (empty cells become NaN); [] when there is no file."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{k: _to_float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _to_float(value: Optional[str]) -> float:
    try:
        return float(value) if value not in (None, "") else math.nan
    except ValueError:
        return math.nan


def write_metrics(rows: Sequence[Row], path: PathLike) -> None:
    """Write `rows` (the union of their keys as columns, `epoch` first) atomically to `path`."""
    path = Path(path)
    columns: List[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    columns.sort(key=lambda c: (c != "epoch", c != "lr", c != "time_s", c))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _format(row.get(k, math.nan)) for k in columns})


def _format(value: float) -> str:
    if isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, int) or float(value).is_integer() and abs(value) < 1e12:
        return str(int(value))
    return f"{value:.6g}"


def append_metrics(row: Row, path: PathLike) -> List[Row]:
    """Add `row` to the CSV at `path`, replacing any earlier row of the same epoch; return all rows."""
    rows = [r for r in read_metrics(path) if r.get("epoch") != row.get("epoch")]
    rows.append(row)
    rows.sort(key=lambda r: r.get("epoch", 0))
    write_metrics(rows, path)
    return rows


def plot_metrics(rows: Sequence[Row], path: PathLike) -> Optional[Path]:
    """Draw losses (left) and AP metrics (right) against the epoch into a PNG at `path`.

    Returns the path, or None when matplotlib is not installed (the CSV still has it all).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    path = Path(path)
    epochs = [r["epoch"] for r in rows]
    columns = sorted({k for r in rows for k in r})
    loss_cols = [c for c in columns if c.startswith(("train/", "val/"))]
    ap_cols = [c for c in columns if "/" in c and not c.startswith(("train/", "val/"))
               and c.split("/", 1)[1] in ("AP", "AP50", "AP75")]
    fig, (ax_loss, ax_ap) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = sorted({c.split("/", 1)[1] for c in loss_cols}, key=lambda n: (n != "loss", n))
    colours = {n: f"C{i}" for i, n in enumerate(names)}  # a loss keeps its colour in train and val
    for c in loss_cols:
        ax_loss.plot(epochs, [r.get(c, math.nan) for r in rows], marker="o", markersize=3,
                     linestyle="-" if c.startswith("train/") else "--", color=colours[c.split("/", 1)[1]], label=c)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("losses (solid: train, dashed: validation)")
    if loss_cols:
        ax_loss.legend(fontsize=7)
    for c in ap_cols:
        ax_ap.plot(epochs, [r.get(c, math.nan) for r in rows], marker="o", markersize=3, label=c)
    ax_ap.set_xlabel("epoch")
    ax_ap.set_ylabel("AP")
    ax_ap.set_ylim(0.0, 1.0)
    ax_ap.set_title("validation COCO AP")
    if ap_cols:
        ax_ap.legend(fontsize=7)
    for ax in (ax_loss, ax_ap):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return path
