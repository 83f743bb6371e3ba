import torch

from torchdet.ops import batched_nms, roi_align
from torchdet.ops._profiling import op_timer


def test_op_timer_counts_outermost_calls_only():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [50.0, 50.0, 60.0, 60.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    with op_timer() as seconds:
        keep = batched_nms(boxes, scores, torch.tensor([0, 0, 1]), 0.5)  # calls nms inside
        roi_align(torch.rand(1, 2, 8, 8), [boxes], 2)
    assert keep.tolist() == [0, 2]
    assert set(seconds) == {"nms", "roi_align"}
    assert all(s > 0 for s in seconds.values())
    with op_timer() as outside:
        pass
    assert outside == {}  # nothing leaks between timers


def test_timer_off_by_default():
    from torchdet.ops import _profiling

    assert _profiling._seconds is None
