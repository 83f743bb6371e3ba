"""GeneralizedRCNNTransform: normalise, resize and batch images (and their targets) for a detector.

The resize keeps the aspect ratio: the short side goes to ``min_size`` unless that would push
the long side past ``max_size``. Boxes, masks and keypoints follow their image; ``postprocess``
maps the detections back to the caller's original image sizes.

The transform is scriptable (``torch.jit.script``) and traceable with free image height and
width: while tracing, sizes stay traced values (the resize scale, the resized and padded
sizes), so an exported graph resizes, pads and rescales boxes correctly at any input size.
"""
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchdet.errors import InvalidInputError, InvalidInputTypeError
from torchdet.models.image_list import ImageList
from torchdet.models.keypoint_ops import resize_keypoints
from torchdet.models.mask_ops import paste_masks_in_image

Target = Dict[str, Tensor]


def resize_boxes(boxes: Tensor, original_size: List[int], new_size: List[int]) -> Tensor:
    """Scale ``[N, 4]`` xyxy boxes from an ``(h, w)`` image to an ``(h', w')`` image, per axis.

    The ratios are float32 (``float32(h') / float32(h)``), as the reference computes them.
    """
    # 0-dim host tensors: a CUDA kernel takes them as scalars, with no copy to the device.
    ratio_height = torch.tensor(new_size[0], dtype=torch.float32) / torch.tensor(original_size[0], dtype=torch.float32)
    ratio_width = torch.tensor(new_size[1], dtype=torch.float32) / torch.tensor(original_size[1], dtype=torch.float32)
    x1, y1, x2, y2 = boxes.unbind(1)
    return torch.stack((x1 * ratio_width, y1 * ratio_height, x2 * ratio_width, y2 * ratio_height), dim=1)


def _resize_scale(image_shape: List[int], min_size: float, max_size: float) -> float:
    """The scale putting the short side at ``min_size`` without the long side passing ``max_size``.

    Computed in Python floats (double), as the reference does in eager mode: the scale decides
    the output size (``floor(side * scale)``), so float32 would change it (300 * 1.28 -> 383).
    """
    short, long = min(image_shape[0], image_shape[1]), max(image_shape[0], image_shape[1])
    return min(min_size / short, max_size / long)


@torch.jit.unused
def _traced_resized_size(image: Tensor, min_size: float, max_size: float) -> List[int]:
    """``floor((h, w) * scale)`` as traced values (tracing only): :func:`_resize_scale` on tensors, in double."""
    hw = torch._shape_as_tensor(image)[-2:].to(torch.float64)  # [2]
    # 1-element double tensors throughout: the ONNX exporter computes with 0-dim tensors and
    # Python numbers in float32, which moves floor(side * scale) (200 * 1.28 -> 255).
    min_size_t = torch.tensor([min_size], dtype=torch.float64, device=hw.device)
    max_size_t = torch.tensor([max_size], dtype=torch.float64, device=hw.device)
    scale = torch.min(min_size_t / hw.amin(0, keepdim=True), max_size_t / hw.amax(0, keepdim=True))  # [1]
    out = torch.floor(hw * scale).to(torch.int64)
    return [out[0], out[1]]  # type: ignore[list-item]  # 0-dim tensors stand in for ints in a trace


def _exporting() -> bool:
    """Under ``torch.export`` / ``torch.compile``, where image sizes may be symbolic."""
    return torch.compiler.is_compiling()


@torch.jit.unused
def _symbolic_resized_size(image: Tensor, min_size: float, max_size: float) -> List[int]:
    """:func:`_resize_scale` and ``floor(side * scale)`` without a branch on the sizes.

    ``sym_min`` / ``sym_max`` keep symbolic sizes symbolic (``min`` would guard on which side is
    shorter); on plain ints they are ``min`` / ``max``, so the values are the eager ones (double).
    """
    height, width = image.shape[-2], image.shape[-1]
    short, long = torch.sym_min(height, width), torch.sym_max(height, width)
    scale = torch.sym_min(min_size / short, max_size / long)
    # sym_int truncates: floor for these positive sizes, and a serializable op in a program.
    return [torch.sym_int(height * scale), torch.sym_int(width * scale)]


def _resize_image_and_masks(image: Tensor, min_size: int, max_size: int, target: Optional[Target],
                            fixed_size: Optional[Tuple[int, int]] = None) -> Tuple[Tensor, Optional[Target]]:
    """Resize a ``[C, H, W]`` image, and its target's ``[N, H, W]`` masks, by one scale (or to a fixed size)."""
    size: Optional[List[int]] = None
    scale_factor: Optional[float] = None
    recompute_scale_factor: Optional[bool] = None
    if fixed_size is not None:
        size = [fixed_size[1], fixed_size[0]]
    elif torch.jit.is_tracing():
        size = _traced_resized_size(image, float(min_size), float(max_size))
    elif not torch.jit.is_scripting() and _exporting():
        size = _symbolic_resized_size(image, float(min_size), float(max_size))
    else:
        scale_factor = _resize_scale(image.shape[-2:], float(min_size), float(max_size))
        recompute_scale_factor = True

    image = F.interpolate(image[None], size=size, scale_factor=scale_factor, mode="bilinear",
                          recompute_scale_factor=recompute_scale_factor, align_corners=False)[0]
    if target is not None and "masks" in target:
        masks = target["masks"]
        masks = F.interpolate(masks[:, None].float(), size=size, scale_factor=scale_factor,
                              recompute_scale_factor=recompute_scale_factor)[:, 0].byte()
        target["masks"] = masks
    return image, target


def _padded_size(images: List[Tensor], size_divisible: int) -> List[int]:
    """The smallest ``[C, H, W]`` holding every image, H and W rounded up to a multiple of ``size_divisible``."""
    padded = [0, 0, 0]
    for image in images:
        for d in range(3):
            padded[d] = max(padded[d], image.shape[d])
    stride = float(size_divisible)
    padded[1] = int(math.ceil(float(padded[1]) / stride) * stride)
    padded[2] = int(math.ceil(float(padded[2]) / stride) * stride)
    return padded


@torch.jit.unused
def _traced_batch_images(images: List[Tensor], size_divisible: int) -> Tensor:
    """``batch_images`` for a trace: padded sizes as traced values, the padding by ``F.pad`` (recorded,
    where an in-place copy into a preallocated batch is not)."""
    hw = torch.stack([torch._shape_as_tensor(image)[-2:] for image in images]).max(dim=0).values  # [2]
    hw = torch.div(hw + (size_divisible - 1), size_divisible, rounding_mode="floor") * size_divisible
    return torch.stack([F.pad(image, (0, hw[1] - image.shape[-1], 0, hw[0] - image.shape[-2]))  # type: ignore
                        for image in images])


@torch.jit.unused
def _symbolic_batch_images(images: List[Tensor], size_divisible: int) -> Tensor:
    """``batch_images`` on possibly symbolic sizes: ``sym_max`` and integer ceiling, no branch on a size."""
    height, width = images[0].shape[-2], images[0].shape[-1]
    for image in images[1:]:
        height, width = torch.sym_max(height, image.shape[-2]), torch.sym_max(width, image.shape[-1])
    height = (height + size_divisible - 1) // size_divisible * size_divisible
    width = (width + size_divisible - 1) // size_divisible * size_divisible
    return torch.stack([F.pad(image, (0, width - image.shape[-1], 0, height - image.shape[-2]))
                        for image in images])


class GeneralizedRCNNTransform(nn.Module):
    """Normalise, resize and batch images for a detector, and map detections back.

    Args:
        min_size: target short side; a tuple picks one at random per image in training, and
            uses the last in eval.
        max_size: cap on the long side after resizing.
        image_mean, image_std: per-channel normalisation (3 values each).
        size_divisible: the batch is zero-padded so H and W are multiples of this.
        fixed_size: ``(w, h)``; when given, every image is resized to exactly this size.
        _skip_resize: keyword; skip resizing in training (the images are already sized).
    """

    fixed_size: Optional[Tuple[int, int]]
    image_mean: List[float]
    image_std: List[float]

    def __init__(self, min_size: Union[int, Sequence[int]], max_size: int, image_mean: Sequence[float],
                 image_std: Sequence[float], size_divisible: int = 32,
                 fixed_size: Optional[Tuple[int, int]] = None, **kwargs: Any) -> None:
        super().__init__()
        if not isinstance(min_size, (list, tuple)):
            min_size = (min_size,)
        self.min_size = tuple(min_size)
        self.max_size = max_size
        self.image_mean = [float(m) for m in image_mean]
        self.image_std = [float(s) for s in image_std]
        self._normalization_cache: Dict[Any, Tuple[Tensor, Tensor]] = {}
        self.size_divisible = size_divisible
        self.fixed_size = fixed_size
        self._skip_resize = bool(kwargs.pop("_skip_resize", False))

    def forward(self, images: List[Tensor], targets: Optional[List[Dict[str, Tensor]]] = None
                ) -> Tuple[ImageList, Optional[List[Dict[str, Tensor]]]]:
        """Images ``[C, H_i, W_i]`` -> an ImageList ``[B, C, H, W]`` and the targets resized alike.

        The caller's lists and dicts are left untouched (shallow copies are modified).
        """
        images = [image for image in images]
        if targets is not None:
            copies: List[Dict[str, Tensor]] = []
            for t in targets:
                copy: Dict[str, Tensor] = {}
                for k, v in t.items():
                    copy[k] = v
                copies.append(copy)
            targets = copies
        for i in range(len(images)):
            image = images[i]
            if image.dim() != 3:
                raise InvalidInputError(f"image {i} has shape {list(image.shape)}; expected [C, H, W].")
            target: Optional[Dict[str, Tensor]] = None
            if targets is not None:
                target = targets[i]
            image = self.normalize(image)
            image, target = self.resize(image, target)
            images[i] = image
            if targets is not None and target is not None:
                targets[i] = target
        # Sizes as the shapes give them: ints, or traced values while tracing (kept dynamic).
        image_sizes = [(image.shape[-2], image.shape[-1]) for image in images]
        batched = self.batch_images(images, size_divisible=self.size_divisible)
        return ImageList(batched, image_sizes), targets

    def normalize(self, image: Tensor) -> Tensor:
        """``(image - mean) / std`` per channel; ``image`` is ``[C, H, W]`` floating point."""
        if not image.is_floating_point():
            raise InvalidInputTypeError(
                f"images must be floating point in [0, 1]; got dtype {image.dtype} (use image.float() / 255)."
            )
        if torch.jit.is_scripting():
            mean = torch.as_tensor(self.image_mean, dtype=image.dtype, device=image.device)
            std = torch.as_tensor(self.image_std, dtype=image.dtype, device=image.device)
        else:
            mean, std = self._mean_std(image)
        return (image - mean[:, None, None]) / std[:, None, None]

    @torch.jit.unused
    def _mean_std(self, image: Tensor) -> Tuple[Tensor, Tensor]:
        """``image_mean`` and ``image_std`` as tensors of the image's dtype and device, made once per
        (dtype, device, values): a copy to a GPU per image would stall the host each time."""
        key = (image.dtype, image.device, tuple(self.image_mean), tuple(self.image_std))
        cached = self._normalization_cache.get(key)
        if cached is None:
            cached = (torch.as_tensor(self.image_mean, dtype=image.dtype, device=image.device),
                      torch.as_tensor(self.image_std, dtype=image.dtype, device=image.device))
            self._normalization_cache = {key: cached}
        return cached

    def torch_choice(self, k: List[int]) -> int:
        """A uniformly random element of ``k``, drawn from torch's RNG."""
        index = int(torch.empty(1).uniform_(0.0, float(len(k))).item())
        return k[index]

    def resize(self, image: Tensor, target: Optional[Dict[str, Tensor]] = None
               ) -> Tuple[Tensor, Optional[Dict[str, Tensor]]]:
        """Resize one ``[C, H, W]`` image and its target (boxes, masks, keypoints)."""
        height, width = image.shape[-2], image.shape[-1]
        if self.training:
            if self._skip_resize:
                return image, target
            size = self.torch_choice([s for s in self.min_size])
        else:
            size = self.min_size[-1]
        image, target = _resize_image_and_masks(image, size, self.max_size, target, self.fixed_size)
        if target is None:
            return image, target
        new_size = [image.shape[-2], image.shape[-1]]
        target["boxes"] = resize_boxes(target["boxes"], [height, width], new_size)
        if "keypoints" in target:
            target["keypoints"] = resize_keypoints(target["keypoints"], [height, width], new_size)
        return image, target

    def batch_images(self, images: List[Tensor], size_divisible: int = 32) -> Tensor:
        """Zero-pad ``[C, H_i, W_i]`` images into one ``[B, C, H, W]`` tensor, H and W multiples of ``size_divisible``."""
        if torch.jit.is_tracing():
            return _traced_batch_images(images, size_divisible)
        if not torch.jit.is_scripting() and _exporting():
            return _symbolic_batch_images(images, size_divisible)
        shape = _padded_size(images, size_divisible)
        batched = images[0].new_full([len(images), shape[0], shape[1], shape[2]], 0)
        for i, image in enumerate(images):
            batched[i, : image.shape[0], : image.shape[1], : image.shape[2]].copy_(image)
        return batched

    def postprocess(self, result: List[Dict[str, Tensor]], image_shapes: List[Tuple[int, int]],
                    original_image_sizes: List[Tuple[int, int]]) -> List[Dict[str, Tensor]]:
        """Map detections from the resized images back to the original sizes (eval only).

        Boxes are rescaled, ``masks`` ``[N, 1, M, M]`` pasted into ``[N, 1, H, W]`` and
        ``keypoints`` rescaled.
        """
        if self.training:
            return result
        for i, pred in enumerate(result):
            resized_size = [image_shapes[i][0], image_shapes[i][1]]
            original_size = [original_image_sizes[i][0], original_image_sizes[i][1]]
            boxes = resize_boxes(pred["boxes"], resized_size, original_size)
            pred["boxes"] = boxes
            if "masks" in pred:
                pred["masks"] = paste_masks_in_image(pred["masks"], boxes, original_size)
            if "keypoints" in pred:
                pred["keypoints"] = resize_keypoints(pred["keypoints"], resized_size, original_size)
        return result

    @torch.jit.unused
    def __repr__(self) -> str:
        indent = "    "
        return (
            f"{self.__class__.__name__}(\n"
            f"{indent}Normalize(mean={self.image_mean}, std={self.image_std})\n"
            f"{indent}Resize(min_size={self.min_size}, max_size={self.max_size}, mode='bilinear')\n)"
        )
