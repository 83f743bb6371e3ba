"""The Python API behind the `torchdet train / evaluate / predict` commands.

Each function takes what its command takes and writes the same files::

    from torchdet.engine.api import train, evaluate, predict
    train("fasterrcnn_mobilenet_v3_large_320_fpn", "train.json", val_data="val.json", epochs=12, out="runs/a")
    evaluate("runs/a/best.pt", "val.json", out="runs/a/eval")      # metrics.json, detections.json
    predict("runs/a/best.pt", ["images/"], out="runs/a/pred")      # predictions.json + pictures
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

import torch
from torch import nn

from torchdet.atomic import atomic_path
from torchdet.engine import distributed
from torchdet.engine.builders import build_model, builder_accepts, get_builder, model_outputs
from torchdet.engine.checkpoint import load_checkpoint, require_training_checkpoint, state_dict_mismatch
from torchdet.engine.coco_eval import format_metrics
from torchdet.engine.datasets import category_ids, open_dataset, voc_class_names
from torchdet.engine.evaluate import EvalResult, evaluate_model
from torchdet.engine.loading import load_inference_model
from torchdet.engine.predict import PredictResult, expand_sources, predict_images
from torchdet.engine.progress import bars_enabled, echo
from torchdet.engine.train import ModelSpec, TrainConfig, Trainer, TrainResult, seed_everything

Log = Callable[[str], None]


def resolve_device(name: Optional[str] = None) -> torch.device:
    """`name` ("cpu", "cuda", "cuda:1", "mps"), or CUDA when available (this process's GPU
    under torchrun), else the CPU."""
    if name not in (None, "", "auto"):
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {name}: CUDA is not available here; use --device cpu")
        if device.type == "cuda" and device.index is None and distributed.launched_by_torchrun():
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return device
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


# -- train ---------------------------------------------------------------------------------------
def train(model: str, data: str, *, out: str, epochs: int, val_data: Optional[str] = None,
          fmt: str = "coco", images: Optional[str] = None, val_images: Optional[str] = None,
          split: Optional[str] = None, val_split: Optional[str] = None, config: Optional[TrainConfig] = None,
          model_kwargs: Optional[Dict[str, Any]] = None, num_classes: Optional[int] = None,
          init_weights: Optional[str] = None, weights_backbone: Any = None, device: Optional[str] = None,
          skip_bad_images: bool = False, augment: bool = True, log: Log = echo) -> TrainResult:
    """Train builder `model` on a dataset and write the run folder `out` (see engine.train)."""
    config = replace(config or TrainConfig(), epochs=epochs)
    get_builder(model)
    data_args = {"fmt": fmt, "data": str(data), "images": images, "split": split,
                 "val_data": None if val_data is None else str(val_data), "val_images": val_images,
                 "val_split": val_split, "skip_bad_images": skip_bad_images, "augment": augment}
    extra = {"data": data_args, "model_kwargs": dict(model_kwargs or {}), "num_classes": num_classes}
    return _run(model, dict(model_kwargs or {}), num_classes, data_args, config, Path(out), device,
                resume=None, init_weights=init_weights, weights_backbone=weights_backbone, extra=extra, log=log)


def resume(checkpoint: str, *, epochs: Optional[int] = None, device: Optional[str] = None,
           workers: Optional[int] = None, out: Optional[str] = None, log: Log = echo) -> TrainResult:
    """Continue the run that wrote `checkpoint` (its `last.pt`) exactly where it stopped."""
    ckpt = load_checkpoint(checkpoint)
    require_training_checkpoint(ckpt, checkpoint)
    missing = [k for k in ("optimizer", "scheduler", "config", "extra", "epoch") if ckpt.get(k) is None]
    if missing:
        raise ValueError(f"{checkpoint!r} cannot be resumed: it lacks {missing} (it holds inference weights "
                         "only). Start a new run with --weights to initialise from it instead")
    known = {f.name for f in fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in ckpt["config"].items() if k in known})
    if epochs is not None:
        config = replace(config, epochs=epochs)
    if workers is not None:
        config = replace(config, workers=workers)
    extra = ckpt["extra"]
    out_dir = Path(out) if out else Path(checkpoint).parent
    return _run(ckpt["builder"], dict(extra.get("model_kwargs") or {}), extra.get("num_classes"), extra["data"],
                config, out_dir, device, resume=(ckpt, str(checkpoint)), init_weights=None, weights_backbone=None,
                extra=extra, log=log)


def _run(builder: str, model_kwargs: Dict[str, Any], num_classes: Optional[int], data_args: Dict[str, Any],
         config: TrainConfig, out_dir: Path, device_name: Optional[str], *, resume: Optional[tuple],
         init_weights: Optional[str], weights_backbone: Any, extra: Dict[str, Any], log: Log) -> TrainResult:
    device = resolve_device(device_name)
    started_group = not distributed.current().enabled
    info = distributed.init_distributed(device)
    started_group = started_group and info.enabled
    try:
        outputs = model_outputs(builder)
        names = None
        if data_args["fmt"] == "voc":  # VOC classes are names: take those of both sets, in one order
            names = voc_class_names(*[d for d in (data_args["data"], data_args.get("val_data")) if d])
        if resume is not None:
            names = list(resume[0]["categories"][1:])
        train_set = open_dataset(data_args["fmt"], data_args["data"], role="train", images=data_args["images"],
                                 split=data_args["split"], categories=names, with_masks="masks" in outputs,
                                 with_keypoints="keypoints" in outputs,
                                 skip_bad_images=data_args["skip_bad_images"], augment=data_args["augment"])
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
            kwargs, categories = dict(ckpt["builder_kwargs"]), list(ckpt["categories"])
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
        source = load_checkpoint(weights)["model"]
    else:
        source = load_inference_model(weights, model_name=builder)[0].state_dict()
    own = model.state_dict()
    fitting = {k: v for k, v in source.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if not fitting:
        raise ValueError(f"no tensor of {weights!r} fits {builder}: {state_dict_mismatch(model, source)}")
    model.load_state_dict(fitting, strict=False)
    log(f"initialised {len(fitting)} of {len(own)} tensors from {weights}")


# -- evaluate ------------------------------------------------------------------------------------
def evaluate(weights: str, data: str, *, out: Optional[str] = None, model: Optional[str] = None,
             num_classes: Optional[int] = None, fmt: str = "coco", images: Optional[str] = None,
             split: Optional[str] = None, batch_size: int = 2, workers: int = 0, device: Optional[str] = None,
             iou_types: Optional[Sequence[str]] = None, skip_bad_images: bool = False,
             overrides: Optional[Dict[str, Any]] = None, log: Log = echo, amp: bool = False) -> EvalResult:
    """Score `weights` on a dataset; print the metrics and per-class AP; with `out` write
    `metrics.json`, `per_class.json` and `detections.json` (COCO results, the dataset's ids)."""
    dev = resolve_device(device)
    net, spec, _ = load_inference_model(weights, model_name=model, num_classes=num_classes,
                                        overrides=overrides, device=dev)
    outputs = model_outputs(spec.builder)
    dataset = open_dataset(fmt, data, role="val", images=images, split=split, categories=spec.categories[1:],
                           with_masks="masks" in outputs, with_keypoints="keypoints" in outputs,
                           skip_bad_images=skip_bad_images)
    if getattr(dataset, "skipped_images", None):
        log(f"skipped {len(dataset.skipped_images)} unreadable image(s), e.g. {dataset.skipped_images[0][0]}")
    result = evaluate_model(net, dataset, device=dev, model_categories=spec.categories, batch_size=batch_size,
                            workers=workers, iou_types=iou_types, show_progress=bars_enabled(), amp=amp)
    log(f"evaluated {weights} on {result.num_images} images of {data}: {len(result.detections)} detections")
    log(format_metrics(result.coco))
    if out is not None:
        out_dir = Path(out)
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_json(out_dir / "metrics.json", result.coco.metrics)
        _write_json(out_dir / "per_class.json", result.coco.per_class)
        _write_json(out_dir / "detections.json", result.detections)
        log(f"wrote {out_dir / 'metrics.json'}, {out_dir / 'per_class.json'} and {out_dir / 'detections.json'}")
    return result


# -- predict -------------------------------------------------------------------------------------
def predict(weights: str, sources: Sequence[str], *, out: str, model: Optional[str] = None,
            num_classes: Optional[int] = None, score_thresh: float = 0.5, batch_size: int = 4, workers: int = 0,
            device: Optional[str] = None, skip_bad_images: bool = False, draw: bool = True,
            picture_scale: float = 1.0, overrides: Optional[Dict[str, Any]] = None, log: Log = echo,
            amp: bool = False) -> PredictResult:
    """Detect objects in image files; write `out/predictions.json` and the annotated pictures."""
    if not 0.0 <= score_thresh <= 1.0:
        raise ValueError(f"--score-thresh must be in [0, 1], got {score_thresh}")
    dev = resolve_device(device)
    overrides = dict(overrides or {})
    net, spec, ckpt = load_inference_model(weights, model_name=model, num_classes=num_classes,
                                           overrides=overrides, device=dev)
    _lower_model_threshold(net, score_thresh)
    paths = expand_sources(sources)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    skeleton = (ckpt.get("extra") or {}).get("skeleton") if ckpt else None
    result = predict_images(net, paths, device=dev, categories=spec.categories, category_ids=spec.category_ids,
                            score_thresh=score_thresh, batch_size=batch_size, workers=workers,
                            out_dir=out_dir if draw else None, skip_bad_images=skip_bad_images,
                            keypoint_skeleton=skeleton, picture_scale=picture_scale, show_progress=bars_enabled(),
                            amp=amp)
    _write_json(out_dir / "predictions.json", result.predictions)
    if result.skipped:
        log(f"skipped {len(result.skipped)} unreadable image(s), e.g. {result.skipped[0][0]}")
    log(f"{len(result.predictions)} detections (score >= {score_thresh}) in {len(result.images)} images; "
        f"wrote {out_dir / 'predictions.json'}" + (f" and {len(result.pictures)} pictures in {out_dir}" if draw else ""))
    return result


def _lower_model_threshold(model: nn.Module, score_thresh: float) -> None:
    """Let detections down to `score_thresh` through the model's own filter (RCNN box_score_thresh,
    one-stage score_thresh) when it is stricter."""
    for holder, attr in ((getattr(model, "roi_heads", None), "score_thresh"), (model, "score_thresh")):
        if holder is not None and isinstance(getattr(holder, attr, None), float) and getattr(holder, attr) > score_thresh:
            setattr(holder, attr, score_thresh)


def _write_json(path: Path, obj: Any) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(_json_safe(obj), f)


def _json_safe(obj: Any) -> Any:
    """NaN (COCO's "no ground truth") becomes null, so the file is strict JSON."""
    if isinstance(obj, float):
        return None if math.isnan(obj) else obj
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj
