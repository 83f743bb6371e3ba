"""`torchdet predict`: detect objects in images and draw them.

    torchdet predict --weights runs/a/best.pt photos/ extra.jpg 'more/**/*.png' --out runs/a/pred
    torchdet predict --model fasterrcnn_resnet50_fpn --weights DEFAULT street.jpg --out pred

SOURCE is an image file, a folder (its images) or a glob pattern (quote it). Writes
OUT/predictions.json (COCO results plus file_name and category_name) and each image with its
boxes, class names and scores (and masks, keypoint skeletons) drawn, under OUT/.

Large images with small objects: predict on overlapping tiles, merged back into one image:
    torchdet predict --weights best.pt aerial.jpg --out pred --slice 512 512 --overlap 0.2

Videos, cameras and streams (needs `pip install 'torchdet[video]'`): SOURCE is a video file, a
camera index (0) or a URL (rtsp://...); writes OUT/NAME.mp4 (annotated) and OUT/NAME.jsonl (one
line per frame: frame, timestamp, detections); --track adds a persistent id per object. Ctrl-C
stops cleanly.
    torchdet predict --weights best.pt street.mp4 --out pred --track
"""
from __future__ import annotations

import argparse
from typing import Any, Dict, Optional

from torchdet.cli._args import add_device, add_model_args, add_workers, model_kwargs, reports_errors


@reports_errors("predict")
def run(args: argparse.Namespace) -> int:
    from torchdet.inference import api
    from torchdet.inference.video import is_video_source, run_video

    slicing = _slicing_options(args)
    if any(is_video_source(source) for source in args.sources):
        if len(args.sources) != 1:
            raise ValueError(f"give one video, camera or stream per run; got {len(args.sources)} sources: "
                             f"{' '.join(args.sources)}")
        video = run_video(args.weights, args.sources[0], out=args.out, model=args.model,
                          num_classes=args.num_classes, score_thresh=args.score_thresh, batch_size=args.batch_size,
                          device=args.device, draw=not args.no_pictures, track=args.track, slicing=slicing,
                          max_frames=args.max_frames,
                          overrides=model_kwargs(args.model_arg, min_size=args.min_size, max_size=args.max_size))
        return 0 if video.frames else 1
    if args.track:
        raise ValueError("--track follows objects across the frames of a video; pass a video file, a camera "
                         "index or a stream URL as SOURCE")
    result = api.predict(args.weights, args.sources, out=args.out, model=args.model, num_classes=args.num_classes,
                         score_thresh=args.score_thresh, batch_size=args.batch_size, workers=args.workers,
                         device=args.device, skip_bad_images=args.skip_bad_images, draw=not args.no_pictures,
                         picture_scale=args.picture_scale,
                         overrides=model_kwargs(args.model_arg, min_size=args.min_size, max_size=args.max_size),
                         slicing=slicing)
    return 0 if result.images else 1


def _slicing_options(args: argparse.Namespace) -> Optional[Dict[str, Any]]:
    """SlicedPredictor's options from --slice and its companions (None without --slice)."""
    if args.slice is None:
        return None
    if min(args.slice) < 1:
        raise ValueError(f"--slice H W: tile sides must be positive pixels; got {args.slice[0]} {args.slice[1]}")
    if not 0.0 <= args.overlap < 1.0:
        raise ValueError(f"--overlap is the fraction of a tile shared with the next, in [0, 1); got {args.overlap}")
    return {"tile_size": tuple(args.slice), "overlap": args.overlap, "full_image": args.slice_full,
            "batch_size": args.batch_size, "merge": args.slice_merge, "match_metric": args.slice_match,
            "match_threshold": args.slice_thresh}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("predict", help="detect objects in images; write JSON and pictures",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="+", metavar="SOURCE",
                        help="image files, folders or glob patterns; or one video file, camera index or stream URL")
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
    slicing = parser.add_argument_group("sliced inference (small objects in large images)")
    slicing.add_argument("--slice", type=int, nargs=2, default=None, metavar=("H", "W"),
                         help="predict on overlapping H x W tiles and merge them (e.g. --slice 512 512)")
    slicing.add_argument("--overlap", type=float, default=0.2, metavar="R",
                         help="fraction of a tile shared with its neighbour (default 0.2)")
    slicing.add_argument("--slice-full", action="store_true", help="also predict on the whole image (large objects)")
    slicing.add_argument("--slice-merge", choices=("nmm", "nms"), default="nmm",
                         help="merge duplicates across tiles: nmm = union box of the group (default), nms = best box")
    slicing.add_argument("--slice-match", choices=("ios", "iou"), default="ios",
                         help="duplicates overlap by intersection over the smaller box (ios, default) or IoU")
    slicing.add_argument("--slice-thresh", type=float, default=0.5, metavar="T",
                         help="overlap above which two detections of a class are duplicates (default 0.5)")
    video = parser.add_argument_group("videos, cameras and streams")
    video.add_argument("--track", action="store_true",
                       help="give each object a persistent id across frames (ByteTrack-style tracking)")
    video.add_argument("--max-frames", type=int, default=None, metavar="N", help="stop after N frames")
    add_model_args(parser)
    add_workers(parser, default=0)
    add_device(parser)
    parser.set_defaults(func=run)
