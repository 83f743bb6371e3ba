"""Vectorised per-level / per-class top-k against the plain loops they replace."""
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torchdet.models.dense_prediction import flatten_head_output, level_sizes, topk_per_column, topk_per_level


def _loop_topk_per_level(scores, sizes, k, thresh):
    out_idx, out_scores, start = [], [], 0
    for size in sizes:
        level = scores[start:start + size]
        keep = torch.where(level > thresh)[0]
        vals, order = level[keep].topk(min(k, keep.numel()))
        out_idx.append(keep[order] + start)
        out_scores.append(vals)
        start += size
    return torch.cat(out_idx), torch.cat(out_scores)


def _loop_topk_per_column(scores, k, thresh):
    rows, cols, vals = [], [], []
    for c in range(scores.shape[1]):
        column = scores[:, c]
        keep = torch.where(column > thresh)[0]
        v, order = column[keep].topk(min(k, keep.numel()))
        rows.append(keep[order])
        cols.append(torch.full_like(keep[order], c))
        vals.append(v)
    return torch.cat(rows), torch.cat(cols), torch.cat(vals)


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(0, 40), min_size=1, max_size=5), k=st.integers(0, 30),
       thresh=st.sampled_from([-1.0, 0.3, 0.9, 1.1]), seed=st.integers(0, 2**16))
def test_topk_per_level_then_threshold_matches_threshold_then_topk(sizes, k, thresh, seed):
    """What the detectors do (top-k, then the threshold on those) equals torchvision's loop."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.rand(sum(sizes), generator=g)
    idx, vals = topk_per_level(scores.split(sizes), k)
    keep = vals > thresh
    ref_idx, ref_vals = _loop_topk_per_level(scores, sizes, k, thresh)
    assert torch.equal(idx[keep], ref_idx)
    assert torch.equal(vals[keep], ref_vals)
    assert torch.equal(scores[idx], vals)


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(0, 30), cols=st.integers(1, 6), k=st.integers(0, 40),
       thresh=st.sampled_from([0.0, 0.3, 0.9]), seed=st.integers(0, 2**16))
def test_topk_per_column_matches_loop(rows, cols, k, thresh, seed):
    g = torch.Generator().manual_seed(seed)
    scores = torch.rand(rows, cols, generator=g)
    got = topk_per_column(scores, k, thresh)
    ref = _loop_topk_per_column(scores, k, thresh)
    for a, b in zip(got, ref):
        assert torch.equal(a, b)


def test_flatten_head_output_order_and_level_sizes():
    # [N=1, A*K = 2*3, H=1, W=2]: channel a*K + k at cell x -> row x*A + a, column k
    x = torch.arange(12.0).view(1, 6, 1, 2)
    out = flatten_head_output(x, 3)
    assert out.shape == (1, 4, 3)
    assert out[0, 1].tolist() == [6.0, 8.0, 10.0]  # cell 0, anchor 1
    assert out[0, 2].tolist() == [1.0, 3.0, 5.0]  # cell 1, anchor 0
    features = [torch.zeros(1, 8, 4, 4), torch.zeros(1, 8, 2, 2)]
    assert level_sizes(features, 9 * 20) == [9 * 16, 9 * 4]


def test_traced_topk_count_follows_the_level_length():
    """Traced with levels longer than k, the graph still takes min(k, length) at shorter lengths."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(lambda a, b: topk_per_level([a, b], 5), (torch.rand(9), torch.rand(8)))
    a, b = torch.rand(3), torch.rand(8)
    for x, y in zip(traced(a, b), topk_per_level([a, b], 5)):
        torch.testing.assert_close(x, y)
