"""`torchdet evaluate`: COCO AP/AR of a checkpoint on an annotated dataset.

    torchdet evaluate --weights runs/a/best.pt --data val.json --out runs/a/eval

Prints AP, AP50, AP75, AP small/medium/large and AR (bbox, and segm / keypoints for models and
annotations that have them) with a per-class AP table, and writes OUT/metrics.json
({"bbox": {"AP": ..., "AP50": ...}, ...}), OUT/per_class.json, OUT/detections.json (COCO
results in the dataset's own image and category ids), OUT/confusion_matrix.{json,png} (with a
background row and column, at --confusion-iou and --confusion-score) and OUT/pr_curves.{json,png}
(per-class precision-recall, the curves whose mean is the AP). Scored by pycocotools' COCOeval.
"""
from __future__ import annotations

import argparse

from torchdet.cli._args import (add_dataset_args, add_device, add_model_args, add_workers, model_kwargs,
                                reports_errors)


@reports_errors("evaluate")
def run(args: argparse.Namespace) -> int:
    from torchdet.evaluation import api

    api.evaluate(args.weights, args.data, out=args.out, model=args.model, num_classes=args.num_classes,
                 fmt=args.format, images=args.images, split=args.split, batch_size=args.batch_size,
                 workers=args.workers, device=args.device, iou_types=args.iou_types,
                 skip_bad_images=args.skip_bad_images, confusion_iou=args.confusion_iou,
                 confusion_score=args.confusion_score, classes_by_position=args.match_classes_by_position,
                 overrides=model_kwargs(args.model_arg, min_size=args.min_size, max_size=args.max_size))
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evaluate", help="COCO AP of a checkpoint on a dataset", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True,
                        help="a checkpoint (RUN/best.pt), or a builder's weights name such as DEFAULT with --model")
    parser.add_argument("--model", default=None, help="builder name, for weights names and weights-only files")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="classes including the background, for weights-only files")
    parser.add_argument("--data", required=True, help="annotations (COCO JSON; VOC folder; YOLO data.yaml/images)")
    add_dataset_args(parser, val=False)
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="write metrics.json, per_class.json and detections.json here")
    parser.add_argument("--iou-types", nargs="+", choices=("bbox", "segm", "keypoints"), default=None,
                        help="what to score (default: all that the model and the annotations have)")
    parser.add_argument("--confusion-iou", type=float, default=0.5, metavar="IOU",
                        help="IoU at which a detection matches a ground-truth box in the confusion matrix (0.5)")
    parser.add_argument("--confusion-score", type=float, default=0.5, metavar="SCORE",
                        help="detections below this score are left out of the confusion matrix (0.5)")
    parser.add_argument("--match-classes-by-position", action="store_true",
                        help="the checkpoint's class names differ from the dataset's but mean the same classes in "
                             "the same order: match them by position (default: by name; differing names are refused)")
    parser.add_argument("--batch-size", type=int, default=2)
    add_model_args(parser)
    add_workers(parser, default=2)
    add_device(parser)
    parser.set_defaults(func=run)
