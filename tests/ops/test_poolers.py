"""MultiScaleRoIAlign: level mapping, scale inference, and equality with per-level roi_align."""
from __future__ import annotations

from typing import Dict, List, Tuple

import pytest
import torch

from torchdet.ops.poolers import (LevelMapper, MultiScaleRoIAlign, _infer_scale, _setup_scales,
                                  multi_scale_roi_align_dispatch)
from torchdet.ops.roi_align import roi_align

NAMES = ["0", "1", "2", "3"]


def square(side: float, x: float = 0.0, y: float = 0.0) -> List[float]:
    return [x, y, x + side, y + side]


def fpn_features(batch: int = 2, channels: int = 3, height: int = 64, width: int = 80) -> Dict[str, torch.Tensor]:
    """Levels P2..P5 of a ``4*height x 4*width`` image, plus an unused 'pool' level."""
    g = torch.Generator().manual_seed(0)
    feats = {name: torch.randn(batch, channels, height >> i, width >> i, generator=g) for i, name in enumerate(NAMES)}
    feats["pool"] = torch.randn(batch, channels, height >> 4, width >> 4, generator=g)
    return feats


def test_level_mapper_hand_checked() -> None:
    mapper = LevelMapper(k_min=2, k_max=5)
    boxes = torch.tensor([square(224), square(112), square(448), square(223.9), square(10), square(2000)])
    # 224 -> level 4; 112 -> 3; 448 -> 5 (exact power of two lands on the higher level);
    # just below 224 -> 3; tiny -> k_min = 2; huge -> k_max = 5. Indices are level - k_min.
    assert mapper([boxes[:3], boxes[3:]]).tolist() == [2, 1, 3, 1, 0, 3]


def test_level_mapper_canonical_parameters() -> None:
    mapper = LevelMapper(k_min=3, k_max=7, canonical_scale=100, canonical_level=5)
    assert mapper([torch.tensor([square(100), square(50), square(400)])]).tolist() == [2, 1, 4]


def test_scale_inference_rounds_to_powers_of_two() -> None:
    assert _infer_scale(torch.zeros(1, 1, 201, 251), (801, 1001)) == 0.25
    assert _infer_scale(torch.zeros(1, 1, 13, 16), (800, 1000)) == 1 / 64
    features = [torch.zeros(1, 1, 200 >> i, 250 >> i) for i in range(4)]
    scales, mapper = _setup_scales(features, [(800, 1000), (760, 990)], 224, 4)
    assert scales == [1 / 4, 1 / 8, 1 / 16, 1 / 32]
    assert (mapper.k_min, mapper.k_max) == (2, 5)


def test_empty_image_shapes_rejected() -> None:
    with pytest.raises(ValueError, match="image_shapes"):
        _setup_scales([torch.zeros(1, 1, 4, 4)], [], 224, 4)


def per_level_reference(
    x: Dict[str, torch.Tensor], boxes: List[torch.Tensor], output_size: int, sampling_ratio: int
) -> torch.Tensor:
    """torchvision's recipe: map each box to a level, then roi_align each level's boxes."""
    rois = torch.cat([torch.cat([torch.full((len(b), 1), float(i)), b], dim=1) for i, b in enumerate(boxes)])
    levels = LevelMapper(2, 5)(boxes)
    out = torch.zeros(len(rois), x["0"].shape[1], output_size, output_size)
    for level, name in enumerate(NAMES):
        idx = torch.where(levels == level)[0]
        out[idx] = roi_align(x[name], rois[idx], output_size, 2.0 ** -(level + 2), sampling_ratio)
    return out


def random_boxes(seed: int, counts: Tuple[int, ...], aspect: float = 1.0) -> List[torch.Tensor]:
    """Per image ``[n, 4]`` boxes at random corners in 0..200, of width 8..512 px (every level)
    and height ``aspect`` times that."""
    g = torch.Generator().manual_seed(seed)
    boxes = []
    for n in counts:
        xy = torch.rand(n, 2, generator=g) * 200
        side = 2 ** (torch.rand(n, 1, generator=g) * 6 + 3)
        boxes.append(torch.cat([xy, xy + side * torch.tensor([1.0, aspect])], dim=1))
    return boxes


def test_matches_per_level_roi_align_in_input_order() -> None:
    x = fpn_features()
    boxes = random_boxes(1, (9, 6), aspect=0.7)
    boxes[0] = torch.cat([boxes[0], torch.tensor([square(50), square(150, 9, 9), square(300, 5, 1), square(600)])])
    pooler = MultiScaleRoIAlign(NAMES, 5, sampling_ratio=2)
    out = pooler(x, boxes, [(256, 320), (250, 300)])
    assert out.shape == (19, 3, 5, 5)
    assert set(LevelMapper(2, 5)(boxes).tolist()) == {0, 1, 2, 3}
    torch.testing.assert_close(out, per_level_reference(x, boxes, 5, 2), rtol=0, atol=1e-6)
    assert pooler.scales == [1 / 4, 1 / 8, 1 / 16, 1 / 32]


def test_adaptive_sampling() -> None:
    x = fpn_features(batch=1)
    boxes = [torch.tensor([square(30, 5, 5), square(150, 20, 10), square(240, 3, 1), [0.0, 0.0, 300.0, 250.0]])]
    out = MultiScaleRoIAlign(NAMES, 3, sampling_ratio=-1)(x, boxes, [(256, 320)])
    torch.testing.assert_close(out, per_level_reference(x, boxes, 3, -1), rtol=0, atol=1e-6)


def test_single_level_shortcut() -> None:
    x = fpn_features(batch=1)
    boxes = [torch.tensor([square(40, 3, 4), square(100, 50, 20)])]
    out = MultiScaleRoIAlign(["1"], (2, 3), sampling_ratio=2)(x, boxes, [(256, 320)])
    rois = torch.cat([torch.zeros(2, 1), boxes[0]], dim=1)
    torch.testing.assert_close(out, roi_align(x["1"], rois, (2, 3), 1 / 8, 2))


def test_no_boxes() -> None:
    x = fpn_features()
    out = MultiScaleRoIAlign(NAMES, 7, 2)(x, [torch.zeros(0, 4), torch.zeros(0, 4)], [(256, 320)] * 2)
    assert out.shape == (0, 3, 7, 7)


def test_gradient_reaches_every_level() -> None:
    x = {name: t.requires_grad_(True) for name, t in fpn_features(batch=1).items()}
    boxes = [torch.tensor([square(20), square(120), square(230), square(460)])]
    MultiScaleRoIAlign(NAMES, 2, 2)(x, boxes, [(256, 320)]).sum().backward()
    for name in NAMES:
        assert x[name].grad is not None and x[name].grad.abs().sum() > 0, name
    assert x["pool"].grad is None


def test_names_the_backbone_lacks_are_skipped() -> None:
    """As torchvision: ["0", "1", "2", "3"] over a MobileNet FPN's "0", "1", "pool" pools from "0" and "1"."""
    x = fpn_features(batch=1)
    boxes = [torch.tensor([square(20), square(230)])]
    skipped = MultiScaleRoIAlign(["0", "7"], 7, 2)(x, boxes, [(256, 320)])
    only = MultiScaleRoIAlign(["0"], 7, 2)({"0": x["0"]}, boxes, [(256, 320)])
    torch.testing.assert_close(skipped, only)


def test_no_listed_feature_and_repr() -> None:
    pooler = MultiScaleRoIAlign(["0", "7"], 7, 2)
    with pytest.raises(ValueError, match="none of the feature maps"):
        pooler({"9": fpn_features()["0"]}, [torch.zeros(0, 4)], [(256, 320)])
    assert repr(pooler) == "MultiScaleRoIAlign(featmap_names=['0', '7'], output_size=(7, 7), sampling_ratio=2)"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_scripted_pooler_matches_eager() -> None:
    """Scripted, each level is pooled by its own roi_align call; eager pools all levels in one pass."""
    x = fpn_features()
    boxes = random_boxes(2, (7, 5))
    pooler = MultiScaleRoIAlign(NAMES, 4, sampling_ratio=2)
    scripted = torch.jit.script(pooler)
    shapes = [(256, 320), (250, 300)]
    torch.testing.assert_close(scripted(x, boxes, shapes), pooler(x, boxes, shapes), rtol=0, atol=1e-6)
    assert scripted.scales == [1 / 4, 1 / 8, 1 / 16, 1 / 32]


# ---------------------------------------------------------------- the op's forms, torch.fx and torch.export


@pytest.mark.parametrize("seed,counts", [(0, (5, 3)), (1, (0, 4)), (2, (1,)), (3, (0, 0))])
def test_every_form_matches_the_reference(seed: int, counts: Tuple[int, ...]) -> None:
    x = fpn_features(batch=len(counts))
    features = [x[name] for name in NAMES]
    boxes = random_boxes(seed, counts)
    scales, mapper = _setup_scales(features, [(256, 320)] * len(counts), 224, 4)
    expected = multi_scale_roi_align_dispatch.reference(features, boxes, (4, 5), 2, scales, mapper)
    assert expected.shape == (sum(counts), 3, 4, 5)
    forms = multi_scale_roi_align_dispatch.implementations()
    assert set(forms) == {"reference", "pixel_table"}
    for name, form in forms.items():
        torch.testing.assert_close(form(features, boxes, (4, 5), 2, scales, mapper), expected, rtol=0, atol=1e-5,
                                   msg=lambda m: f"form {name}: {m}")


def test_fx_symbolic_trace_matches_eager() -> None:
    x = fpn_features()
    boxes = random_boxes(4, (6, 2))
    shapes = [(256, 320), (250, 300)]
    pooler = MultiScaleRoIAlign(NAMES, 3, sampling_ratio=2)
    traced = torch.fx.symbolic_trace(pooler)
    torch.testing.assert_close(traced(x, boxes, shapes), pooler(x, boxes, shapes), rtol=0, atol=0)


@pytest.mark.filterwarnings("ignore")
def test_torch_export_with_free_box_counts_matches_eager() -> None:
    x = fpn_features(batch=1)
    shapes = [(256, 320)]
    pooler = MultiScaleRoIAlign(NAMES, 3, sampling_ratio=2)
    boxes = random_boxes(5, (7,))
    count = torch.export.Dim("boxes", min=1)
    program = torch.export.export(
        pooler, (x, boxes, shapes), dynamic_shapes={"x": {k: None for k in x}, "boxes": [{0: count}], "image_shapes": [(None, None)]},
        strict=False,
    )
    targets = [n.target for n in program.graph.nodes if n.op == "call_function"]
    assert targets.count(torch.ops.torchdet.roi_align.default) == len(NAMES)  # one per level
    for seed, n in [(6, 7), (7, 12), (8, 2)]:
        other = random_boxes(seed, (n,))
        torch.testing.assert_close(program.module()(x, other, shapes), pooler(x, other, shapes), rtol=0, atol=1e-6)
