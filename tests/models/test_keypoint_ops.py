"""Keypoint branch maths: heatmap targets, loss, and the vectorised decoding against a per-RoI loop."""
import time

import pytest
import torch
import torch.nn.functional as F

from torchdet.models import keypoint_ops
from torchdet.models.keypoint_ops import (heatmaps_to_keypoints, keypointrcnn_inference, keypointrcnn_loss,
                                          keypoints_to_heatmap, resize_keypoints)


def decode_one_by_one(maps, rois):
    """Reference decoding, one RoI at a time, following torchvision's recipe step by step: resize the
    RoI's heatmaps bicubically (align_corners=False) to (ceil(h), ceil(w)) of the RoI (sides at least
    1), take the first maximum, shift it by half a cell, scale it back and add the RoI's corner."""
    k = maps.shape[1]
    widths = (rois[:, 2] - rois[:, 0]).clamp(min=1)
    heights = (rois[:, 3] - rois[:, 1]).clamp(min=1)
    keypoints = torch.zeros(len(rois), k, 3)
    scores = torch.zeros(len(rois), k)
    for i in range(len(rois)):
        map_w, map_h = int(widths[i].ceil()), int(heights[i].ceil())
        resized = F.interpolate(maps[i][:, None], size=(map_h, map_w), mode="bicubic", align_corners=False)[:, 0]
        pos = resized.reshape(k, -1).argmax(dim=1)
        x_int, y_int = pos % map_w, pos // map_w
        keypoints[i, :, 0] = (x_int.float() + 0.5) * (widths[i] / map_w) + rois[i, 0]
        keypoints[i, :, 1] = (y_int.float() + 0.5) * (heights[i] / map_h) + rois[i, 1]
        keypoints[i, :, 2] = 1
        scores[i] = resized[torch.arange(k), y_int, x_int]
    return keypoints, scores


def random_rois(n, generator, height=480, width=640, max_frac=0.5):
    xy = torch.rand(n, 2, generator=generator) * torch.tensor([width, height])
    wh = torch.rand(n, 2, generator=generator) * torch.tensor([width, height]) * max_frac
    rois = torch.cat([xy, xy + wh], dim=1)
    rois[:, 0::2] = rois[:, 0::2].clamp(0, width)
    rois[:, 1::2] = rois[:, 1::2].clamp(0, height)
    return rois


def peaked_maps(n, k, generator, size=56):
    """Heatmaps like a trained head's: one bump per map over smooth low-level clutter."""
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    centre = torch.rand(n, k, 2, generator=generator) * size
    sigma = 1 + 3 * torch.rand(n, k, 1, 1, generator=generator)
    bump = 8 * torch.exp(-((yy - centre[..., 0, None, None]) ** 2 + (xx - centre[..., 1, None, None]) ** 2)
                         / (2 * sigma**2))
    clutter = F.avg_pool2d(torch.randn(n, k, size + 4, size + 4, generator=generator), 5, stride=1) * 2
    return bump + clutter


def assert_same_decoding(maps, rois):
    ours, ours_scores = heatmaps_to_keypoints(maps, rois)
    ref, ref_scores = decode_one_by_one(maps, rois)
    assert ours.shape == ref.shape and ours_scores.shape == ref_scores.shape
    assert (ours - ref).abs().max() <= 1e-4, "keypoints differ from the per-RoI decoding"
    assert torch.allclose(ours_scores, ref_scores, rtol=1e-4, atol=1e-4)


# ---- training targets and loss ---------------------------------------------------------------------


def test_keypoints_to_heatmap_cells_edges_and_visibility():
    rois = torch.tensor([[10.0, 20.0, 66.0, 76.0]])  # 56 x 56: one pixel per cell
    keypoints = torch.tensor([[[10.0, 20.0, 2.0],   # top-left corner -> cell (0, 0)
                               [40.5, 30.2, 1.0],   # cell (10, 30)
                               [66.0, 76.0, 2.0],   # exactly on the right/bottom edge -> last cell
                               [66.0, 40.0, 2.0],   # right edge, y inside
                               [9.9, 40.0, 2.0],    # left of the RoI: not valid
                               [30.0, 76.5, 2.0],   # below the RoI: not valid
                               [30.0, 40.0, 0.0]]])  # not labelled: not valid
    targets, valid = keypoints_to_heatmap(keypoints, rois, 56)
    assert valid.tolist() == [[1, 1, 1, 1, 0, 0, 0]]
    assert targets.tolist() == [[0, 10 * 56 + 30, 55 * 56 + 55, 20 * 56 + 55, 0, 0, 0]]
    assert targets.dtype == torch.int64


def test_keypoints_to_heatmap_scales_to_the_roi():
    rois = torch.tensor([[0.0, 0.0, 112.0, 28.0]])  # 2 px per cell across, 0.5 px down
    targets, valid = keypoints_to_heatmap(torch.tensor([[[5.0, 3.3, 1.0]]]), rois, 56)
    assert valid.item() == 1 and targets.item() == 6 * 56 + 2  # y 3.3 * 56 / 28, x 5 * 56 / 112


def test_keypointrcnn_loss_is_cross_entropy_over_cells():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 8, 8, generator=g)
    proposals = [torch.tensor([[0.0, 0.0, 16.0, 16.0], [4.0, 4.0, 20.0, 12.0]]), torch.tensor([[2.0, 2.0, 10.0, 18.0]])]
    gt = [torch.rand(2, 4, 3, generator=g) * 18, torch.rand(1, 4, 3, generator=g) * 18]
    gt[0][..., 2] = torch.tensor([[1.0, 0.0, 2.0, 1.0], [1.0, 1.0, 1.0, 0.0]])
    gt[1][..., 2] = 1.0
    matched = [torch.tensor([1, 0]), torch.tensor([0])]
    loss = keypointrcnn_loss(logits, proposals, gt, matched)

    targets, valid = [], []
    for props, kps, idxs in zip(proposals, gt, matched):
        t, v = keypoints_to_heatmap(kps[idxs], props, 8)
        targets.append(t.flatten())
        valid.append(v.flatten())
    targets, valid = torch.cat(targets), torch.cat(valid).bool()
    assert valid.any()
    expected = F.cross_entropy(logits.reshape(12, 64)[valid], targets[valid])
    assert torch.allclose(loss, expected)


def test_keypointrcnn_loss_without_valid_keypoints_is_a_connected_zero():
    logits = torch.randn(1, 2, 8, 8, requires_grad=True)
    invisible = torch.tensor([[[3.0, 3.0, 0.0], [4.0, 4.0, 0.0]]])
    loss = keypointrcnn_loss(logits, [torch.tensor([[0.0, 0.0, 8.0, 8.0]])], [invisible], [torch.tensor([0])])
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert logits.grad is not None


def test_keypointrcnn_loss_needs_square_heatmaps():
    with pytest.raises(ValueError, match="square"):
        keypointrcnn_loss(torch.randn(1, 2, 8, 6), [torch.zeros(1, 4)], [torch.zeros(1, 2, 3)], [torch.tensor([0])])


# ---- decoding --------------------------------------------------------------------------------------


def test_decoding_peaked_maps_matches_the_per_roi_loop():
    g = torch.Generator().manual_seed(0)
    rois = random_rois(30, g)
    rois[0] = torch.tensor([5.0, 5.0, 5.0, 40.0])  # zero width: clamped to 1
    rois[1] = torch.tensor([0.3, 0.7, 0.9, 1.2])  # sub-pixel
    rois[2] = torch.tensor([0.0, 0.0, 640.0, 480.0])  # much larger than the heatmap
    rois[3] = torch.tensor([100.0, 100.0, 130.5, 120.25])  # smaller than the heatmap
    assert_same_decoding(peaked_maps(30, 17, g), rois)


def test_decoding_noise_maps_matches_the_per_roi_loop():
    """Noise prunes badly: those RoIs take the whole-map path."""
    g = torch.Generator().manual_seed(1)
    assert_same_decoding(torch.randn(20, 5, 56, 56, generator=g), random_rois(20, g))


@pytest.mark.parametrize("dense_fraction", [0.0, float("inf")])
def test_both_decoding_paths_match_the_per_roi_loop(monkeypatch, dense_fraction):
    """Force every RoI through one path: whole-map resizing (0) or cell pruning (inf)."""
    monkeypatch.setattr(keypoint_ops, "_DENSE_FRACTION", dense_fraction)
    g = torch.Generator().manual_seed(2)
    maps = torch.cat([peaked_maps(8, 3, g), torch.randn(8, 3, 56, 56, generator=g)])
    assert_same_decoding(maps, random_rois(16, g, max_frac=0.7))


def test_decoding_ties_pick_the_first_maximum_as_argmax_does():
    maps = torch.zeros(3, 2, 56, 56)  # all-zero maps: every resized value ties
    maps[1, 0, 10, 10] = maps[1, 0, 40, 40] = 5.0  # two equal peaks
    rois = torch.tensor([[0.0, 0.0, 100.0, 80.0], [10.0, 20.0, 200.0, 150.0], [3.0, 4.0, 30.0, 60.0]])
    assert_same_decoding(maps, rois)
    keypoints, _ = heatmaps_to_keypoints(maps, rois)
    assert keypoints[0, 0, :2].tolist() == [0.5, 0.5]  # the first cell of the resized map


def test_decoding_small_chunks_give_the_same_answer(monkeypatch):
    monkeypatch.setattr(keypoint_ops, "_DECODE_CHUNK_ELEMENTS", 1 << 10)
    monkeypatch.setattr(keypoint_ops, "_DENSE_CHUNK_ELEMENTS", 1 << 12)
    g = torch.Generator().manual_seed(3)
    maps = torch.cat([peaked_maps(6, 2, g), torch.randn(6, 2, 56, 56, generator=g)])
    assert_same_decoding(maps, random_rois(12, g, height=200, width=200))


def test_keypointrcnn_inference_splits_per_image():
    g = torch.Generator().manual_seed(4)
    maps = peaked_maps(5, 17, g)
    boxes = [random_rois(2, g), torch.zeros(0, 4), random_rois(3, g)]
    keypoints, scores = keypointrcnn_inference(maps, boxes)
    assert [k.shape for k in keypoints] == [(2, 17, 3), (0, 17, 3), (3, 17, 3)]
    assert [s.shape for s in scores] == [(2, 17), (0, 17), (3, 17)]
    ref, ref_scores = decode_one_by_one(maps, torch.cat(boxes))
    assert torch.allclose(torch.cat(keypoints), ref, atol=1e-4)
    assert torch.allclose(torch.cat(scores), ref_scores, atol=1e-4)


def test_keypointrcnn_inference_without_detections():
    keypoints, scores = keypointrcnn_inference(torch.zeros(0, 17, 56, 56), [torch.zeros(0, 4)])
    assert keypoints[0].shape == (0, 17, 3) and scores[0].shape == (0, 17)


def test_resize_keypoints_scales_xy_and_keeps_visibility():
    keypoints = torch.tensor([[[10.0, 20.0, 2.0], [0.0, 5.0, 0.0]]])
    resized = resize_keypoints(keypoints, (100, 200), (50, 400))  # (H, W): y halves, x doubles
    assert resized.tolist() == [[[20.0, 10.0, 2.0], [0.0, 2.5, 0.0]]]
    assert keypoints[0, 0, 0] == 10.0  # the input is untouched


@pytest.mark.slow
def test_decoding_timing_report():
    """Not a check: prints the vectorised decoding's time against the per-RoI loop (run with -s), in CPU ms on one thread."""
    g = torch.Generator().manual_seed(0)
    rois = random_rois(100, g)

    def best_ms(fn, repeat=3):
        """CPU time of the best run, on one thread: steadier than wall time on a shared machine."""
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            fn()
            times = []
            for _ in range(repeat):
                start = time.process_time()
                fn()
                times.append(time.process_time() - start)
        finally:
            torch.set_num_threads(threads)
        return 1000 * min(times)

    for name, maps in [("peaked", peaked_maps(100, 17, g)), ("noise", torch.randn(100, 17, 56, 56, generator=g))]:
        fast = best_ms(lambda: keypointrcnn_inference(maps, [rois]))
        slow = best_ms(lambda: decode_one_by_one(maps, rois))
        print(f"\nkeypointrcnn_inference, 100 detections, 480x640, {name} heatmaps: "
              f"vectorised {fast:.1f} ms, loop {slow:.1f} ms")


# ---- TorchScript and tracing -----------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_scripted_decoding_matches_the_eager_search():
    """Scripted, each RoI's maps are resized whole (F.interpolate); eager searches the peaks."""
    g = torch.Generator().manual_seed(7)
    maps = torch.cat([peaked_maps(10, 4, g), torch.randn(4, 4, 56, 56, generator=g)])
    rois = random_rois(14, g, height=200, width=240)
    rois[0] = torch.tensor([5.0, 5.0, 5.0, 40.0])  # zero width: clamped to 1
    scripted = torch.jit.script(heatmaps_to_keypoints)
    keypoints, scores = scripted(maps, rois)
    expected, expected_scores = heatmaps_to_keypoints(maps, rois)
    assert torch.equal(keypoints, expected)
    torch.testing.assert_close(scores, expected_scores, rtol=1e-4, atol=1e-4)
    ref, ref_scores = decode_one_by_one(maps, rois)
    assert (keypoints - ref).abs().max() <= 1e-4
    torch.testing.assert_close(scores, ref_scores, rtol=1e-5, atol=1e-5)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_scripted_inference_and_resize():
    g = torch.Generator().manual_seed(8)
    maps = peaked_maps(3, 5, g)
    boxes = [random_rois(1, g), torch.zeros(0, 4), random_rois(2, g)]
    keypoints, scores = torch.jit.script(keypointrcnn_inference)(maps, boxes)
    assert [k.shape for k in keypoints] == [(1, 5, 3), (0, 5, 3), (2, 5, 3)]
    expected, _ = keypointrcnn_inference(maps, boxes)
    assert all(torch.equal(a, b) for a, b in zip(keypoints, expected))
    resized = torch.jit.script(resize_keypoints)(keypoints[2], [100, 200], [50, 400])
    assert torch.equal(resized, resize_keypoints(keypoints[2], [100, 200], [50, 400]))


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_traced_resize_follows_the_image_size():
    def resize(keypoints, image):
        return resize_keypoints(keypoints, [image.shape[-2], image.shape[-1]], [100, 100])

    keypoints = torch.tensor([[[10.0, 20.0, 1.0]]])
    traced = torch.jit.trace(resize, (keypoints, torch.zeros(1, 50, 20)), check_trace=False)
    assert traced(keypoints, torch.zeros(1, 25, 40)).tolist() == [[[25.0, 80.0, 1.0]]]


# ---- the decoding op's forms ----------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_every_decoding_form_matches_the_reference(seed):
    """Every registered form against the reference: keypoints within the oracle's 1 px (they agree
    exactly unless two resized values tie to rounding), scores within 1e-4."""
    g = torch.Generator().manual_seed(40 + seed)
    maps = torch.cat([peaked_maps(6, 5, g), torch.randn(3, 5, 56, 56, generator=g)])
    rois = random_rois(9, g, height=150, width=200)
    rois[seed] = torch.tensor([3.0, 4.0, 3.5, 60.0])  # thinner than a pixel: clamped to 1
    expected, expected_scores = keypoint_ops.keypoint_decoding_dispatch.reference(maps, rois)
    ref, _ = decode_one_by_one(maps, rois)
    assert (expected - ref).abs().max() <= 1.0
    forms = keypoint_ops.keypoint_decoding_dispatch.implementations()
    assert set(forms) == {"reference", "peak_search"}
    for name, form in forms.items():
        keypoints, scores = form(maps, rois)
        assert (keypoints - expected).abs().max() <= 1.0, name
        assert (keypoints - expected).abs().gt(1e-4).float().mean() < 0.02, name  # ties are rare
        torch.testing.assert_close(scores, expected_scores, rtol=1e-4, atol=1e-4, msg=lambda m: f"{name}: {m}")


def test_decoding_forms_chosen_by_mode_and_the_trace_runs_the_reference():
    dispatch = keypoint_ops.keypoint_decoding_dispatch
    assert [dispatch.select("cpu", mode)[0] for mode in ("eager", "trace", "compile")] == \
        ["peak_search", "reference", "reference"]
    g = torch.Generator().manual_seed(9)
    maps, rois = peaked_maps(3, 4, g), random_rois(3, g, height=80, width=90)
    traced = torch.jit.trace(heatmaps_to_keypoints, (maps, rois), check_trace=False)
    other_maps, other_rois = peaked_maps(5, 4, g), random_rois(5, g, height=120, width=100)
    keypoints, scores = traced(other_maps, other_rois)  # other RoI count and sizes than the trace's
    expected, expected_scores = dispatch.reference(other_maps, other_rois)
    torch.testing.assert_close(keypoints, expected)
    torch.testing.assert_close(scores, expected_scores)
