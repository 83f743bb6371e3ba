"""Draw the README's pictures of sliced inference and tracking into docs/images/.

    PYTHONPATH=src:tests python scripts/make_readme_pictures.py [--out docs/images]

- sliced_prediction.png: a generated 2000 x 2000 image with 12 px (and a few 40 px) objects,
  predicted whole (left) and in 512 px tiles with 20% overlap (right, tiles outlined), shown at
  half size;
- tracked_frame.png: a frame of a generated video of moving squares, tracked, with each track's
  id and its path so far.

The detector is the test suite's blob detector (tests/inference/scenes.py), which resizes its
input like the R-CNNs (short side to 800 px) and needs objects of 8 px after that resize.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from inference.scenes import BlobDetector, moving_squares, recall, small_objects_scene  # noqa: E402
from torchdet.inference.slicing import SlicedPredictor, tile_grid  # noqa: E402
from torchdet.inference.tracking import ByteTracker  # noqa: E402
from torchdet.inference.video import draw_frame  # noqa: E402
from torchdet.visualization import color_palette, draw_bounding_boxes, draw_keypoints, save_image  # noqa: E402


def _smooth_background(height: int, width: int, seed: int) -> torch.Tensor:
    """A dark field of soft patches (compresses far better than pixel noise)."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.uniform(0.08, 0.35, size=(1, 3, height // 64 + 2, width // 64 + 2))).float()
    field = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)[0]
    return (field * torch.tensor([0.8, 1.0, 0.7])[:, None, None]).clamp(0, 0.45)


def _caption(image: torch.Tensor, text: str) -> torch.Tensor:
    picture = Image.fromarray(image.permute(1, 2, 0).numpy())
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=44)
    left, top, right, bottom = draw.textbbox((16, 12), text, font=font)
    draw.rectangle((left - 8, top - 6, right + 8, bottom + 6), fill=(0, 0, 0))
    draw.text((16, 12), text, fill=(255, 255, 255), font=font)
    return torch.from_numpy(np.array(picture)).permute(2, 0, 1)


def sliced_prediction(path: Path) -> None:
    image, truth = small_objects_scene(size=2000, small=12, large=40, spacing=125, large_every=9, seed=4)
    objects = torch.zeros(image.shape[1:], dtype=torch.bool)
    for x1, y1, x2, y2 in truth.int().tolist():
        objects[y1:y2, x1:x2] = True
    image = torch.where(objects, image, _smooth_background(*image.shape[1:], seed=4))
    detector = BlobDetector(min_size=800).eval()
    whole = detector([image])[0]["boxes"]
    sliced = SlicedPredictor(detector, 512, 0.2).eval()([image])[0]["boxes"]
    canvas = (image * 255).round().to(torch.uint8)
    left = draw_bounding_boxes(canvas, whole, colors="#ff3b30", width=4)
    left = _caption(left, f"whole image (resized to 800 px): {len(whole)} found, recall {recall(whole, truth):.2f}")
    tiles = tile_grid(*image.shape[1:], 512, 0.2)
    right = draw_bounding_boxes(canvas, tiles.float(), colors=(170, 170, 170), width=2)
    right = draw_bounding_boxes(right, sliced, colors="#34c759", width=4)
    right = _caption(right, f"512 px tiles, 20% overlap: {len(sliced)} found, recall {recall(sliced, truth):.2f}")
    gap = torch.full((3, image.shape[1], 16), 255, dtype=torch.uint8)
    both = torch.cat([left, gap, right], dim=2)
    both = F.interpolate(both[None].float(), scale_factor=0.5, mode="area")[0].round().to(torch.uint8)
    save_image(both, path)
    print(f"wrote {path}: {len(truth)} objects, whole image {len(whole)} found, sliced {len(sliced)} found")


def tracked_frame(path: Path, frame_index: int = 49, scale: int = 2) -> None:
    frames, truth = moving_squares(num_frames=frame_index + 1, size=(240, 320), num_objects=5, side=24, seed=7)
    background = (_smooth_background(240, 320, seed=5) * 255).round().to(torch.uint8)
    for frame, boxes in zip(frames, truth):
        objects = torch.zeros(frame.shape[1:], dtype=torch.bool)
        for x1, y1, x2, y2 in (map(int, box) for box in boxes.values()):
            objects[y1:y2, x1:x2] = True
        frame.copy_(torch.where(objects, frame, background))
    detector = BlobDetector(min_size=240).eval()
    tracker = ByteTracker()
    paths: Dict[int, List[List[float]]] = {}
    for frame in frames:
        output = tracker.update(detector([frame.float() / 255])[0])
        for track, box in zip(output["track_ids"].tolist(), output["boxes"].tolist()):
            paths.setdefault(track, []).append([(box[0] + box[2]) / 2 * scale, (box[1] + box[3]) / 2 * scale])
    big = F.interpolate(frames[-1][None].float(), scale_factor=scale, mode="nearest")[0].to(torch.uint8)
    palette = color_palette(max(paths) + 1)
    for track, points in paths.items():
        if len(points) > 1:
            trail = torch.tensor(points)[None]  # [1, T, 2]
            big = draw_keypoints(big, trail, connectivity=[(i, i + 1) for i in range(len(points) - 1)],
                                 colors=palette[track], radius=1, width=2)
    output = {k: v for k, v in output.items()}
    output["boxes"] = output["boxes"] * scale
    picture = draw_frame(big, output, ["__background__", "square"], width=3, font_size=16)
    save_image(picture, path)
    print(f"wrote {path}: frame {frame_index}, {tracker.tracks_started} tracks, ids {sorted(paths)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "docs" / "images"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    sliced_prediction(out / "sliced_prediction.png")
    tracked_frame(out / "tracked_frame.png")


if __name__ == "__main__":
    main()
