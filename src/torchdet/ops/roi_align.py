"""RoIAlign (He et al., Mask R-CNN), pure PyTorch, numerically matching torchvision's kernel.

For each RoI the output bin ``(ph, pw)`` averages ``grid_h * grid_w`` bilinear samples taken on a
regular grid inside the bin. The sampling rules follow the reference kernel exactly:

- ``aligned=False``: RoI corners are ``box * spatial_scale`` and the RoI size is clamped to at
  least 1; ``aligned=True``: half a pixel is subtracted from the corners and nothing is clamped;
- ``sampling_ratio > 0`` gives a fixed grid; otherwise each RoI uses ``ceil(roi_size / output)``
  samples per bin in each direction, so the grid varies from RoI to RoI;
- a sample with ``y < -1``, ``y > H``, ``x < -1`` or ``x > W`` contributes 0; otherwise negative
  coordinates are raised to 0 and coordinates past the last row/column read that row/column;
- the sum is divided by ``max(grid_h * grid_w, 1)``.

How it runs: every sample reads four pixels, so each output bin is a weighted sum of
``4 * grid_h * grid_w`` pixel vectors. The feature map is viewed as a table of ``C``-vectors
(``[B*H*W, C]``, channels last) and one ``F.embedding_bag(mode="sum", per_sample_weights=...)``
call per chunk of RoIs gathers and sums them without materialising the samples. RoIs are sorted
by grid size and processed in chunks so that padding and memory stay bounded. The result is
differentiable with respect to ``input`` (not the boxes, as in torchvision).
"""
from __future__ import annotations

from typing import List, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["roi_align", "RoIAlign"]

BoxesArg = Union[Tensor, List[Tensor]]

_MAX_ENTRIES_PER_CHUNK = 1 << 22  # gathered (pixel, weight) pairs per embedding_bag call


def _pair(size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(size, int):
        return size, size
    size = tuple(int(s) for s in size)
    if len(size) == 1:
        return size[0], size[0]
    if len(size) != 2:
        raise ValueError(f"output_size must be an int or a pair (height, width), got {size}")
    return size  # type: ignore[return-value]


def _boxes_to_rois(boxes: List[Tensor]) -> Tensor:
    """List of per-image ``[L_i, 4]`` boxes -> ``[sum L_i, 5]`` rows ``(image index, x1, y1, x2, y2)``."""
    for i, b in enumerate(boxes):
        if b.dim() != 2 or b.shape[-1] != 4:
            raise ValueError(f"roi_align: boxes[{i}] must have shape [L, 4], got {tuple(b.shape)}")
    if len(boxes) == 0:
        return torch.zeros((0, 5))
    concat = torch.cat(boxes, dim=0)
    ids = torch.cat([torch.full_like(b[:, :1], i) for i, b in enumerate(boxes)], dim=0)
    return torch.cat([ids, concat], dim=1)


def _check_rois(rois: Tensor) -> None:
    if rois.dim() != 2 or rois.shape[1] != 5:
        raise ValueError(
            f"roi_align: boxes must be a Tensor[K, 5] of (batch index, x1, y1, x2, y2) or a list of "
            f"Tensor[L, 4], got a tensor of shape {tuple(rois.shape)}"
        )


def _axis_samples(
    start: Tensor, bin_size: Tensor, grid: Tensor, max_grid: int, pooled: int, length: int
) -> Tuple[Tensor, Tensor]:
    """Bilinear taps along one axis for every (RoI, bin, sample).

    Args:
        start: ``[K]`` RoI start coordinate (feature-map pixels).
        bin_size: ``[K]`` bin size along the axis.
        grid: ``[K]`` int samples per bin along the axis (0 allowed).
        max_grid: at least ``grid.max()``; samples past a RoI's own grid get zero weight.
        pooled: number of output bins along the axis.
        length: feature-map size along the axis.

    Returns:
        ``(index, weight)``, both ``[K, pooled, max_grid, 2]``: the low and high pixel of each
        sample and their interpolation weights (zero for samples that contribute nothing).
    """
    dtype = start.dtype
    bins = torch.arange(pooled, dtype=dtype, device=start.device)[None, :, None]  # [1, P, 1]
    steps = torch.arange(max_grid, device=start.device)  # [G]
    start, bin_size = start[:, None, None], bin_size[:, None, None]  # [K, 1, 1]
    grid = grid[:, None, None]  # [K, 1, 1]
    # Same operation order as the reference kernel, so positions agree to the last bit.
    pos = start + bins * bin_size + (steps.to(dtype) + 0.5) * bin_size / grid.clamp(min=1).to(dtype)  # [K, P, G]
    valid = (steps < grid) & (pos >= -1.0) & (pos <= length)
    pos = torch.where(valid, pos.clamp(min=0.0), torch.zeros((), dtype=dtype, device=pos.device))
    low = pos.long()  # truncation == floor, pos >= 0
    at_end = low >= length - 1
    low = torch.where(at_end, torch.full_like(low, length - 1), low)
    high = torch.where(at_end, low, low + 1)
    frac = torch.where(at_end, torch.zeros_like(pos), pos - low.to(dtype))
    zero = torch.zeros_like(pos)
    index = torch.stack((low, high), dim=-1)  # [K, P, G, 2]
    weight = torch.stack((torch.where(valid, 1.0 - frac, zero), torch.where(valid, frac, zero)), dim=-1)
    return index, weight


def _roi_geometry(
    rois: Tensor, pooled_h: int, pooled_w: int, spatial_scale: float, sampling_ratio: int, aligned: bool
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Start, bin size and samples per bin of every RoI, in both directions.

    Returns:
        ``(start_y, start_x, bin_h, bin_w, grid_h, grid_w)``, each ``[K]``.
    """
    dtype = rois.dtype
    scale = torch.tensor(spatial_scale, dtype=dtype, device=rois.device)
    offset = torch.tensor(0.5 if aligned else 0.0, dtype=dtype, device=rois.device)
    start_x = rois[:, 1] * scale - offset
    start_y = rois[:, 2] * scale - offset
    roi_w = rois[:, 3] * scale - offset - start_x
    roi_h = rois[:, 4] * scale - offset - start_y
    if not aligned:
        roi_w = roi_w.clamp(min=1.0)
        roi_h = roi_h.clamp(min=1.0)
    bin_h = roi_h / pooled_h
    bin_w = roi_w / pooled_w
    if sampling_ratio > 0:
        grid_h = torch.full_like(rois[:, 0], sampling_ratio, dtype=torch.long)
        grid_w = grid_h
    else:
        grid_h = torch.ceil(roi_h / pooled_h).long()
        grid_w = torch.ceil(roi_w / pooled_w).long()
    return start_y, start_x, bin_h, bin_w, grid_h, grid_w


def _chunks(cost: List[int], budget: int) -> List[Tuple[int, int]]:
    """Split ``cost`` (non-decreasing per-item padded cost) into ranges whose padded total fits ``budget``."""
    ranges, begin = [], 0
    for i, c in enumerate(cost):
        if i > begin and (i + 1 - begin) * c > budget:
            ranges.append((begin, i))
            begin = i
    ranges.append((begin, len(cost)))
    return ranges


def roi_align(
    input: Tensor,
    boxes: BoxesArg,
    output_size: Union[int, Sequence[int]],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """Pool a fixed-size feature for each region of interest.

    Args:
        input: ``[B, C, H, W]`` feature maps.
        boxes: ``Tensor[K, 5]`` rows ``(batch index, x1, y1, x2, y2)``, or a list of ``B``
            tensors ``[L_i, 4]`` of ``(x1, y1, x2, y2)`` per image. Coordinates are in the input
            image's frame; ``spatial_scale`` maps them onto the feature map.
        output_size: ``h`` or ``(h, w)`` of the pooled output.
        spatial_scale: feature-map size over image size (e.g. ``1/16``).
        sampling_ratio: samples per bin in each direction; ``<= 0`` means adaptive,
            ``ceil(roi_size / output_size)`` per RoI.
        aligned: subtract half a pixel from the box corners (pixel-centre alignment).

    Returns:
        ``[K, C, h, w]`` pooled features, same dtype and device as ``input``.
    """
    if input.dim() != 4:
        raise ValueError(f"roi_align expects input of shape [B, C, H, W], got {tuple(input.shape)}")
    rois = boxes if isinstance(boxes, Tensor) else _boxes_to_rois(list(boxes))
    _check_rois(rois)
    pooled_h, pooled_w = _pair(output_size)
    batch, channels, height, width = input.shape
    num_rois = rois.shape[0]
    out_dtype = input.dtype
    compute_dtype = input.dtype if input.dtype in (torch.float32, torch.float64) else torch.float32
    if num_rois == 0 or height == 0 or width == 0:
        return input.new_zeros((num_rois, channels, pooled_h, pooled_w))

    rois = rois.detach().to(device=input.device, dtype=compute_dtype)
    # Pixel table, one C-vector per (image, row, column).
    table = input.to(compute_dtype).permute(0, 2, 3, 1).reshape(batch * height * width, channels)
    start_y, start_x, bin_h, bin_w, grid_h, grid_w = _roi_geometry(
        rois, pooled_h, pooled_w, spatial_scale, sampling_ratio, aligned
    )
    base = rois[:, 0].long() * (height * width)  # [K] first table row of each RoI's image
    inv_count = 1.0 / (grid_h * grid_w).clamp(min=1).to(compute_dtype)  # [K]

    # Sort by samples per bin so each chunk pads its grid to nearly uniform sizes.
    samples = grid_h * grid_w
    order = torch.argsort(samples, stable=True)
    bag = (samples[order].clamp(min=1) * 4 * pooled_h * pooled_w).tolist()
    result = input.new_zeros((num_rois, channels, pooled_h, pooled_w), dtype=compute_dtype)
    for begin, end in _chunks(bag, _MAX_ENTRIES_PER_CHUNK):
        idx = order[begin:end]
        gh, gw = int(grid_h[idx].max()), int(grid_w[idx].max())
        y_index, y_weight = _axis_samples(start_y[idx], bin_h[idx], grid_h[idx], max(gh, 1), pooled_h, height)
        x_index, x_weight = _axis_samples(start_x[idx], bin_w[idx], grid_w[idx], max(gw, 1), pooled_w, width)
        k = idx.numel()
        # [k, ph, pw, gh, gw, 2 (y tap), 2 (x tap)] -> one bag per output bin.
        entry = (
            base[idx].view(k, 1, 1, 1, 1, 1, 1)
            + y_index.view(k, pooled_h, 1, -1, 1, 2, 1) * width
            + x_index.view(k, 1, pooled_w, 1, -1, 1, 2)
        )
        weight = (
            y_weight.view(k, pooled_h, 1, -1, 1, 2, 1)
            * x_weight.view(k, 1, pooled_w, 1, -1, 1, 2)
            * inv_count[idx].view(k, 1, 1, 1, 1, 1, 1)
        )
        bags = k * pooled_h * pooled_w
        pooled = F.embedding_bag(
            entry.reshape(bags, -1), table, mode="sum", per_sample_weights=weight.reshape(bags, -1)
        )  # [k * ph * pw, C]
        result[idx] = pooled.view(k, pooled_h, pooled_w, channels).permute(0, 3, 1, 2)
    return result.to(out_dtype)


class RoIAlign(nn.Module):
    """Module form of :func:`roi_align` with fixed pooling parameters."""

    def __init__(
        self,
        output_size: Union[int, Sequence[int]],
        spatial_scale: float,
        sampling_ratio: int,
        aligned: bool = False,
    ) -> None:
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned

    def forward(self, input: Tensor, rois: BoxesArg) -> Tensor:
        """``input [B, C, H, W]``, ``rois`` as in :func:`roi_align` -> ``[K, C, h, w]``."""
        return roi_align(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned})"
        )
