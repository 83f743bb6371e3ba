"""RoIAlign: the oracle's 24 configurations, hand-checked maps, a slow per-sample reference, autograd."""
from __future__ import annotations

import importlib
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from _oracle import load_ops
from torchdet.errors import InvalidInputError
from torchdet.ops.dispatch import forced
from torchdet.ops.roi_align import RoIAlign, roi_align, roi_align_dispatch

# The package re-exports the function under the module's name, so fetch the module itself.
roi_align_module = importlib.import_module("torchdet.ops.roi_align")

ORACLE = load_ops()


def reference_roi_align(
    feature: torch.Tensor,
    rois: torch.Tensor,
    output_size: tuple,
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> torch.Tensor:
    """One bilinear sample at a time, straight from the definition (slow; tiny inputs only)."""
    _, channels, height, width = feature.shape
    ph_out, pw_out = output_size
    out = torch.zeros(len(rois), channels, ph_out, pw_out, dtype=torch.float64)
    f = feature.double()

    def bilinear(b: int, y: float, x: float) -> torch.Tensor:
        if y < -1.0 or y > height or x < -1.0 or x > width:
            return torch.zeros(channels, dtype=torch.float64)
        y, x = max(y, 0.0), max(x, 0.0)
        y0, x0 = int(y), int(x)
        if y0 >= height - 1:
            y0 = y1 = height - 1
            y = float(y0)
        else:
            y1 = y0 + 1
        if x0 >= width - 1:
            x0 = x1 = width - 1
            x = float(x0)
        else:
            x1 = x0 + 1
        ly, lx = y - y0, x - x0
        return (
            (1 - ly) * (1 - lx) * f[b, :, y0, x0]
            + (1 - ly) * lx * f[b, :, y0, x1]
            + ly * (1 - lx) * f[b, :, y1, x0]
            + ly * lx * f[b, :, y1, x1]
        )

    offset = 0.5 if aligned else 0.0
    for k, (b, x1, y1, x2, y2) in enumerate(rois.double().tolist()):
        sx, sy = x1 * spatial_scale - offset, y1 * spatial_scale - offset
        rw, rh = x2 * spatial_scale - offset - sx, y2 * spatial_scale - offset - sy
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / ph_out, rw / pw_out
        gh = sampling_ratio if sampling_ratio > 0 else math.ceil(rh / ph_out)
        gw = sampling_ratio if sampling_ratio > 0 else math.ceil(rw / pw_out)
        for p in range(ph_out):
            for q in range(pw_out):
                acc = torch.zeros(channels, dtype=torch.float64)
                for iy in range(gh):
                    for ix in range(gw):
                        y = sy + p * bh + (iy + 0.5) * bh / gh
                        x = sx + q * bw + (ix + 0.5) * bw / gw
                        acc += bilinear(int(b), y, x)
                out[k, :, p, q] = acc / max(gh * gw, 1)
    return out


def ramp(height: int, width: int) -> torch.Tensor:
    """``[1, 1, H, W]`` map with value ``W * y + x``: bilinear sampling of it is exact."""
    return torch.arange(height * width, dtype=torch.float32).view(1, 1, height, width)


# ---------------------------------------------------------------- oracle


def _case_id(case: dict) -> str:
    return (
        f"out{case['output_size']}-scale{case['spatial_scale']}-sr{case['sampling_ratio']}-"
        f"{'aligned' if case['aligned'] else 'unaligned'}"
    )


STRATEGIES = ["pixels", "rows"]


@pytest.fixture(params=STRATEGIES)
def strategy(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Force one of roi_align's two strategies (normally picked by a cost model)."""
    monkeypatch.setattr(roi_align_module, "_rows_path_is_cheaper", lambda *args: request.param == "rows")
    return request.param


@pytest.mark.parametrize("case", ORACLE["roi_align"], ids=_case_id)
def test_roi_align_matches_oracle(case: dict, strategy: str) -> None:
    out = roi_align(
        case["input"], case["rois"], case["output_size"], case["spatial_scale"], case["sampling_ratio"], case["aligned"]
    )
    assert out.shape == case["output"].shape
    torch.testing.assert_close(out, case["output"], rtol=0, atol=1e-5)


# ---------------------------------------------------------------- hand-checked maps


def test_integer_aligned_box_one_sample_per_bin(strategy: str) -> None:
    # Box [0, 2] x [0, 2], 2 x 2 bins of size 1, one sample at each bin centre.
    out = roi_align(ramp(4, 4), torch.tensor([[0.0, 0.0, 0.0, 2.0, 2.0]]), 2, 1.0, 1, aligned=False)
    assert out.tolist() == [[[[2.5, 3.5], [6.5, 7.5]]]]


def test_aligned_shifts_by_half_pixel() -> None:
    # Same box, aligned: samples at pixel centres (0, 0), (0, 1), (1, 0), (1, 1).
    out = roi_align(ramp(4, 4), torch.tensor([[0.0, 0.0, 0.0, 2.0, 2.0]]), 2, 1.0, 1, aligned=True)
    assert out.tolist() == [[[[0.0, 1.0], [4.0, 5.0]]]]


def test_adaptive_grid_and_last_row_clamp(strategy: str) -> None:
    # Box [0, 4]^2 on a 4 x 4 map: bins of 2, ceil(4 / 2) = 2 samples per bin at 0.5, 1.5 | 2.5, 3.5.
    # A sample at 3.5 lies past the last row/column (3) and reads it: coordinates 2.5 and 3 average
    # to 2.75, so bins are 4 * {1, 2.75} + {1, 2.75}.
    out = roi_align(ramp(4, 4), torch.tensor([[0.0, 0.0, 0.0, 4.0, 4.0]]), 2, 1.0, -1, aligned=False)
    assert out.tolist() == [[[[5.0, 6.75], [12.0, 13.75]]]]


def test_spatial_scale() -> None:
    # Box in a 2x larger image frame maps to [0, 2]^2 on the map.
    out = roi_align(ramp(4, 4), torch.tensor([[0.0, 0.0, 0.0, 4.0, 4.0]]), 2, 0.5, 1, aligned=False)
    assert out.tolist() == [[[[2.5, 3.5], [6.5, 7.5]]]]


def test_small_box_is_grown_to_one_pixel_unless_aligned() -> None:
    rois = torch.tensor([[0.0, 1.0, 1.0, 1.0, 1.0]])  # zero-size box at (1, 1)
    # Unaligned: size clamped to 1, single bin sampled at (1.5, 1.5) -> 4 * 1.5 + 1.5.
    assert roi_align(ramp(4, 4), rois, 1, 1.0, -1, aligned=False).tolist() == [[[[7.5]]]]
    # Aligned, adaptive: ceil(0 / 1) = 0 samples -> 0.
    assert roi_align(ramp(4, 4), rois, 1, 1.0, -1, aligned=True).tolist() == [[[[0.0]]]]


def test_samples_outside_the_map_contribute_zero(strategy: str) -> None:
    # Far outside: every sample has y > H.
    assert roi_align(ramp(4, 4), torch.tensor([[0.0, 0.0, 10.0, 2.0, 12.0]]), 2, 1.0, 1).abs().sum() == 0
    # Box [0, 4] x [3, 5], bins of height 1: the sample at y = 3.5 reads row 3 (x = 2), the one
    # at y = 4.5 > H = 4 is dropped.
    out = roi_align(ramp(4, 4), torch.tensor([[0.0, 0.0, 3.0, 4.0, 5.0]]), (2, 1), 1.0, 1)
    assert out.tolist() == [[[[4 * 3 + 2.0], [0.0]]]]
    # A sample with -1 <= y <= 0 reads row 0 at full weight: (y, x) = (-0.5, 2) -> 2; y = -1 exactly
    # still counts.
    out = roi_align(ramp(4, 4), torch.tensor([[0.0, 1.5, -1.0, 2.5, 0.0], [0.0, 1.5, -1.5, 2.5, -0.5]]), 1, 1.0, 1)
    assert out.flatten().tolist() == [2.0, 2.0]


def test_output_size_rectangular_and_batch_index() -> None:
    feature = torch.cat([ramp(5, 6), 100 + ramp(5, 6)])  # [2, 1, 5, 6]
    rois = torch.tensor([[1.0, 0.0, 0.0, 6.0, 5.0], [0.0, 0.0, 0.0, 6.0, 5.0]])
    out = roi_align(feature, rois, (2, 3), 1.0, 2)
    assert out.shape == (2, 1, 2, 3)
    torch.testing.assert_close(out[0] - out[1], torch.full((1, 2, 3), 100.0))


# ---------------------------------------------------------------- against the slow reference


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 1, 3])
def test_matches_reference_with_rois_past_the_map(aligned: bool, sampling_ratio: int, strategy: str) -> None:
    g = torch.Generator().manual_seed(sampling_ratio + 10 * aligned)
    feature = torch.randn(2, 3, 7, 9, generator=g)
    xy = torch.rand(10, 2, generator=g) * 30 - 8  # image frame is 2x the map: [-8, 22]
    wh = torch.rand(10, 2, generator=g) * 20
    rois = torch.cat([torch.randint(0, 2, (10, 1), generator=g).float(), xy, xy + wh], dim=1)
    out = roi_align(feature, rois, (3, 2), 0.5, sampling_ratio, aligned)
    expected = reference_roi_align(feature, rois, (3, 2), 0.5, sampling_ratio, aligned)
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=1e-5)


# ---------------------------------------------------------------- interface


def test_list_of_boxes_equals_rois_tensor() -> None:
    g = torch.Generator().manual_seed(0)
    feature = torch.randn(3, 4, 10, 12, generator=g)
    boxes = [
        torch.tensor([[1.0, 2.0, 8.0, 9.0], [0.0, 0.0, 3.0, 3.0]]),
        torch.zeros(0, 4),
        torch.tensor([[2.0, 2.5, 11.0, 7.0]]),
    ]
    rois = torch.tensor([[0.0, 1.0, 2.0, 8.0, 9.0], [0.0, 0.0, 0.0, 3.0, 3.0], [2.0, 2.0, 2.5, 11.0, 7.0]])
    torch.testing.assert_close(roi_align(feature, boxes, 4, 1.0, 2), roi_align(feature, rois, 4, 1.0, 2))


def test_empty_rois() -> None:
    feature = torch.randn(2, 5, 8, 8)
    assert roi_align(feature, torch.zeros(0, 5), (3, 4)).shape == (0, 5, 3, 4)
    assert roi_align(feature, [torch.zeros(0, 4), torch.zeros(0, 4)], 7).shape == (0, 5, 7, 7)


def test_module() -> None:
    layer = RoIAlign((3, 3), spatial_scale=0.5, sampling_ratio=2, aligned=True)
    feature, rois = torch.randn(1, 2, 6, 6), torch.tensor([[0.0, 1.0, 1.0, 9.0, 7.0]])
    torch.testing.assert_close(layer(feature, rois), roi_align(feature, rois, 3, 0.5, 2, True))
    assert repr(layer) == "RoIAlign(output_size=(3, 3), spatial_scale=0.5, sampling_ratio=2, aligned=True)"


def test_dtypes_and_memory_formats(strategy: str) -> None:
    g = torch.Generator().manual_seed(1)
    feature = torch.randn(2, 4, 9, 11, generator=g)
    rois = torch.tensor([[0.0, 1.0, 1.5, 15.0, 12.0], [1.0, -3.0, 2.0, 6.0, 30.0]])
    expected = roi_align(feature, rois, 3, 0.7, -1)
    channels_last = feature.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(roi_align(channels_last, rois, 3, 0.7, -1), expected)
    as_double = roi_align(feature.double(), rois.double(), 3, 0.7, -1)
    torch.testing.assert_close(as_double, expected.double(), rtol=0, atol=1e-5)
    half = roi_align(feature.half(), rois.half(), 3, 0.7, -1)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), expected, rtol=1e-2, atol=1e-2)
    assert roi_align(feature, rois, 3, 0.7, -1).is_contiguous()


def test_chunking_gives_the_same_result(monkeypatch: pytest.MonkeyPatch, strategy: str) -> None:
    g = torch.Generator().manual_seed(2)
    feature = torch.randn(1, 3, 16, 16, generator=g)
    xy = torch.rand(40, 2, generator=g) * 20
    rois = torch.cat([torch.zeros(40, 1), xy, xy + torch.rand(40, 2, generator=g) * 25], dim=1)
    expected = roi_align(feature, rois, 5, 0.75, -1)
    monkeypatch.setattr(roi_align_module, "_MAX_ENTRIES_PER_CHUNK", 300)
    torch.testing.assert_close(roi_align(feature, rois, 5, 0.75, -1), expected, rtol=0, atol=1e-6)


def test_rejects_bad_inputs() -> None:
    feature = torch.randn(2, 1, 4, 4)
    with pytest.raises(ValueError, match="Tensor\\[K, 5\\]"):
        roi_align(feature, torch.zeros(3, 4), 2)
    with pytest.raises(ValueError, match="L, 4"):
        roi_align(feature, [torch.zeros(3, 5)], 2)
    with pytest.raises(ValueError, match="batch indices"):
        roi_align(feature, torch.tensor([[2.0, 0.0, 0.0, 1.0, 1.0]]), 2)
    with pytest.raises(ValueError, match="B, C, H, W"):
        roi_align(feature[0], torch.zeros(0, 5), 2)


# ---------------------------------------------------------------- autograd


@pytest.mark.parametrize("aligned,sampling_ratio", [(False, -1), (True, 2)])
def test_gradcheck(aligned: bool, sampling_ratio: int, strategy: str) -> None:
    g = torch.Generator().manual_seed(3)
    feature = torch.randn(2, 2, 5, 6, dtype=torch.float64, generator=g, requires_grad=True)
    rois = torch.tensor(
        [[0.0, 0.5, 0.7, 4.3, 3.9], [1.0, -1.2, 1.1, 2.2, 6.5], [0.0, 3.0, 2.0, 7.5, 5.5]], dtype=torch.float64
    )
    assert torch.autograd.gradcheck(
        lambda x: roi_align(x, rois, (2, 3), 1.0, sampling_ratio, aligned), (feature,), eps=1e-6, atol=1e-5
    )


def test_gradient_of_sum_counts_sample_weights(strategy: str) -> None:
    # One sample per bin on integer-aligned bins of a 4x4 map: each bin spreads 1 over 4 pixels.
    feature = torch.zeros(1, 1, 4, 4, requires_grad=True)
    roi_align(feature, torch.tensor([[0.0, 0.0, 0.0, 2.0, 2.0]]), 2, 1.0, 1).sum().backward()
    expected = torch.tensor([[0.25, 0.5, 0.25, 0.0], [0.5, 1.0, 0.5, 0.0], [0.25, 0.5, 0.25, 0.0], [0.0] * 4])
    torch.testing.assert_close(feature.grad[0, 0], expected)


def test_cost_model_picks_rows_for_mask_targets_and_pixels_for_box_features() -> None:
    def geometry(rois: torch.Tensor, output: int, scale: float, ratio: int):
        return roi_align_module._roi_geometry(rois, output, output, torch.tensor(scale), ratio, False)

    side = torch.linspace(60, 300, 64)[:, None]
    big = torch.cat([torch.zeros(64, 1), torch.zeros(64, 2), side.expand(64, 2)], dim=1)
    assert roi_align_module._rows_path_is_cheaper(geometry(big, 28, 1.0, -1), (8, 1, 800, 1200), (28, 28))
    side = torch.linspace(16, 112, 512)[:, None]
    small = torch.cat([torch.zeros(512, 1), torch.zeros(512, 2), side.expand(512, 2)], dim=1)
    assert not roi_align_module._rows_path_is_cheaper(geometry(small, 7, 0.25, 2), (1, 256, 200, 272), (7, 7))


# ---------------------------------------------------------------- TorchScript


class _RoIAlignModule(torch.nn.Module):
    def forward(
        self, x: torch.Tensor, rois: torch.Tensor, height: int, width: int, scale: float, ratio: int, aligned: bool
    ) -> torch.Tensor:
        return roi_align(x, rois, (height, width), scale, ratio, aligned)


def test_scripted_roi_align_matches_oracle_and_eager() -> None:
    scripted = torch.jit.script(_RoIAlignModule())
    for case in ORACLE["roi_align"]:
        height, width = (case["output_size"],) * 2 if isinstance(case["output_size"], int) else case["output_size"]
        args = (case["spatial_scale"], case["sampling_ratio"], case["aligned"])
        out = scripted(case["input"], case["rois"], height, width, *args)
        torch.testing.assert_close(out, case["output"], rtol=0, atol=1e-5)
        eager = roi_align(case["input"], case["rois"], (height, width), *args)
        torch.testing.assert_close(out, eager, rtol=0, atol=1e-5)


def test_scripted_module_with_box_lists_and_gradient() -> None:
    g = torch.Generator().manual_seed(5)
    feature = torch.randn(2, 3, 12, 10, generator=g)
    boxes = [torch.tensor([[1.0, 2.0, 15.0, 18.0]]), torch.tensor([[0.0, 0.0, 30.0, 30.0], [3.0, 4.0, 5.0, 6.0]])]
    for layer in [RoIAlign(7, 0.5, 2), RoIAlign((3, 4), 0.5, -1, aligned=True)]:
        scripted = torch.jit.script(layer)
        x1, x2 = feature.clone().requires_grad_(), feature.clone().requires_grad_()
        out = scripted(x1, boxes)
        torch.testing.assert_close(out, layer(x2, boxes), rtol=0, atol=1e-5)
        weight = torch.randn(out.shape, generator=g)
        (out * weight).sum().backward()
        (layer(x2, boxes) * weight).sum().backward()
        torch.testing.assert_close(x1.grad, x2.grad, rtol=0, atol=1e-5)


# ---------------------------------------------------------------- multi-level pixel table


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_pixel_tables_equal_concatenated_tables_with_gradients(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(6)
    maps = [torch.randn(2, 5, h, w, generator=g).to(dtype) for h, w in [(6, 7), (3, 4), (2, 2)]]
    maps[1] = maps[1].contiguous(memory_format=torch.channels_last)
    ours, plain = [m.clone().requires_grad_() for m in maps], [m.clone().requires_grad_() for m in maps]
    compute = roi_align_module._compute_dtype(dtype)
    table = roi_align_module._pixel_tables(ours, compute)
    expected = torch.cat([roi_align_module._pixel_table(m, compute) for m in plain])
    assert table.dtype == expected.dtype and torch.equal(table, expected)
    weight = torch.randn(table.shape, generator=g, dtype=compute)
    (table * weight).sum().backward()
    (expected * weight).sum().backward()
    for a, b in zip(ours, plain):
        assert a.grad.dtype == b.grad.dtype and torch.equal(a.grad, b.grad)
    with torch.no_grad():
        assert torch.equal(roi_align_module._pixel_tables(maps, compute), expected)


# ---------------------------------------------------------------- the op's forms


def _random_case(seed: int, sampling_ratio: int, aligned: bool):
    """Feature maps, rois partly past the map, and pooling parameters drawn from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    batch = 1 + seed % 2
    feature = torch.randn(batch, 3, 6 + seed % 5, 7 + seed % 3, generator=g)
    k = 1 + seed % 9
    xy = torch.rand(k, 2, generator=g) * 20 - 4
    wh = torch.rand(k, 2, generator=g) * 18
    index = torch.randint(0, batch, (k, 1), generator=g).float()
    rois = torch.cat([index, xy, xy + wh], dim=1)
    return feature, rois, (2 + seed % 3, 3), 0.5 + 0.25 * (seed % 3), sampling_ratio, aligned


@given(seed=st.integers(0, 10_000), sampling_ratio=st.sampled_from([-1, 0, 1, 2, 3]), aligned=st.booleans())
@settings(max_examples=30, deadline=None, derandomize=True)
def test_every_form_matches_the_reference(seed: int, sampling_ratio: int, aligned: bool) -> None:
    feature, rois, (ph, pw), scale, ratio, aligned = _random_case(seed, sampling_ratio, aligned)
    expected = roi_align_dispatch.reference(feature, rois, ph, pw, scale, ratio, aligned)
    assert expected.shape == (rois.shape[0], feature.shape[1], ph, pw)
    slow = reference_roi_align(feature, rois, (ph, pw), scale, ratio, aligned)
    torch.testing.assert_close(expected.double(), slow, rtol=0, atol=1e-5)
    forms = roi_align_dispatch.implementations()
    assert set(forms) == {"reference", "grouped", "onnx", "custom_op"}
    for name, form in forms.items():
        torch.testing.assert_close(form(feature, rois, ph, pw, scale, ratio, aligned), expected, rtol=0, atol=1e-5,
                                   msg=lambda m: f"form {name}: {m}")


def test_forms_chosen_by_mode() -> None:
    assert roi_align_dispatch.select("cpu", "eager")[0] == "grouped"
    assert roi_align_dispatch.select("cpu", "trace")[0] == "onnx"
    assert roi_align_dispatch.select("cpu", "compile")[0] == "custom_op"


@pytest.mark.parametrize("aligned,sampling_ratio", [(False, -1), (True, 2)])
def test_reference_gradcheck(aligned: bool, sampling_ratio: int) -> None:
    g = torch.Generator().manual_seed(4)
    feature = torch.randn(2, 2, 5, 6, dtype=torch.float64, generator=g, requires_grad=True)
    rois = torch.tensor([[0.0, 0.5, 0.7, 4.3, 3.9], [1.0, -1.2, 1.1, 2.2, 6.5]], dtype=torch.float64)
    with forced("roi_align", "reference"):
        assert torch.autograd.gradcheck(
            lambda x: roi_align(x, rois, (2, 3), 1.0, sampling_ratio, aligned), (feature,), eps=1e-6, atol=1e-5
        )


def test_custom_op_passes_opcheck_and_its_gradient_is_the_reference_gradient() -> None:
    feature, rois, (ph, pw), scale, ratio, aligned = _random_case(11, -1, True)
    args = (feature, rois, ph, pw, scale, ratio, aligned)
    torch.library.opcheck(torch.ops.torchdet.roi_align.default, args)
    weight = torch.randn(rois.shape[0], feature.shape[1], ph, pw, generator=torch.Generator().manual_seed(1))
    grads = []
    for name in ("custom_op", "reference"):
        x = feature.clone().requires_grad_()
        (roi_align_dispatch.implementations()[name](x, *args[1:]) * weight).sum().backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-5)


def test_bad_box_shapes_raise_what_torchvision_callers_catch() -> None:
    feature = torch.randn(1, 1, 4, 4)
    with pytest.raises(AssertionError, match="Tensor\\[K, 5\\]"):
        roi_align(feature, torch.zeros(3, 4), 2)
    with pytest.raises(InvalidInputError, match="L, 4"):
        roi_align(feature, [torch.zeros(3, 5)], 2)


# ---------------------------------------------------------------- torch.fx and torch.export


def test_fx_symbolic_trace_records_one_call() -> None:
    feature, rois, _, scale, ratio, aligned = _random_case(3, 2, False)
    layer = RoIAlign((2, 3), scale, ratio, aligned)
    traced = torch.fx.symbolic_trace(layer)
    assert [n.op for n in traced.graph.nodes] == ["placeholder", "placeholder", "call_function", "output"]
    torch.testing.assert_close(traced(feature, rois), layer(feature, rois), rtol=0, atol=0)


@pytest.mark.filterwarnings("ignore")
def test_torch_export_uses_the_custom_op_with_a_free_roi_count() -> None:
    feature, rois, _, scale, ratio, aligned = _random_case(5, -1, True)
    layer = RoIAlign((2, 3), scale, ratio, aligned)
    program = torch.export.export(
        layer, (feature, rois), dynamic_shapes={"input": None, "rois": {0: torch.export.Dim("rois", min=1)}},
        strict=False,
    )
    targets = [n.target for n in program.graph.nodes if n.op == "call_function"]
    assert torch.ops.torchdet.roi_align.default in targets
    more = torch.cat([rois, rois[:2] + torch.tensor([0.0, 1.0, 1.0, 2.0, 2.0])])  # another number of rois
    torch.testing.assert_close(program.module()(feature, more), layer(feature, more), rtol=0, atol=1e-6)
