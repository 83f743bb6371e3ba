"""Options and error handling shared by the train / evaluate / predict / demo commands."""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import traceback
from typing import Any, Callable, Dict, List, Optional

# What a user can get wrong (paths, file contents, options); shown as one line, not a traceback.
USER_ERRORS = (ValueError, OSError, FloatingPointError, ImportError, NotImplementedError)


def reports_errors(command: str) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    """Turn user errors raised by a command into `torchdet COMMAND: error: ...` and exit code 1.

    Set TORCHDET_DEBUG=1 to see the traceback.
    """
    def wrap(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        @functools.wraps(func)
        def run(args: argparse.Namespace) -> int:
            try:
                return func(args)
            except USER_ERRORS as e:
                if os.environ.get("TORCHDET_DEBUG"):
                    traceback.print_exc()
                print(f"torchdet {command}: error: {e}", file=sys.stderr)
                return 1
        return run
    return wrap


def parse_value(text: str) -> Any:
    """A command-line value as JSON when it parses (3, 0.5, true, [1, 2]), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def model_kwargs(pairs: Optional[List[str]], **named: Any) -> Dict[str, Any]:
    """`--model-arg KEY=VALUE` pairs plus the named options that were given (not None)."""
    kwargs: Dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--model-arg {pair!r}: expected KEY=VALUE, e.g. --model-arg box_detections_per_img=50")
        kwargs[key.strip()] = parse_value(value.strip())
    kwargs.update({k: v for k, v in named.items() if v is not None})
    return kwargs


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None,
                        help="cpu, cuda, cuda:1, mps... (default: cuda when available, else cpu)")


def add_workers(parser: argparse.ArgumentParser, default: int) -> None:
    parser.add_argument("--workers", type=int, default=default, metavar="N",
                        help=f"data-loading processes (default {default}; 0 loads in the main process)")


def add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--min-size", type=int, default=None, metavar="PX",
                        help="resize images so the short side is PX (the model's min_size)")
    parser.add_argument("--max-size", type=int, default=None, metavar="PX", help="cap on the long side (max_size)")
    parser.add_argument("--model-arg", action="append", default=None, metavar="KEY=VALUE",
                        help="any other builder keyword, e.g. --model-arg box_detections_per_img=50 (repeatable)")


def add_dataset_args(parser: argparse.ArgumentParser, *, val: bool) -> None:
    parser.add_argument("--format", choices=("coco", "voc", "yolo"), default="coco",
                        help="annotation format (default coco): coco = a JSON file; voc = a VOCdevkit year "
                             "folder or a folder of XML files; yolo = a data.yaml or an images folder")
    parser.add_argument("--images", default=None, metavar="DIR",
                        help="folder of the images (default: the annotation file's folder for COCO)")
    parser.add_argument("--split", default=None, help="VOC devkit split, e.g. train / trainval")
    if val:
        parser.add_argument("--val-images", default=None, metavar="DIR", help="folder of the validation images")
        parser.add_argument("--val-split", default=None, help="VOC devkit split of the validation set, e.g. val")
    parser.add_argument("--skip-bad-images", action="store_true",
                        help="skip (and count) missing or unreadable images instead of stopping")
