"""Prediction on image files: sources (files, folders, globs) in, COCO results and pictures out.

`predict_images` runs a detector over image files in batches and returns one COCO result
dict per detection above the score threshold (with the image's file name and the class
name beside the usual fields); with `out_dir` it also writes each image with its detections
drawn (boxes with class names and scores, masks, keypoint skeletons).
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from torchdet.data.image_io import IMAGE_SUFFIXES, read_image
from torchdet.inference.coco_results import to_coco_results
from torchdet.progress import progress


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def expand_sources(sources: Sequence[Union[str, os.PathLike]]) -> List[Path]:
    """Image files named by `sources`: files, folders (their images, sorted) or glob patterns.

    Raises FileNotFoundError naming a source that does not exist, and ValueError when the
    sources hold no image at all.
    """
    if not sources:
        raise ValueError("no image source given; pass image files, folders or glob patterns")
    found: List[Path] = []
    for source in sources:
        text = str(source)
        path = Path(text)
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.is_file() and _is_image(p))
        elif path.is_file():
            found.append(path)
        elif _is_glob(text):
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True))
            images = [p for p in matches if p.is_file() and _is_image(p)]
            if not images:
                raise FileNotFoundError(f"the pattern {text!r} matches no image file "
                                        f"(image suffixes: {', '.join(IMAGE_SUFFIXES)})")
            found += images
        else:
            raise FileNotFoundError(f"image source not found: {text!r} is neither a file, a folder nor a "
                                    "glob pattern")
    unique = list(dict.fromkeys(found))
    if not unique:
        raise ValueError(f"no image files in {[str(s) for s in sources]} "
                         f"(image suffixes: {', '.join(IMAGE_SUFFIXES)})")
    return unique


class _ImageFiles(Dataset):
    """(index, image [3, H, W] or the error message) for each path; decoding errors are returned."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, idx: int) -> Tuple[int, Union[torch.Tensor, str]]:
        try:
            return idx, read_image(self.paths[idx])
        except OSError as error:
            return idx, str(error)


def _collate(batch: Sequence[Tuple[int, Any]]) -> List[Tuple[int, Any]]:
    return list(batch)


@dataclass
class PredictResult:
    """`predictions`: COCO results (+ file_name, category_name); `pictures`: files written;
    `skipped`: (path, reason) of images that could not be read."""

    predictions: List[Dict[str, Any]]
    images: List[Dict[str, Any]]
    pictures: List[Path] = field(default_factory=list)
    skipped: List[Tuple[str, str]] = field(default_factory=list)


def _output_names(paths: Sequence[Path]) -> List[str]:
    """A distinct output file name per input (`a.jpg`, `a_1.jpg`... when names repeat), as PNG
    when the input format cannot be written losslessly."""
    names: List[str] = []
    used: Dict[str, int] = {}
    for p in paths:
        suffix = p.suffix.lower() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp") else ".png"
        base = f"{p.stem}{suffix}"
        n = used.get(base, 0)
        used[base] = n + 1
        names.append(base if n == 0 else f"{p.stem}_{n}{suffix}")
    return names


@torch.no_grad()
def predict_images(model: nn.Module, paths: Sequence[Path], *, device: torch.device, categories: Sequence[str],
                   category_ids: Optional[Sequence[int]] = None, score_thresh: float = 0.5,
                   batch_size: int = 4, workers: int = 0, out_dir: Optional[Path] = None,
                   skip_bad_images: bool = False, keypoint_skeleton: Optional[Sequence[Tuple[int, int]]] = None,
                   picture_scale: float = 1.0, show_progress: bool = False) -> PredictResult:
    """Run `model` over the image files `paths`.

    Args:
        model: a detector (put in eval mode here).
        paths: image files (see `expand_sources`).
        categories: class names by label (index 0 background).
        category_ids: the dataset category id of each label (default: the label itself).
        score_thresh: detections below this score are left out of the JSON and pictures.
        out_dir: where to write the annotated pictures (None: no pictures).
        skip_bad_images: skip (and count) unreadable images instead of raising.
        keypoint_skeleton: 0-based keypoint index pairs to draw as lines.
        picture_scale: enlarge the pictures by this factor (small images get readable captions).

    Images get ids 1..N in `paths` order (`images` lists id, file_name and size).
    """
    model.eval()
    ids = list(category_ids) if category_ids else list(range(len(categories)))
    loader = DataLoader(_ImageFiles(paths), batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=_collate)
    names = _output_names(paths)
    result = PredictResult(predictions=[], images=[])
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    for batch in progress(loader, total=len(loader), desc="predict", enabled=show_progress):
        good = []
        for idx, item in batch:
            if isinstance(item, str):
                if not skip_bad_images:
                    raise OSError(f"{item}. Pass --skip-bad-images to skip unreadable images")
                result.skipped.append((str(paths[idx]), item))
                continue
            good.append((idx, item))
        if not good:
            continue
        outputs = model([img.to(device) for _, img in good])
        for (idx, image), output in zip(good, outputs):
            keep = output["scores"] >= score_thresh
            output = {k: v[keep].cpu() for k, v in output.items()}
            image_id = idx + 1
            result.images.append({"id": image_id, "file_name": str(paths[idx]), "height": int(image.shape[-2]),
                                  "width": int(image.shape[-1])})
            for det in to_coco_results(image_id, output, ids):
                det["file_name"] = str(paths[idx])
                det["category_name"] = categories[ids.index(det["category_id"])]
                result.predictions.append(det)
            if out_dir is not None:
                picture = Path(out_dir) / names[idx]
                _save_picture(image, output, categories, picture, keypoint_skeleton, picture_scale)
                result.pictures.append(picture)
    return result


def _save_picture(image: torch.Tensor, output: Dict[str, torch.Tensor], categories: Sequence[str], path: Path,
                  skeleton: Optional[Sequence[Tuple[int, int]]], scale: float = 1.0) -> None:
    """Draw `output` on `image` [3, H, W] (0..1), enlarged `scale` times, and save it to `path`."""
    from torchdet.visualization import draw_detections, save_image

    if scale != 1.0:
        image, output = _enlarge(image, output, scale)
    drawn = draw_detections(image, output, categories=list(categories), score_thresh=0.0,
                            connectivity=[tuple(pair) for pair in skeleton] if skeleton else None)
    save_image(drawn, path)


def _enlarge(image: torch.Tensor, output: Dict[str, torch.Tensor], scale: float
             ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """`image` [3, H, W] and its detections (boxes, masks, keypoints) resized by `scale`."""
    import torch.nn.functional as F

    size = (max(1, round(image.shape[-2] * scale)), max(1, round(image.shape[-1] * scale)))
    image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0].clamp(0, 1)
    output = dict(output)
    output["boxes"] = output["boxes"] * scale
    if "keypoints" in output:
        keypoints = output["keypoints"].clone()
        keypoints[..., :2] *= scale
        output["keypoints"] = keypoints
    if "masks" in output and len(output["masks"]):
        masks = output["masks"].float()
        masks = masks if masks.dim() == 4 else masks[:, None]
        output["masks"] = F.interpolate(masks, size=size, mode="bilinear", align_corners=False)
    return image, output
