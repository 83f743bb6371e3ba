"""ops_bench's capture of a real model's final NMS (no timing assertions)."""
import torch

from torchdet.bench.ops_bench import captured_nms_calls
from torchdet.ops.nms import batched_nms, batched_nms_top


def test_captures_the_final_nms_of_ssdlite():
    calls = captured_nms_calls("ssdlite320_mobilenet_v3_large")
    assert len(calls) == 1  # one image
    boxes, scores, idxs, thr = calls[0]
    assert boxes.shape == (scores.shape[0], 4) and idxs.shape == scores.shape and 0 < thr < 1
    # What bench_nms times is the full batched_nms, whose head the model kept.
    assert torch.equal(batched_nms(boxes, scores, idxs, thr)[:300], batched_nms_top(boxes, scores, idxs, thr, 300))
