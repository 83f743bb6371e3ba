"""`torchdet data`: look at a dataset before training on it, and convert it between formats.

    torchdet data check train/_annotations.coco.json --model fasterrcnn_resnet50_fpn --out runs/check
    torchdet data convert train/_annotations.coco.json --to yolo --out datasets/shapes-yolo

`check` lists missing or unreadable images; degenerate, non-finite, out-of-image and duplicate
boxes; images without objects; the boxes per class; and the box sizes (after the model's
resize, against its anchor sizes, with --model). It exits with 1 when something would break
training or silently lose annotations, 0 otherwise. With --out it writes report.json and
box_sizes.png there.

`convert` writes the dataset as COCO, YOLO or Pascal VOC (boxes and class names; images are
copied) into a new folder.

DATA is a COCO JSON file, a YOLO data.yaml or images folder, or a VOC folder; the format is
guessed from it unless --format says.
"""
from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

from torchdet.cli._args import reports_errors


def guess_format(data: str) -> str:
    """``"coco"`` for a .json file, ``"yolo"`` for a .yaml file or a folder of images with a
    ``labels`` sibling, ``"voc"`` for a folder with ``Annotations/``, XML files or ``VOCdevkit/``."""
    path = Path(data)
    if path.suffix.lower() == ".json":
        return "coco"
    if path.suffix.lower() in (".yaml", ".yml"):
        return "yolo"
    if path.is_dir():
        if (path / "Annotations").is_dir() or (path / "VOCdevkit").is_dir() or any(path.glob("*.xml")):
            return "voc"
        if "images" in path.parts or (path / "images").is_dir():
            return "yolo"
    raise ValueError(f"cannot tell the format of '{data}'; pass --format coco|voc|yolo")


def _open(args: argparse.Namespace):
    from torchdet.data.formats import open_dataset

    fmt = args.format or guess_format(args.data)
    data = args.data
    if fmt == "yolo" and Path(data).is_dir() and (Path(data) / "images").is_dir():
        data = str(Path(data) / "images")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # every problem the loader warns about is in the report
        return open_dataset(fmt, data, role="val" if args.split == "val" else "train", images=args.images,
                            split=args.split, skip_bad_images=True)


@reports_errors("data check")
def run_check(args: argparse.Namespace) -> int:
    from torchdet.data.check import check_dataset, plot_box_sizes

    dataset = _open(args)
    model = None
    if args.model:
        from torchdet.models.registry import build_model

        model = build_model(args.model, {"num_classes": dataset.num_classes})
    report = check_dataset(dataset, decode=not args.no_decode, model=model)
    report.source = args.data
    print(report.format())
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(report.to_dict(), indent=1))
        plot_box_sizes(report, out / "box_sizes.png")
        print(f"wrote {out / 'report.json'} and {out / 'box_sizes.png'}")
    return 0 if report.ok else 1


@reports_errors("data convert")
def run_convert(args: argparse.Namespace) -> int:
    from torchdet.data.convert import convert_dataset

    summary = convert_dataset(_open(args), args.to, Path(args.out))
    dropped = f", {summary.dropped_boxes} box(es) without area dropped" if summary.dropped_boxes else ""
    print(f"wrote {summary.images} images and {summary.boxes} boxes as {summary.fmt}: {summary.out}{dropped}")
    return 0


def _add_source(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="COCO JSON, YOLO data.yaml / images folder, or VOC folder")
    parser.add_argument("--format", choices=("coco", "voc", "yolo"), default=None, help="default: guessed from DATA")
    parser.add_argument("--images", default=None, metavar="DIR", help="folder of the images (COCO: default the JSON's folder)")
    parser.add_argument("--split", default=None, help="VOC devkit split (train / val / ...); YOLO data.yaml entry")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="check a dataset, or convert it between COCO / YOLO / VOC",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="data_command", metavar="ACTION")
    check = commands.add_parser("check", help="report problems that would hurt or break training")
    _add_source(check)
    check.add_argument("--model", default=None, help="builder name: compare box sizes with its anchors after its resize")
    check.add_argument("--no-decode", action="store_true", help="read image headers only (faster, misses truncated files)")
    check.add_argument("--out", default=None, metavar="DIR", help="write report.json and box_sizes.png here")
    check.set_defaults(func=run_check)
    convert = commands.add_parser("convert", help="write the dataset in another format")
    _add_source(convert)
    convert.add_argument("--to", required=True, choices=("coco", "yolo", "voc"))
    convert.add_argument("--out", required=True, metavar="DIR", help="a new (or empty) folder")
    convert.set_defaults(func=run_convert)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
