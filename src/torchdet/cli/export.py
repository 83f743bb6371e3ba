"""`torchdet export`: write a deployable form of a trained detector.

    torchdet export --weights runs/a/best.pt --format onnx --image-size 320 320 --out model.onnx
    torchdet export --model ssdlite320_mobilenet_v3_large --weights DEFAULT --image-size 320 320 --out m.onnx
    torchdet export --weights runs/a/best.pt --image-size 320 320 --dynamic --out model.onnx
    torchdet export --weights runs/a/best.pt --exporter dynamo --dynamic --out model.onnx
    torchdet export --weights runs/a/best.pt --format pt2 --out model.pt2     # torch.export program
    torchdet export --weights runs/a/best.pt --format aoti --out model.pt2    # AOTInductor package

ONNX graphs and AOTInductor packages take `images` float [B, 3, H, W] in 0..1 and return
`boxes` [B, D, 4], `scores` [B, D], `labels` [B, D] (int64) and `num_detections` [B] (int64),
padded to D, the model's detections per image (plus `masks` [B, D, 1, H, W] or `keypoints`
[B, D, K, 3]). `--exporter legacy` (TorchScript-based tracer) makes B, H and W free with
`--dynamic`; `--exporter dynamo` (torch's default exporter) and the pt2/aoti formats make H and W
free and keep B at `--batch-size`. A pt2 program returns the eager detections (one dict per
image). ONNX needs `pip install 'torchdet[export]'` (onnx, onnxruntime, onnxscript).
"""
from __future__ import annotations

import argparse

from torchdet.cli._args import add_model_args, model_kwargs, reports_errors


@reports_errors("export")
def run(args: argparse.Namespace) -> int:
    from torchdet.inference.loading import load_inference_model

    if args.format == "onnx":
        from torchdet.export.onnx import require_onnx

        require_onnx()  # before the (slow) model load
    overrides = model_kwargs(args.model_arg, min_size=args.min_size, max_size=args.max_size)
    model, spec, _ = load_inference_model(args.weights, model_name=args.model, num_classes=args.num_classes,
                                          overrides=overrides)
    size = tuple(args.image_size)
    if args.format == "onnx":
        from torchdet.export.onnx import default_exporter, to_onnx

        exporter = args.exporter or default_exporter(model)
        path = to_onnx(model, args.out, image_size=size, dynamic=args.dynamic, opset=args.opset,
                       batch_size=args.batch_size, exporter=exporter)
        free = {"legacy": "batch and size", "dynamo": "height and width"}[exporter] if args.dynamic else ""
        detail = f"{exporter} exporter{', free ' + free if free else ''}"
    elif args.format == "pt2":
        from torchdet.export.exported_program import export_program, save_program

        path = save_program(export_program(model, image_size=size, batch_size=args.batch_size, strict=args.strict),
                            args.out)
        detail = "torch.export program, free height and width"
    else:
        from torchdet.export.aoti import to_aoti

        path = to_aoti(model, args.out, image_size=size, batch_size=args.batch_size)
        detail = "AOTInductor package, free height and width; run it with scripts/run_aoti.py"
    print(f"wrote {path} ({spec.builder}, example [{args.batch_size}, 3, {size[0]}, {size[1]}], {detail})")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="write a deployable ONNX graph, torch.export program or AOTInductor package",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True,
                        help="a checkpoint (RUN/best.pt), or a builder's weights name such as DEFAULT with --model")
    parser.add_argument("--model", default=None, help="builder name, for weights names and weights-only files")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="classes including the background, for weights-only files")
    parser.add_argument("--format", choices=("onnx", "pt2", "aoti"), default="onnx",
                        help="onnx graph, pt2 (torch.export program) or aoti (AOTInductor package); default onnx")
    parser.add_argument("--exporter", choices=("legacy", "dynamo"), default=None,
                        help="ONNX exporter: legacy (TorchScript-based) or dynamo (torch's default, via "
                             "torch.export); default the one verified for the model (legacy)")
    parser.add_argument("--batch-size", type=int, default=1,
                        help="batch size of the example input (the graph's batch size, except legacy --dynamic)")
    parser.add_argument("--strict", action="store_true", help="pt2: export with dynamo tracing (strict mode)")
    parser.add_argument("--image-size", type=int, nargs=2, default=(320, 320), metavar=("H", "W"),
                        help="input height and width of the exported graph (default 320 320)")
    parser.add_argument("--dynamic", action="store_true",
                        help="onnx: free height and width, and with the legacy exporter a free batch size "
                             "(an ONNX Loop over the images); pt2 and aoti are always free in height and width")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset of the legacy exporter (default 17; at least 11)")
    parser.add_argument("--out", required=True, metavar="FILE",
                        help="the file to write (.onnx, or .pt2 for pt2 and aoti)")
    add_model_args(parser)
    parser.set_defaults(func=run)
