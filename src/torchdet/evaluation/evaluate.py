"""Evaluate a detector on a dataset: COCO AP/AR (pycocotools) and, optionally, validation losses.

`evaluate_model` runs the model over the dataset in batches (each torchrun process takes a
share of the images), writes detections in the dataset's own image and category ids, and
scores them with COCOeval against the dataset's ground truth.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from torchdet import distributed
from torchdet.data.formats import category_ids
from torchdet.data.loaders import collate, move_targets
from torchdet.evaluation.coco_eval import CocoMetrics, evaluate_coco, gt_iou_types, make_coco
from torchdet.inference.coco_results import to_coco_results
from torchdet.progress import progress


@dataclass
class EvalResult:
    """What `evaluate_model` found: COCO metrics, the COCO results and mean validation losses."""

    coco: CocoMetrics
    detections: List[Dict[str, Any]]
    losses: Dict[str, float] = field(default_factory=dict)
    num_images: int = 0
    ground_truth: Any = None  # the pycocotools COCO the detections were scored against

    def flat(self) -> Dict[str, float]:
        """`{"bbox/AP": ..., "val/loss_classifier": ...}` for the metrics log."""
        row = {f"{t}/{k}": v for t, stats in self.coco.metrics.items() for k, v in stats.items()}
        row.update({f"val/{k}": v for k, v in self.losses.items()})
        return row


def label_to_category_id(model_categories: Sequence[str], dataset: Any, *, by_position: bool = False) -> Dict[int, int]:
    """Map the model's labels to the dataset's category ids, matching categories by name.

    Args:
        model_categories: the model's class names by label (index 0 the background; torchvision's
            COCO weights also have "N/A" holes).
        dataset: a torchdet detection dataset (`categories`, `label_to_category_id`).
        by_position: the deliberate case of a model whose class names differ from the dataset's
            but mean the same classes in the same order: map label i to the dataset's class i.

    Every dataset class must be found among the model's by name (the model may know more: their
    detections are left out of the scores); otherwise this refuses, naming the classes that differ,
    rather than score one class's detections against another's boxes.
    """
    dataset_names = list(dataset.categories)
    ids = category_ids(dataset)
    if by_position:
        if len(model_categories) != len(dataset_names):
            raise ValueError(f"cannot match classes by position: the model has {len(model_categories) - 1} classes, "
                             f"the dataset {len(dataset_names) - 1}")
        warnings.warn(f"matching the model's classes {list(model_categories[1:])} to the dataset's "
                      f"{dataset_names[1:]} by position, as asked", stacklevel=2)
        return {label: ids[label] for label in range(1, len(dataset_names))}
    by_name = {name: ids[label] for label, name in enumerate(dataset_names) if label > 0}
    mapping = {label: by_name[name] for label, name in enumerate(model_categories)
               if label > 0 and name in by_name}
    if len(mapping) == len(by_name):
        return mapping
    missing = [name for name in dataset_names[1:] if name not in model_categories]
    unknown = [name for name in model_categories[1:] if name not in by_name and name != "N/A"]
    hint = ("; if they are the same classes under other names, in the same order, pass "
            "--match-classes-by-position (by_position=True)" if len(model_categories) == len(dataset_names) else
            "; evaluate with a checkpoint trained on this dataset's categories")
    raise ValueError(f"the dataset's classes {missing[:10]} are not among the model's classes "
                     f"(the model has {len(model_categories) - 1}, e.g. {unknown[:10]}): scores would compare "
                     f"different classes{hint}")


def dataset_ground_truth(dataset: Any) -> Any:
    """A pycocotools COCO of the dataset's annotations (in its own ids).

    COCO-format datasets hand over their own file (crowd regions and polygons included);
    others (VOC, YOLO) are converted from their targets, without decoding any image.
    """
    if getattr(dataset, "coco", None) is not None:
        return make_coco(dataset.coco.dataset)
    images, annotations = [], []
    ids = category_ids(dataset)
    categories = [{"id": ids[label], "name": name} for label, name in enumerate(dataset.categories) if label > 0]
    for idx in range(len(dataset)):
        info = dataset.image_info(idx)
        images.append({"id": info["id"], "file_name": info["file_name"], "width": info["width"],
                       "height": info["height"]})
        target = dataset.load_target(idx, info["height"], info["width"])
        boxes = target["boxes"].tolist()
        labels = target["labels"].tolist()
        crowd = target.get("iscrowd", torch.zeros(len(boxes), dtype=torch.int64)).bool()
        if "difficult" in target:  # VOC's difficult objects are ignored, as COCO ignores crowds
            crowd = crowd | torch.as_tensor(target["difficult"]).bool()
        crowd = crowd.tolist()
        for j, (box, label) in enumerate(zip(boxes, labels)):
            x1, y1, x2, y2 = box
            annotations.append({"id": len(annotations) + 1, "image_id": info["id"],
                                "category_id": ids[label],
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                                "iscrowd": int(crowd[j])})
    return make_coco({"images": images, "annotations": annotations, "categories": categories})


def model_iou_types(outputs_example: Mapping[str, torch.Tensor]) -> List[str]:
    types = ["bbox"]
    if "masks" in outputs_example:
        types.append("segm")
    if "keypoints" in outputs_example:
        types.append("keypoints")
    return types


@contextlib.contextmanager
def _loss_mode(model: nn.Module):
    """Training mode (so the model returns losses) with normalisation layers kept in eval mode."""
    was_training = model.training
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._NormBase) or isinstance(m, nn.Dropout):
            m.eval()
    try:
        yield
    finally:
        model.train(was_training)


@torch.no_grad()
def evaluate_model(model: nn.Module, dataset: Any, *, device: torch.device, model_categories: Sequence[str],
                   batch_size: int = 2, workers: int = 0, iou_types: Optional[Sequence[str]] = None,
                   with_losses: bool = False, coco_gt: Any = None, show_progress: bool = False,
                   desc: str = "eval", classes_by_position: bool = False) -> EvalResult:
    """Run `model` on every image of `dataset` and score it with COCOeval.

    Args:
        model: an (unwrapped) detector; left in eval mode.
        dataset: a torchdet detection dataset without augmentation.
        device: where to run the model.
        model_categories: the model's class names by label (see `label_to_category_id`).
        iou_types: subset of bbox/segm/keypoints; default: what both the model's outputs and
            the ground truth have.
        with_losses: also compute the validation losses (training-mode forward, no update;
            the random generators are left as they were).
        coco_gt: the ground truth, when already built (see `dataset_ground_truth`).
        classes_by_position: see `label_to_category_id`'s `by_position`.

    Under torchrun each process evaluates a share of the images; every process returns the
    same, complete result.
    """
    info = distributed.current()
    label_map = label_to_category_id(model_categories, dataset, by_position=classes_by_position)
    indices = list(range(info.rank, len(dataset), info.world_size))
    loader = DataLoader(Subset(dataset, indices), batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=collate)
    results: List[Dict[str, Any]] = []
    loss_sums: Dict[str, float] = {}
    loss_batches = 0
    seen_ids: List[int] = []
    outputs_kinds: List[str] = []
    model.eval()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for images, targets in progress(loader, total=len(loader), desc=desc, enabled=show_progress):
            images = [img.to(device, non_blocking=True) for img in images]
            outputs = model(images)
            if not outputs_kinds and outputs:
                outputs_kinds = model_iou_types(outputs[0])
            for target, output in zip(targets, outputs):
                image_id = int(target["image_id"])
                seen_ids.append(image_id)
                kept = {k: v for k, v in output.items()}
                keep = torch.tensor([int(label) in label_map for label in kept["labels"].tolist()], dtype=torch.bool)
                if not bool(keep.all()):
                    kept = {k: v[keep.to(v.device)] for k, v in kept.items()}
                results.extend(to_coco_results(image_id, kept, _as_list(label_map), iou_types or
                                               ("bbox", "segm", "keypoints")))
            if with_losses:
                with _loss_mode(model):
                    losses = model(images, move_targets(targets, device))
                model.eval()
                for k, v in losses.items():
                    loss_sums[k] = loss_sums.get(k, 0.0) + float(v)
                loss_batches += 1
    gathered = distributed.all_gather_objects((results, seen_ids, outputs_kinds))
    all_results = [r for part in gathered for r in part[0]]
    all_ids = sorted({i for part in gathered for i in part[1]})
    kinds = next((part[2] for part in gathered if part[2]), ["bbox"])
    losses = {k: v / max(loss_batches, 1) for k, v in loss_sums.items()}
    if with_losses:
        losses["loss"] = sum(losses.values())
        losses = distributed.mean_over_processes(losses)
    coco_gt = coco_gt if coco_gt is not None else dataset_ground_truth(dataset)
    available = [t for t in kinds if t in gt_iou_types(coco_gt)]
    chosen = [t for t in (iou_types or available) if t in available]
    if iou_types and set(iou_types) - set(chosen):
        warnings.warn(f"cannot evaluate {sorted(set(iou_types) - set(chosen))}: the model or the ground truth "
                      f"lacks them; evaluating {chosen}", stacklevel=2)
    with contextlib.redirect_stdout(io.StringIO()):
        metrics = evaluate_coco(coco_gt, all_results, chosen, image_ids=all_ids)
    return EvalResult(coco=metrics, detections=all_results, losses=losses, num_images=len(all_ids),
                      ground_truth=coco_gt)


def _as_list(label_map: Mapping[int, int]) -> List[int]:
    """`label_map` as a list indexed by label (-1 where unmapped; those labels never reach it)."""
    size = max(label_map, default=0) + 1
    return [label_map.get(i, -1) for i in range(size)]
