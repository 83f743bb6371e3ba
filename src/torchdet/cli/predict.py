"""`torchdet predict`: detect objects in images and draw them.

    torchdet predict --weights runs/a/best.pt photos/ extra.jpg 'more/**/*.png' --out runs/a/pred
    torchdet predict --model fasterrcnn_resnet50_fpn --weights DEFAULT street.jpg --out pred

SOURCE is an image file, a folder (its images) or a glob pattern (quote it). Writes
OUT/predictions.json (COCO results plus file_name and category_name) and each image with its
boxes, class names and scores (and masks, keypoint skeletons) drawn, under OUT/.
"""
from __future__ import annotations

import argparse

from torchdet.cli._args import add_device, add_model_args, add_workers, model_kwargs, reports_errors


@reports_errors("predict")
def run(args: argparse.Namespace) -> int:
    from torchdet.inference import api

    result = api.predict(args.weights, args.sources, out=args.out, model=args.model, num_classes=args.num_classes,
                         score_thresh=args.score_thresh, batch_size=args.batch_size, workers=args.workers,
                         device=args.device, skip_bad_images=args.skip_bad_images, draw=not args.no_pictures,
                         picture_scale=args.picture_scale,
                         overrides=model_kwargs(args.model_arg, min_size=args.min_size, max_size=args.max_size))
    return 0 if result.images else 1


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("predict", help="detect objects in images; write JSON and pictures",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="+", metavar="SOURCE", help="image files, folders or glob patterns")
    parser.add_argument("--weights", required=True,
                        help="a checkpoint (RUN/best.pt), or a builder's weights name such as DEFAULT with --model")
    parser.add_argument("--model", default=None, help="builder name, for weights names and weights-only files")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="classes including the background, for weights-only files")
    parser.add_argument("--out", required=True, metavar="DIR", help="where predictions.json and the pictures go")
    parser.add_argument("--score-thresh", type=float, default=0.5, metavar="T",
                        help="keep detections scoring at least T (default 0.5)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--no-pictures", action="store_true", help="write predictions.json only")
    parser.add_argument("--picture-scale", type=float, default=1.0, metavar="S",
                        help="enlarge the pictures S times (readable captions on small images)")
    parser.add_argument("--skip-bad-images", action="store_true",
                        help="skip (and count) unreadable images instead of stopping")
    add_model_args(parser)
    add_workers(parser, default=0)
    add_device(parser)
    parser.set_defaults(func=run)
