"""Run a torchdet AOTInductor package on an image, with no torchdet model code.

    python scripts/run_aoti.py model.pt2 image.jpg [--score 0.5]
    python scripts/run_aoti.py model.pt2 --random 480 640    # a random image of that size

The package (``torchdet export --format aoti``) holds the whole detector (resize, backbone, heads,
postprocessing). Only its two custom ops need registering: ``import torchdet.ops`` (NMS and RoIAlign
kernels; no model classes). Prints one line per detection: label, score, box (x1 y1 x2 y2, input pixels).
"""
from __future__ import annotations

import argparse
import time

import torch

import torchdet.ops  # noqa: F401  (registers torchdet::nms and torchdet::roi_align for the package)


def read_image(path: str) -> torch.Tensor:
    """``[3, H, W]`` float in 0..1."""
    from PIL import Image
    import numpy as np

    array = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("package")
    parser.add_argument("image", nargs="?")
    parser.add_argument("--random", type=int, nargs=2, metavar=("H", "W"))
    parser.add_argument("--score", type=float, default=0.0)
    parser.add_argument("--check-no-model-code", action="store_true",
                        help="fail if torchdet's model modules were imported (tests)")
    args = parser.parse_args()
    if (args.image is None) == (args.random is None):
        parser.error("give an image file or --random H W")
    image = read_image(args.image) if args.image else torch.rand(3, *args.random, generator=torch.Generator().manual_seed(0))
    runner = torch._inductor.aoti_load_package(args.package)
    start = time.perf_counter()
    boxes, scores, labels, num_detections = runner(image[None])[:4]
    elapsed = time.perf_counter() - start
    count = int(num_detections[0])
    for box, score, label in zip(boxes[0, :count], scores[0, :count], labels[0, :count]):
        if float(score) >= args.score:
            print(f"{int(label)} {float(score):.4f} " + " ".join(f"{float(v):.2f}" for v in box))
    print(f"# {count} detections in {elapsed * 1000:.1f} ms", flush=True)
    if args.check_no_model_code:
        import sys

        loaded = sorted(m for m in sys.modules if m.startswith(("torchdet.models", "torchdet.backbones")))
        if loaded:
            raise SystemExit(f"model code was imported: {loaded}")


if __name__ == "__main__":
    main()
