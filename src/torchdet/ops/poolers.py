"""Multi-scale RoIAlign over FPN levels (torchvision's ``MultiScaleRoIAlign``).

Each box is pooled from one level, chosen by its size (FPN paper, eq. 1):
``k = floor(canonical_level + log2(sqrt(area) / canonical_scale) + 1e-6)``, clamped to the
levels present. A level's scale is inferred from its size relative to the largest image in
the batch, rounded to a power of two.

The op's forms (``multi_scale_roi_align_dispatch``):

- reference (TorchScript, tracing, torch.export / torch.compile): each level pooled with
  ``roi_align`` on its own boxes and scattered back into box order; ``roi_align`` picks its own
  form per mode (ONNX ``RoiAlign`` while tracing, the ``torchdet::roi_align`` custom op under
  torch.export), so the levels' box counts may be unbacked sizes;
- ``"pixel_table"`` (eager): all levels flattened into one pixel table and every box pooled in a
  single pass, in box order without a scatter.

``torch.fx`` symbolic tracing records the feature filter, the scale inference and the pooling
as three calls (``torch.fx.wrap``).
"""

import math
from typing import Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from torchdet.ops._profiling import profiled
from torchdet.ops.boxes import box_area
from torchdet.ops.dispatch import OpDispatcher
from torchdet.ops.roi_align import (
    _boxes_to_rois,
    _compute_dtype,
    _pair,
    _pixel_tables,
    _pool_bins,
    _roi_geometry,
    roi_align,
)

__all__ = ["MultiScaleRoIAlign", "LevelMapper", "initLevelMapper", "multi_scale_roi_align", "multi_scale_roi_align_dispatch"]


class LevelMapper:
    """Assigns each box to an FPN level (FPN paper, eq. 1).

    Args:
        k_min: finest level present (e.g. 2 for P2).
        k_max: coarsest level present.
        canonical_scale: box side that maps to ``canonical_level`` (224, the ImageNet size).
        canonical_level: level of a ``canonical_scale`` box.
        eps: added before the floor so that exact powers of two land on the higher level.
    """

    def __init__(
        self, k_min: int, k_max: int, canonical_scale: int = 224, canonical_level: int = 4, eps: float = 1e-6
    ) -> None:
        self.k_min = k_min
        self.k_max = k_max
        self.s0 = canonical_scale
        self.lvl0 = canonical_level
        self.eps = eps

    def __call__(self, boxlists: List[Tensor]) -> Tensor:
        """Per-image ``[L_i, 4]`` boxes -> ``[sum L_i]`` int64 level indices, 0 for ``k_min``."""
        side = torch.sqrt(torch.cat([box_area(boxes) for boxes in boxlists]))  # [K]
        level = torch.floor(self.lvl0 + torch.log2(side / self.s0) + torch.tensor(self.eps, dtype=side.dtype))
        level = torch.clamp(level, min=self.k_min, max=self.k_max)
        return (level.to(torch.int64) - self.k_min).to(torch.int64)


def initLevelMapper(  # noqa: N802 (torchvision's name)
    k_min: int, k_max: int, canonical_scale: int = 224, canonical_level: int = 4, eps: float = 1e-6
) -> LevelMapper:
    return LevelMapper(k_min, k_max, canonical_scale, canonical_level, eps)


def _infer_scale(feature: Tensor, original_size: List[int]) -> float:
    """Feature size over image size along the height, rounded to a power of two.

    While tracing, the sizes are traced values and the scale becomes a constant of the graph:
    that is right at every input size, because the backbone's strides fix the ratio (a level of
    stride s has ``ceil(H_padded / s)`` rows, ``H <= H_padded < H + 32``), and rounding the log2
    absorbs the padding for any image taller than a few dozen pixels.
    """
    approx = float(feature.shape[-2]) / float(original_size[0])
    return 2.0 ** float(round(math.log(approx) / math.log(2.0)))  # math.log2 is not in TorchScript


@torch.jit.unused
def _size_hint(size: int) -> int:
    """A size as an int; for a symbolic size, the example's value, without adding a guard."""
    if isinstance(size, torch.SymInt):
        from torch.fx.experimental.symbolic_shapes import optimization_hint

        return int(optimization_hint(size))
    return int(size)


@torch.fx.wrap
def _setup_scales(
    features: List[Tensor], image_shapes: List[Tuple[int, int]], canonical_scale: int, canonical_level: int
) -> Tuple[List[float], LevelMapper]:
    if len(image_shapes) == 0:
        raise ValueError("MultiScaleRoIAlign: image_shapes is empty; pass the (height, width) of every image")
    max_height, max_width = 0, 0
    if not torch.jit.is_scripting() and torch.compiler.is_compiling():
        # Symbolic sizes (torch.export, torch.compile): the scales are constants of the graph
        # (see _infer_scale), read from the example's sizes without guarding on them.
        image_shapes = [(_size_hint(h), _size_hint(w)) for h, w in image_shapes]
        features = [feature.new_empty((1, 1, _size_hint(feature.shape[-2]), 1)) for feature in features]
    for shape in image_shapes:
        max_height = max(max_height, int(shape[0]))
        max_width = max(max_width, int(shape[1]))
    scales = [_infer_scale(feature, [max_height, max_width]) for feature in features]
    # Levels are the negative log2 of the scales: 1/4 -> level 2.
    lvl_min = int(round(-math.log(scales[0]) / math.log(2.0)))
    lvl_max = int(round(-math.log(scales[-1]) / math.log(2.0)))
    return scales, initLevelMapper(lvl_min, lvl_max, canonical_scale, canonical_level)


@torch.fx.wrap
def _filter_features(x: Dict[str, Tensor], featmap_names: List[str]) -> List[Tensor]:
    """The maps of ``x`` named in ``featmap_names``, in the dict's order (as torchvision: a MobileNet
    FPN yields "0", "1", "pool" for the default ["0", "1", "2", "3"])."""
    features: List[Tensor] = []
    for name, feature in x.items():
        if name in featmap_names:
            features.append(feature)
    if len(features) == 0:
        raise ValueError(
            f"MultiScaleRoIAlign: none of the feature maps {featmap_names} is in the backbone's "
            f"output {list(x.keys())}; pass featmap_names that the backbone returns"
        )
    return features


def _multi_scale_roi_align_reference(
    features: List[Tensor],
    boxes: List[Tensor],
    output_size: Tuple[int, int],
    sampling_ratio: int,
    scales: List[float],
    mapper: LevelMapper,
) -> Tensor:
    """One ``roi_align`` per level on the boxes of that level, scattered back into box order.

    Args:
        features: ``[B, C, H_l, W_l]`` per level, finest first; boxes: per image ``[L_i, 4]``.
        scales: feature size over image size per level; mapper: box -> level index.

    Returns:
        ``[sum L_i, C, h, w]`` in box order.
    """
    first = features[0]
    rois = _boxes_to_rois(boxes).to(first.dtype)
    if len(features) == 1:
        return roi_align(first, rois, output_size, spatial_scale=scales[0], sampling_ratio=sampling_ratio)
    levels = mapper(boxes)  # [K]
    result = torch.zeros((rois.shape[0], first.shape[1], output_size[0], output_size[1]),
                         dtype=first.dtype, device=first.device)
    for level, feature in enumerate(features):
        index = torch.where(levels == level)[0]  # [K_l]
        pooled = roi_align(feature, rois[index], output_size, spatial_scale=scales[level],
                           sampling_ratio=sampling_ratio)
        result = result.index_put((index,), pooled)
    return result


multi_scale_roi_align_dispatch = OpDispatcher("multi_scale_roi_align", reference=_multi_scale_roi_align_reference)


@multi_scale_roi_align_dispatch.register("pixel_table", modes=("eager",))
def _multi_scale_roi_align_pixel_table(
    features: List[Tensor],
    boxes: List[Tensor],
    output_size: Tuple[int, int],
    sampling_ratio: int,
    scales: List[float],
    mapper: LevelMapper,
) -> Tensor:
    """The reference's values in one pass over one pixel table of all levels (see ``roi_align``)."""
    rois = _boxes_to_rois(boxes)
    first = features[0]
    if len(features) == 1:
        return roi_align(first, rois, output_size, spatial_scale=scales[0], sampling_ratio=sampling_ratio)
    num_rois, channels = rois.shape[0], first.shape[1]
    if num_rois == 0:
        return first.new_zeros((0, channels) + tuple(output_size))
    device = first.device
    dtype = _compute_dtype(first.dtype)
    levels = mapper(boxes).to(device)  # [K]
    rois = rois.detach().to(device=device, dtype=dtype)
    heights = torch.tensor([f.shape[-2] for f in features], device=device)
    widths = torch.tensor([f.shape[-1] for f in features], device=device)
    level_rows = torch.tensor([f.shape[0] * f.shape[-2] * f.shape[-1] for f in features], device=device)
    level_start = torch.cumsum(level_rows, 0) - level_rows  # first table row of each level
    table = _pixel_tables(features, dtype)  # [sum B*H*W, C]
    height, width = heights[levels], widths[levels]  # [K]
    base = level_start[levels] + rois[:, 0].long() * height * width
    scale = torch.tensor(scales, dtype=dtype, device=device)[levels]
    geometry = _roi_geometry(rois, output_size[0], output_size[1], scale, sampling_ratio, aligned=False)
    bins = _pool_bins(table, base, height, width, geometry, output_size)
    return bins.permute(0, 3, 1, 2).contiguous().to(first.dtype)


@torch.fx.wrap
def multi_scale_roi_align(
    features: List[Tensor],
    boxes: List[Tensor],
    output_size: Tuple[int, int],
    sampling_ratio: int,
    scales: List[float],
    mapper: LevelMapper,
) -> Tensor:
    """Pool every box from its FPN level: ``[sum L_i, C, h, w]``, in the order of ``boxes``.

    Args:
        features: ``[B, C, H_l, W_l]`` per level, finest first.
        boxes: per image ``[L_i, 4]`` boxes in ``xyxy`` image coordinates.
        output_size: ``(h, w)``; sampling_ratio: as in ``roi_align``.
        scales, mapper: from ``MultiScaleRoIAlign`` (each level's scale, the box -> level rule).
    """
    if torch.jit.is_scripting():
        return _multi_scale_roi_align_reference(features, boxes, output_size, sampling_ratio, scales, mapper)
    return _multi_scale_roi_align_dispatched(features, boxes, output_size, sampling_ratio, scales, mapper)


@torch.jit.unused
@profiled("roi_align")
def _multi_scale_roi_align_dispatched(
    features: List[Tensor],
    boxes: List[Tensor],
    output_size: Tuple[int, int],
    sampling_ratio: int,
    scales: List[float],
    mapper: LevelMapper,
) -> Tensor:
    return multi_scale_roi_align_dispatch(
        features[0].device, features, boxes, output_size, sampling_ratio, scales, mapper
    )


class MultiScaleRoIAlign(nn.Module):
    """RoIAlign over several feature maps, each box pooled from the level that fits its size.

    Args:
        featmap_names: keys of the feature dict to pool from, finest first.
        output_size: ``h`` or ``(h, w)`` of the pooled features.
        sampling_ratio: as in :func:`torchdet.ops.roi_align.roi_align`.
        canonical_scale: box side mapped to ``canonical_level``.
        canonical_level: FPN level of a ``canonical_scale`` box.
    """

    # Set by every forward (TorchScript needs their types declared on the class).
    scales: Optional[List[float]]
    map_levels: Optional[LevelMapper]

    def __init__(
        self,
        featmap_names: List[str],
        output_size: Union[int, Tuple[int], List[int]],
        sampling_ratio: int,
        *,
        canonical_scale: int = 224,
        canonical_level: int = 4,
    ) -> None:
        super().__init__()
        self.featmap_names = featmap_names
        self.sampling_ratio = sampling_ratio
        self.output_size = _pair(output_size)
        self.scales = None
        self.map_levels = None
        self.canonical_scale = canonical_scale
        self.canonical_level = canonical_level

    def forward(
        self, x: Dict[str, Tensor], boxes: List[Tensor], image_shapes: List[Tuple[int, int]]
    ) -> Tensor:
        """Pool boxes from the feature maps.

        Args:
            x: feature maps ``[B, C, H_l, W_l]`` by name; only ``featmap_names`` are used.
            boxes: per image ``[L_i, 4]`` boxes in ``xyxy`` image coordinates.
            image_shapes: ``(height, width)`` of each image (after resizing).

        Returns:
            ``[sum L_i, C, h, w]`` pooled features, in the order of ``boxes``.
        """
        features = _filter_features(x, self.featmap_names)
        if not torch.jit.is_scripting() and torch.compiler.is_compiling() and self.scales is not None:
            # Constants of the architecture (see _infer_scale): under dynamo (strict export,
            # torch.compile) computing them again would guard on the sizes.
            scales, mapper = self.scales, self.map_levels
        else:
            scales, mapper = _setup_scales(features, image_shapes, self.canonical_scale, self.canonical_level)
            self.scales, self.map_levels = scales, mapper
        return multi_scale_roi_align(features, boxes, self.output_size, self.sampling_ratio, scales, mapper)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(featmap_names={self.featmap_names}, "
            f"output_size={self.output_size}, sampling_ratio={self.sampling_ratio})"
        )

