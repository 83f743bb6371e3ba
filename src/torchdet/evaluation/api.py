"""`torchdet evaluate` as a function: score a checkpoint on a dataset and write the results.

    from torchdet.evaluation.api import evaluate
    evaluate("runs/a/best.pt", "val.json", out="runs/a/eval")      # metrics.json, detections.json
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

from torchdet import distributed
from torchdet.atomic import write_json
from torchdet.data.formats import open_dataset
from torchdet.models.registry import model_outputs
from torchdet.evaluation.coco_eval import format_metrics
from torchdet.evaluation.evaluate import EvalResult, evaluate_model
from torchdet.inference.loading import load_inference_model
from torchdet.progress import bars_enabled, echo

Log = Callable[[str], None]


def evaluate(weights: str, data: str, *, out: Optional[str] = None, model: Optional[str] = None,
             num_classes: Optional[int] = None, fmt: str = "coco", images: Optional[str] = None,
             split: Optional[str] = None, batch_size: int = 2, workers: int = 0, device: Optional[str] = None,
             iou_types: Optional[Sequence[str]] = None, skip_bad_images: bool = False,
             overrides: Optional[Dict[str, Any]] = None, confusion_iou: float = 0.5, confusion_score: float = 0.5,
             classes_by_position: bool = False, log: Log = echo) -> EvalResult:
    """Score `weights` on a dataset; print the metrics and per-class AP; with `out` write
    `metrics.json`, `per_class.json` and `detections.json` (COCO results, the dataset's ids), the
    confusion matrix at (`confusion_iou`, `confusion_score`) and the per-class precision-recall
    curves, each as JSON and PNG. `classes_by_position`: see `evaluate.label_to_category_id`."""
    dev = distributed.resolve_device(device)
    net, spec, _ = load_inference_model(weights, model_name=model, num_classes=num_classes,
                                        overrides=overrides, device=dev)
    outputs = model_outputs(spec.builder)
    dataset = open_dataset(fmt, data, role="val", images=images, split=split, categories=spec.categories[1:],
                           with_masks="masks" in outputs, with_keypoints="keypoints" in outputs,
                           skip_bad_images=skip_bad_images)
    if getattr(dataset, "skipped_images", None):
        log(f"skipped {len(dataset.skipped_images)} unreadable image(s), e.g. {dataset.skipped_images[0][0]}")
    result = evaluate_model(net, dataset, device=dev, model_categories=spec.categories, batch_size=batch_size,
                            workers=workers, iou_types=iou_types, show_progress=bars_enabled(),
                            classes_by_position=classes_by_position)
    log(f"evaluated {weights} on {result.num_images} images of {data}: {len(result.detections)} detections")
    log(format_metrics(result.coco))
    if out is not None:
        out_dir = Path(out)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(out_dir / "metrics.json", result.coco.metrics)
        write_json(out_dir / "per_class.json", result.coco.per_class)
        write_json(out_dir / "detections.json", result.detections)
        log(f"wrote {out_dir / 'metrics.json'}, {out_dir / 'per_class.json'} and {out_dir / 'detections.json'}")
        _write_evaluation_pictures(out_dir, result, confusion_iou, confusion_score, log)
    return result


def _write_evaluation_pictures(out_dir: Path, result: EvalResult, iou: float, score: float, log: Log) -> None:
    """confusion_matrix.{json,png} and pr_curves[_<type>].{json,png} beside the metrics."""
    from torchdet.evaluation.confusion import confusion_matrix, plot_confusion_matrix
    from torchdet.evaluation.pr_curves import plot_pr_curves

    cm = confusion_matrix(result.ground_truth, [r for r in result.detections if "bbox" in r], iou_threshold=iou,
                          score_threshold=score)
    write_json(out_dir / "confusion_matrix.json", cm.to_dict())
    plot_confusion_matrix(cm, out_dir / "confusion_matrix.png")
    written = ["confusion_matrix"]
    for iou_type, curves in result.coco.pr_curves.items():
        name = "pr_curves" if iou_type == "bbox" else f"pr_curves_{iou_type}"
        write_json(out_dir / f"{name}.json", curves)
        plot_pr_curves(curves, out_dir / f"{name}.png", title=f"Precision-recall [{iou_type}]")
        written.append(name)
    log(f"wrote {', '.join(f'{n}.json/.png' for n in written)} in {out_dir}")
