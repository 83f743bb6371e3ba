"""`torchdet train`: train a detector on a COCO, VOC or YOLO dataset, or resume a run.

    torchdet train --model fasterrcnn_mobilenet_v3_large_320_fpn --data train.json --val-data val.json \\
        --epochs 12 --batch-size 4 --out runs/a
    torchdet train --resume runs/a/last.pt
    torchrun --nproc_per_node 2 -m torchdet.cli train ...        # several processes (DDP)

Writes RUN/last.pt and RUN/best.pt (atomically, every epoch), RUN/metrics.csv and RUN/plot.png.
The checkpoints record the builder, its kwargs and the class names, so `torchdet evaluate` and
`torchdet predict` need only `--weights RUN/best.pt`.
"""
from __future__ import annotations

import argparse

from torchdet.cli._args import add_dataset_args, add_device, add_model_args, model_kwargs, reports_errors
from torchdet.data.formats import AUGMENTATIONS

# TrainConfig fields a flag sets when given; the recipe decides the rest.
_SETTINGS = {"batch_size": "batch_size", "optimizer": "optimizer", "lr": "lr", "momentum": "momentum",
             "weight_decay": "weight_decay", "schedule": "schedule", "lr_steps": "lr_steps", "lr_gamma": "lr_gamma",
             "warmup_iters": "warmup_iters", "warmup_factor": "warmup_factor", "amp": "amp",
             "clip_grad_norm": "clip_grad", "ema": "ema", "ema_decay": "ema_decay", "augment": "augment",
             "bn_recalibration_batches": "bn_recalibration"}
# Options that only shape a new run; with --resume the recorded values are used.
_NEW_RUN_ONLY = ("model", "data", "val_data", "out", "lr", "batch_size", "optimizer", "schedule", "weights",
                 "num_classes", "min_size", "max_size", "model_arg", "ema", "amp", "clip_grad", "recipe", "augment",
                 "bn_recalibration")


@reports_errors("train")
def run(args: argparse.Namespace) -> int:
    from torchdet.training import api

    if args.resume:
        given = [f"--{k.replace('_', '-')}" for k in _NEW_RUN_ONLY if getattr(args, k, None) not in (None, False)]
        if given:
            print(f"note: --resume continues the recorded run; ignoring {' '.join(given)}")
        api.resume(args.resume, epochs=args.epochs, device=args.device, workers=args.workers)
        return 0
    missing = [f"--{k.replace('_', '-')}" for k in ("model", "data", "epochs", "out") if getattr(args, k) is None]
    if missing:
        raise ValueError(f"missing {' '.join(missing)} (or pass --resume RUN/last.pt to continue a run)")
    settings = {name: getattr(args, dest) for name, dest in _SETTINGS.items() if getattr(args, dest) is not None}
    settings.update(workers=2 if args.workers is None else args.workers, seed=args.seed,
                    group_by_aspect_ratio=not args.no_aspect_grouping, val_every=args.val_every,
                    val_losses=not args.no_val_loss, progress=args.progress)
    api.train(args.model, args.data, out=args.out, epochs=args.epochs, val_data=args.val_data, fmt=args.format,
              images=args.images, val_images=args.val_images, split=args.split, val_split=args.val_split,
              recipe=args.recipe, settings=settings, model_kwargs=model_kwargs(args.model_arg, min_size=args.min_size,
                                                       max_size=args.max_size),
              num_classes=args.num_classes, init_weights=args.weights, weights_backbone=args.weights_backbone,
              device=args.device, skip_bad_images=args.skip_bad_images, augment=not args.no_augment)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a detector (or --resume a run)", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_argument_group("what to train")
    what.add_argument("--model", help="builder name (see `torchdet models`)")
    what.add_argument("--data", help="training annotations (COCO JSON; VOC folder; YOLO data.yaml or images folder)")
    what.add_argument("--val-data", help="validation annotations, evaluated (COCO AP, losses) every epoch")
    add_dataset_args(what, val=True)
    what.add_argument("--out", metavar="RUN", help="run folder for checkpoints, metrics.csv and plot.png")
    what.add_argument("--resume", metavar="CKPT", help="continue the run that wrote CKPT (e.g. RUN/last.pt)")
    what.add_argument("--num-classes", type=int, default=None,
                      help="classes including the background (default: the dataset's categories + 1)")
    what.add_argument("--weights", default=None,
                      help="initialise from a checkpoint file or this builder's weights name (e.g. DEFAULT); "
                           "tensors whose shape differs (a head for other classes) stay random")
    what.add_argument("--weights-backbone", default=None, help="the backbone's pretrained weights (e.g. DEFAULT)")
    add_model_args(what)

    how = parser.add_argument_group("how to train")
    how.add_argument("--epochs", type=int, default=None, help="epochs in the whole run")
    how.add_argument("--recipe", default=None, choices=("finetune", "scratch", "plain"),
                     help="the settings to start from (default: finetune with --weights/--weights-backbone, "
                          "else scratch); every flag below still wins")
    how.add_argument("--batch-size", type=int, default=2, help="images per iteration per process (default 2)")
    how.add_argument("--lr", type=float, default=None,
                     help="base learning rate (default: the recipe's, scaled by the total batch)")
    how.add_argument("--optimizer", choices=("sgd", "adamw"), default=None)
    how.add_argument("--momentum", type=float, default=None)
    how.add_argument("--weight-decay", type=float, default=None)
    how.add_argument("--schedule", choices=("multistep", "cosine", "constant"), default=None,
                     help="after the warm-up (the recipes use cosine)")
    how.add_argument("--lr-steps", type=int, nargs="+", default=None, metavar="EPOCH",
                     help="multistep: epochs where the lr drops (default: at 2/3 and 8/9 of the run)")
    how.add_argument("--lr-gamma", type=float, default=None, help="multistep factor (default 0.1)")
    how.add_argument("--warmup-iters", type=int, default=None, help="linear warm-up iterations (recipe's default)")
    how.add_argument("--warmup-factor", type=float, default=None, help="lr factor at the first iteration (0.001)")
    how.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                     help="mixed precision (default: on with CUDA; never on CPU)")
    how.add_argument("--clip-grad", type=float, default=None, metavar="NORM", help="clip the gradient norm")
    how.add_argument("--ema", action=argparse.BooleanOptionalAction, default=None,
                     help="keep an EMA of the weights; evaluate and save it (the recipes do)")
    how.add_argument("--ema-decay", type=float, default=None)
    how.add_argument("--augment", nargs="+", default=None, choices=AUGMENTATIONS, metavar="NAME",
                     help=f"training augmentations, from {', '.join(AUGMENTATIONS)} (default: the recipe's)")
    how.add_argument("--no-augment", action="store_true", help="no augmentation at all")
    how.add_argument("--bn-recalibration", type=int, default=None, metavar="BATCHES",
                     help="recompute BatchNorm statistics on this many training batches before each validation "
                          "(the scratch recipe: 8; 0 turns it off)")
    how.add_argument("--no-aspect-grouping", action="store_true", help="do not batch by image orientation")
    how.add_argument("--seed", type=int, default=0)
    how.add_argument("--val-every", type=int, default=1, metavar="N", help="validate every N epochs (and the last)")
    how.add_argument("--no-val-loss", action="store_true", help="skip the validation losses (AP only)")
    how.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="progress bars (default: on a terminal, off in CI / logs)")
    how.add_argument("--workers", type=int, default=None, metavar="N",
                     help="data-loading processes (default 2; 0 loads in the main process)")
    add_device(how)
    parser.set_defaults(func=run)
