"""`torchdet export`: write a deployable ONNX graph of a trained detector.

    torchdet export --weights runs/a/best.pt --format onnx --image-size 320 320 --out model.onnx
    torchdet export --model ssdlite320_mobilenet_v3_large --weights DEFAULT --image-size 320 320 --out m.onnx
    torchdet export --weights runs/a/best.pt --image-size 320 320 --dynamic --out model.onnx

The graph takes `images` float [B, 3, H, W] in 0..1 and returns `boxes` [B, D, 4], `scores`
[B, D], `labels` [B, D] (int64) and `num_detections` [B] (int64), padded to D, the model's
detections per image (plus `masks` [B, D, 1, H, W] or `keypoints` [B, D, K, 3]). Needs
`pip install 'torchdet[export]'` (onnx, onnxruntime).
"""
from __future__ import annotations

import argparse

from torchdet.cli._args import add_model_args, model_kwargs, reports_errors


@reports_errors("export")
def run(args: argparse.Namespace) -> int:
    from torchdet.inference.loading import load_inference_model
    from torchdet.export.onnx import require_onnx, to_onnx

    require_onnx()  # before the (slow) model load
    overrides = model_kwargs(args.model_arg, min_size=args.min_size, max_size=args.max_size)
    model, spec, _ = load_inference_model(args.weights, model_name=args.model, num_classes=args.num_classes,
                                          overrides=overrides)
    path = to_onnx(model, args.out, image_size=tuple(args.image_size), dynamic=args.dynamic, opset=args.opset)
    print(f"wrote {path} ({spec.builder}, input [B, 3, {args.image_size[0]}, {args.image_size[1]}]"
          f"{', dynamic batch and size' if args.dynamic else ''})")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="write a deployable ONNX graph of a detector",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True,
                        help="a checkpoint (RUN/best.pt), or a builder's weights name such as DEFAULT with --model")
    parser.add_argument("--model", default=None, help="builder name, for weights names and weights-only files")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="classes including the background, for weights-only files")
    parser.add_argument("--format", choices=("onnx",), default="onnx", help="graph format (default onnx)")
    parser.add_argument("--image-size", type=int, nargs=2, default=(320, 320), metavar=("H", "W"),
                        help="input height and width of the exported graph (default 320 320)")
    parser.add_argument("--dynamic", action="store_true",
                        help="make the batch size, height and width free (traced at --image-size; "
                             "the batch is an ONNX Loop over the images)")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17; at least 11)")
    parser.add_argument("--out", required=True, metavar="FILE", help="the .onnx file to write")
    add_model_args(parser)
    parser.set_defaults(func=run)
