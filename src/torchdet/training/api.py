"""`torchdet train` as functions: train a detector into a run folder, or resume a run.

    from torchdet.training.api import train, resume
    train("fasterrcnn_mobilenet_v3_large_320_fpn", "train.json", val_data="val.json", epochs=12, out="runs/a")
    resume("runs/a/last.pt", epochs=24)
"""
from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

from torch import nn

from torchdet import distributed
from torchdet.checkpoint import ModelSpec, RunCheckpoint
from torchdet.data.formats import category_ids, open_dataset, voc_class_names
from torchdet.models.registry import build_model, builder_accepts, model_outputs
from torchdet.models.registry import get_model_builder as get_builder
from torchdet.inference.loading import load_inference_model
from torchdet.progress import echo
from torchdet.training.loop import TrainConfig, Trainer, TrainResult
from torchdet.training.recipes import choose_recipe, resolve_config
from torchdet.training.rng import seed_everything
from torchdet.weights import hub

Log = Callable[[str], None]


def train(model: str, data: str, *, out: str, epochs: int, val_data: Optional[str] = None,
          fmt: str = "coco", images: Optional[str] = None, val_images: Optional[str] = None,
          split: Optional[str] = None, val_split: Optional[str] = None, config: Optional[TrainConfig] = None,
          recipe: Optional[str] = None, settings: Optional[Dict[str, Any]] = None,
          model_kwargs: Optional[Dict[str, Any]] = None, num_classes: Optional[int] = None,
          init_weights: Optional[str] = None, weights_backbone: Any = None, device: Optional[str] = None,
          skip_bad_images: bool = False, augment: bool = True, log: Log = echo) -> TrainResult:
    """Train builder `model` on a dataset and write the run folder `out` (see training.loop).

    The settings are `config` when given, as it is; otherwise the recipe called `recipe` (default:
    chosen by whether `init_weights` / `weights_backbone` are given, see training.recipes) with
    `settings` (`TrainConfig` field names: what the user chose explicitly) set over it.
    `augment=False` turns every augmentation off.
    """
    get_builder(model)
    if config is None:
        chosen = choose_recipe(recipe, pretrained=init_weights is not None or weights_backbone is not None)
        config = resolve_config(chosen, {**(settings or {}), "epochs": epochs})
        log(chosen.describe(config) + "; flags override")
    config = replace(config, epochs=epochs, augment=config.augment if augment else ())
    data_args = {"fmt": fmt, "data": str(data), "images": images, "split": split,
                 "val_data": None if val_data is None else str(val_data), "val_images": val_images,
                 "val_split": val_split, "skip_bad_images": skip_bad_images}
    extra = {"data": data_args, "model_kwargs": dict(model_kwargs or {}), "num_classes": num_classes}
    return _run(model, dict(model_kwargs or {}), num_classes, data_args, config, Path(out), device,
                resume=None, init_weights=init_weights, weights_backbone=weights_backbone, extra=extra, log=log)


def resume(checkpoint: str, *, epochs: Optional[int] = None, device: Optional[str] = None,
           workers: Optional[int] = None, out: Optional[str] = None, log: Log = echo) -> TrainResult:
    """Continue the run that wrote `checkpoint` (its `last.pt`) exactly where it stopped."""
    ckpt = RunCheckpoint.load(checkpoint)
    state = ckpt.resumable(checkpoint)
    known = {f.name for f in fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in state.config.items() if k in known})
    if epochs is not None:
        config = replace(config, epochs=epochs)
    if workers is not None:
        config = replace(config, workers=workers)
    extra = ckpt.extra
    out_dir = Path(out) if out else Path(checkpoint).parent
    return _run(ckpt.spec(checkpoint).builder, dict(extra.get("model_kwargs") or {}), extra.get("num_classes"),
                extra["data"],
                config, out_dir, device, resume=(ckpt, str(checkpoint)), init_weights=None, weights_backbone=None,
                extra=extra, log=log)


def _run(builder: str, model_kwargs: Dict[str, Any], num_classes: Optional[int], data_args: Dict[str, Any],
         config: TrainConfig, out_dir: Path, device_name: Optional[str], *,
         resume: Optional[Tuple[RunCheckpoint, str]],
         init_weights: Optional[str], weights_backbone: Any, extra: Dict[str, Any], log: Log) -> TrainResult:
    device = distributed.resolve_device(device_name)
    started_group = not distributed.current().enabled
    info = distributed.init_distributed(device)
    started_group = started_group and info.enabled
    try:
        outputs = model_outputs(builder)
        names = None
        if data_args["fmt"] == "voc":  # VOC classes are names: take those of both sets, in one order
            names = voc_class_names(*[d for d in (data_args["data"], data_args.get("val_data")) if d])
        if resume is not None:
            names = list(resume[0].categories[1:])
        train_set = open_dataset(data_args["fmt"], data_args["data"], role="train", images=data_args["images"],
                                 split=data_args["split"], categories=names, with_masks="masks" in outputs,
                                 with_keypoints="keypoints" in outputs,
                                 skip_bad_images=data_args["skip_bad_images"],
                                 augment=config.augment)
        _warn_if_unannotated(train_set, log)
        val_set = None
        if data_args.get("val_data"):
            val_set = open_dataset(data_args["fmt"], data_args["val_data"], role="val",
                                   images=data_args["val_images"], split=data_args["val_split"],
                                   categories=train_set.categories[1:], with_masks="masks" in outputs,
                                   with_keypoints="keypoints" in outputs,
                                   skip_bad_images=data_args["skip_bad_images"])
        extra["skeleton"] = [list(pair) for pair in getattr(train_set, "skeleton", None) or []] or None
        n_classes = num_classes or train_set.num_classes
        if n_classes < train_set.num_classes:
            beyond = train_set.categories[n_classes:]
            raise ValueError(f"the dataset has {train_set.num_classes - 1} categories but the model is built for "
                             f"{n_classes - 1} (num_classes={n_classes} with the background): labels "
                             f"{n_classes}..{train_set.num_classes - 1} ({beyond[:5]}) are beyond the model's classes. "
                             f"Drop --num-classes or pass at least {train_set.num_classes}")
        categories = list(train_set.categories) + [f"class_{i}" for i in range(train_set.num_classes, n_classes)]
        kwargs = {**model_kwargs, "num_classes": n_classes}
        if "keypoints" in outputs and builder_accepts(builder, "num_keypoints"):
            kwargs.setdefault("num_keypoints", getattr(train_set, "num_keypoints", 17))
        if resume is not None:
            ckpt, source = resume
            kwargs, categories = dict(ckpt.builder_kwargs), list(ckpt.categories)
        spec = ModelSpec(builder, kwargs, categories,
                         category_ids(train_set) + list(range(train_set.num_classes, n_classes)))
        seed_everything(config.seed)
        model = build_model(builder, kwargs, weights_backbone=weights_backbone)
        if init_weights:
            _initialise_from(model, init_weights, builder, log)
        trainer = Trainer(model, spec, train_set, val_set, config, out_dir, device=device, extra=extra, log=log)
        if resume is not None:
            trainer.load_resume_state(*resume)
            log(f"resuming {source} after epoch {trainer.epoch}")
        else:
            seed_everything(config.seed + info.rank)
        result = trainer.fit()
        _report_skipped(train_set, val_set, log)
        return result
    finally:
        if started_group:
            distributed.cleanup()


def _report_skipped(train_set: Any, val_set: Any, log: Log) -> None:
    """One line per dataset that skipped unreadable images (--skip-bad-images)."""
    for name, dataset in (("training", train_set), ("validation", val_set)):
        skipped = getattr(dataset, "skipped_images", None)
        if skipped:
            log(f"skipped {len(skipped)} unreadable {name} image(s) (missing or corrupt), e.g. {skipped[0][0]}")


def _warn_if_unannotated(dataset: Any, log: Log) -> None:
    if hasattr(dataset, "coco") and not dataset.coco.dataset.get("annotations"):
        log("warning: the training set has no annotations at all; the model will learn to detect nothing")


def _initialise_from(model: nn.Module, weights: str, builder: str, log: Log) -> None:
    """Copy every tensor of `weights` (a checkpoint file, or the builder's weights enum name)
    whose name and shape fit `model`; the rest (e.g. a head for other classes) stays random."""
    if Path(weights).exists():
        source = RunCheckpoint.load(weights).model
    else:
        source = load_inference_model(weights, model_name=builder)[0].state_dict()
    own = model.state_dict()
    fitting = {k: v for k, v in source.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if not fitting:
        missing, unexpected, reshaped = hub.state_dict_mismatch(model, source)
        raise ValueError(f"no tensor of {weights!r} fits {builder}: {len(missing)} of its keys are missing, "
                         f"{len(unexpected)} unexpected (e.g. {unexpected[:3]}), {len(reshaped)} of another shape; "
                         "pass weights of this architecture")
    model.load_state_dict(fitting, strict=False)
    log(f"initialised {len(fitting)} of {len(own)} tensors from {weights}")
