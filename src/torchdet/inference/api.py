"""`torchdet predict` as a function: detect objects in image files, write JSON and pictures.

    from torchdet.inference.api import predict
    predict("runs/a/best.pt", ["images/"], out="runs/a/pred")      # predictions.json + pictures
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

from torch import nn

from torchdet import distributed
from torchdet.atomic import write_json
from torchdet.inference.loading import load_inference_model
from torchdet.inference.predict import PredictResult, expand_sources, predict_images
from torchdet.progress import bars_enabled, echo

Log = Callable[[str], None]


def predict(weights: str, sources: Sequence[str], *, out: str, model: Optional[str] = None,
            num_classes: Optional[int] = None, score_thresh: float = 0.5, batch_size: int = 4, workers: int = 0,
            device: Optional[str] = None, skip_bad_images: bool = False, draw: bool = True,
            picture_scale: float = 1.0, overrides: Optional[Dict[str, Any]] = None, log: Log = echo,
            slicing: Optional[Dict[str, Any]] = None) -> PredictResult:
    """Detect objects in image files; write `out/predictions.json` and the annotated pictures.

    `slicing`: predict tile by tile, with these `torchdet.inference.slicing.SlicedPredictor` options."""
    if not 0.0 <= score_thresh <= 1.0:
        raise ValueError(f"--score-thresh must be in [0, 1], got {score_thresh}")
    dev = distributed.resolve_device(device)
    overrides = dict(overrides or {})
    net, spec, ckpt = load_inference_model(weights, model_name=model, num_classes=num_classes,
                                           overrides=overrides, device=dev)
    lower_score_threshold(net, score_thresh)
    if slicing:
        from torchdet.inference.slicing import SlicedPredictor

        net = SlicedPredictor(net, **slicing)
    paths = expand_sources(sources)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    skeleton = ckpt.skeleton if ckpt is not None else None
    result = predict_images(net, paths, device=dev, categories=spec.categories, category_ids=spec.category_ids,
                            score_thresh=score_thresh, batch_size=batch_size, workers=workers,
                            out_dir=out_dir if draw else None, skip_bad_images=skip_bad_images,
                            keypoint_skeleton=skeleton, picture_scale=picture_scale, show_progress=bars_enabled())
    write_json(out_dir / "predictions.json", result.predictions)
    if result.skipped:
        log(f"skipped {len(result.skipped)} unreadable image(s), e.g. {result.skipped[0][0]}")
    log(f"{len(result.predictions)} detections (score >= {score_thresh}) in {len(result.images)} images; "
        f"wrote {out_dir / 'predictions.json'}" + (f" and {len(result.pictures)} pictures in {out_dir}" if draw else ""))
    return result


def lower_score_threshold(model: nn.Module, score_thresh: float) -> None:
    """Let detections down to `score_thresh` through the model's own filter (RCNN box_score_thresh,
    one-stage score_thresh) when it is stricter."""
    for holder, attr in ((getattr(model, "roi_heads", None), "score_thresh"), (model, "score_thresh")):
        if holder is not None and isinstance(getattr(holder, attr, None), float) and getattr(holder, attr) > score_thresh:
            setattr(holder, attr, score_thresh)
