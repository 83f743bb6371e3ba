"""Small detectors that train from scratch in minutes on a CPU: the demo's and the tests'.

They are the zoo's detector classes (FCOS, Faster R-CNN) on a small plain CNN with an FPN,
sized for images of a few hundred pixels. Builders take the zoo's arguments (`weights`,
`weights_backbone` must be None: there are no published weights) plus the model's kwargs.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Union

from torch import Tensor, nn

from torchdet.models._weights_pending import require_no_weights
from torchdet.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool
from torchdet.weights.registry import register_model


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class TinyBackbone(nn.Module):
    """A plain CNN (stride-2 stages of 3x3 conv-BN-ReLU) followed by an FPN.

    Args:
        channels: output channels of each stage; stage i has stride 2 ** (i + 1).
        blocks: extra stride-1 convs in each stage (an int applies to every stage).
        returned_stages: which stages (indices into `channels`) feed the FPN, finest first.
        out_channels: FPN channels.
        num_outputs: how many FPN levels to return, finest first (default: all); the coarser
            levels still feed the finer ones through the FPN's top-down path.
        extra_pool: add a max-pooled level on top (as torchvision's LastLevelMaxPool).

    forward(images [N, 3, H, W]) -> OrderedDict of [N, out_channels, H / s, W / s], finest first.
    """

    def __init__(self, channels: Sequence[int] = (16, 32, 64, 128, 128), blocks: Union[int, Sequence[int]] = 1,
                 returned_stages: Sequence[int] = (2, 3, 4), out_channels: int = 64,
                 num_outputs: Optional[int] = None, extra_pool: bool = False) -> None:
        super().__init__()
        per_stage = [blocks] * len(channels) if isinstance(blocks, int) else list(blocks)
        if len(per_stage) != len(channels):
            raise ValueError(f"blocks={blocks!r} needs one entry per stage ({len(channels)} stages)")
        stages: List[nn.Module] = []
        in_channels = 3
        for c, n in zip(channels, per_stage):
            layers = [_conv_bn_relu(in_channels, c, stride=2)] + [_conv_bn_relu(c, c) for _ in range(n)]
            stages.append(nn.Sequential(*layers))
            in_channels = c
        self.stages = nn.ModuleList(stages)
        self.returned_stages = list(returned_stages)
        self.fpn = FeaturePyramidNetwork([channels[i] for i in self.returned_stages], out_channels,
                                         extra_blocks=LastLevelMaxPool() if extra_pool else None)
        self.num_outputs = num_outputs
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        features: "OrderedDict[str, Tensor]" = OrderedDict()
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.returned_stages:
                features[str(len(features))] = x
        out = self.fpn(features)
        if self.num_outputs is not None:
            out = OrderedDict(list(out.items())[: self.num_outputs])
        return out


@register_model()
def fcos_tiny(*, weights: Any = None, progress: bool = True, num_classes: Optional[int] = None,
              weights_backbone: Any = None, channels: Sequence[int] = (16, 32, 64, 128, 128),
              blocks: Union[int, Sequence[int]] = (0, 1, 1, 1, 1), returned_stages: Sequence[int] = (2, 3, 4),
              num_levels: Optional[int] = 1, fpn_channels: int = 64, head_convs: int = 2,
              anchor_sizes: Optional[Sequence[int]] = None, **kwargs: Any) -> nn.Module:
    """FCOS on `TinyBackbone`. By default one detection level, stride 8, fed by an FPN over strides
    8, 16 and 32 (for objects up to ~128 px); `num_levels=None` detects on all FPN levels.

    `anchor_sizes` (one per level, default the strides) set the object sizes each level learns:
    level i takes objects whose largest centre-to-side distance lies in [4, 8] x its anchor size
    (the first level from 0, the last without bound).
    """
    require_no_weights("fcos_tiny", weights, weights_backbone)
    from torchdet.models.anchor_utils import AnchorGenerator
    from torchdet.models.fcos import FCOS, FCOSHead

    num_classes = 91 if num_classes is None else num_classes
    backbone = TinyBackbone(channels, blocks, returned_stages, fpn_channels, num_levels)
    strides = [2 ** (i + 1) for i in returned_stages][: num_levels or len(returned_stages)]
    sizes = list(anchor_sizes) if anchor_sizes is not None else strides
    anchor_generator = AnchorGenerator(tuple((int(s),) for s in sizes), ((1.0,),) * len(sizes))
    head = FCOSHead(fpn_channels, 1, num_classes, num_convs=head_convs)
    kwargs.setdefault("min_size", 256)
    kwargs.setdefault("max_size", 256)
    return FCOS(backbone, num_classes, anchor_generator=anchor_generator, head=head, **kwargs)


@register_model()
def fasterrcnn_tiny(*, weights: Any = None, progress: bool = True, num_classes: Optional[int] = None,
                    weights_backbone: Any = None, channels: Sequence[int] = (16, 32, 64, 128, 128),
                    blocks: Union[int, Sequence[int]] = (0, 1, 1, 1, 1), returned_stages: Sequence[int] = (2, 3, 4),
                    fpn_channels: int = 64, representation_size: int = 256,
                    anchor_sizes: Optional[Sequence[int]] = None, **kwargs: Any) -> nn.Module:
    """Faster R-CNN on `TinyBackbone` with an FPN, 3 aspect ratios per level and a small box head."""
    require_no_weights("fasterrcnn_tiny", weights, weights_backbone)
    from torchdet.models.anchor_utils import AnchorGenerator
    from torchdet.models.faster_rcnn import FasterRCNN, FastRCNNPredictor, TwoMLPHead
    from torchdet.ops.poolers import MultiScaleRoIAlign

    num_classes = 91 if num_classes is None else num_classes
    backbone = TinyBackbone(channels, blocks, returned_stages, fpn_channels, extra_pool=True)
    strides = [2 ** (i + 1) for i in returned_stages] + [2 ** (returned_stages[-1] + 2)]
    sizes = list(anchor_sizes) if anchor_sizes is not None else [4 * s for s in strides]
    anchor_generator = AnchorGenerator(tuple((int(s),) for s in sizes), ((0.5, 1.0, 2.0),) * len(sizes))
    names = [str(i) for i in range(len(returned_stages))]
    roi_pool = MultiScaleRoIAlign(names, output_size=7, sampling_ratio=2)
    box_head = TwoMLPHead(fpn_channels * 7 * 7, representation_size)
    kwargs.setdefault("min_size", 256)
    kwargs.setdefault("max_size", 256)

    return FasterRCNN(backbone, None, rpn_anchor_generator=anchor_generator, box_roi_pool=roi_pool,
                      box_head=box_head, box_predictor=FastRCNNPredictor(representation_size, num_classes),
                      **kwargs)
