"""`torchdet models`: the detection builders and the meta of their published weights."""
from __future__ import annotations

import argparse
import fnmatch
import json
from typing import Any, Dict, List


def model_rows() -> List[Dict[str, Any]]:
    """One dict per registered detector: name, outputs, input size, weights names, params, GFLOPs,
    COCO AP, file size (None where it has no published weights)."""
    from torchdet.models.registry import registered_models

    rows = []
    for record in registered_models("detection"):
        row: Dict[str, Any] = {"builder": record.name, "outputs": list(record.outputs),
                               "input_size": "x".join(map(str, record.fixed_size)) if record.fixed_size else "free",
                               "weights": [], "default_weights": None, "num_classes": None, "params_m": None,
                               "gflops": None, "box_ap": None, "mask_ap": None, "kp_ap": None, "file_mb": None}
        enum = record.weights
        if enum is not None:
            meta = enum.DEFAULT.meta
            metrics = next(iter(meta.get("_metrics", {}).values()), {})
            row.update({
                "weights": [m for m in enum.__members__ if m != "DEFAULT"],
                "default_weights": f"{enum.__name__}.{enum.DEFAULT.name}",
                "num_classes": len(meta.get("categories", [])),
                "params_m": round(meta.get("num_params", 0) / 1e6, 1),
                "gflops": meta.get("_ops"),
                "box_ap": metrics.get("box_map"),
                "mask_ap": metrics.get("mask_map"),
                "kp_ap": metrics.get("kp_map"),
                "file_mb": meta.get("_file_size"),
            })
        rows.append(row)
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(value) or "-"
    return str(value)


def format_table(rows: List[Dict[str, Any]]) -> str:
    columns = [("builder", "builder"), ("outputs", "outputs"), ("input_size", "input"), ("params_m", "params(M)"),
               ("gflops", "GFLOPs"), ("box_ap", "box AP"), ("mask_ap", "mask AP"), ("kp_ap", "kp AP"),
               ("file_mb", "file(MB)"), ("weights", "weights")]
    cells = [[_cell(r[k]) for k, _ in columns] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (_, h) in enumerate(columns)]
    lines = ["  ".join(h.ljust(w) for (_, h), w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    rows = model_rows()
    if args.pattern:
        rows = [r for r in rows if any(fnmatch.fnmatch(r["builder"], p if any(c in p for c in "*?[") else f"*{p}*")
                                       for p in args.pattern)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(format_table(rows))
    tiny = [r["builder"] for r in model_rows() if r["default_weights"] is None]
    print("\nAP: COCO val2017 of the published weights (DEFAULT). input: free (the short side is resized) "
          f"or the fixed size every image is resized to. {' / '.join(tiny)} are small from-scratch detectors "
          "(no published weights).\nUse a builder with `torchdet train --model NAME`, "
          "or its weights with `torchdet predict --model NAME --weights DEFAULT`.")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="list the model builders and their weights' meta",
                                   description="List the detection builders: what they predict, parameters, "
                                               "GFLOPs and COCO AP of their published weights.")
    parser.add_argument("pattern", nargs="*", help="only builders matching these names or fnmatch patterns")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)
