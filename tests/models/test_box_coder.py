import math

import torch

from torchdet.models.box_coder import BoxCoder, BoxLinearCoder


def _random_boxes(n, seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 100
    wh = torch.rand(n, 2, generator=g) * 50 + 1
    return torch.cat([xy, xy + wh], 1)


def test_round_trip():
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    gt, props = _random_boxes(20, 0), _random_boxes(20, 1)
    deltas = coder.encode([gt[:7], gt[7:]], [props[:7], props[7:]])
    assert [d.shape for d in deltas] == [(7, 4), (13, 4)]
    decoded = coder.decode(torch.cat(deltas), [props[:7], props[7:]])
    assert decoded.shape == (20, 1, 4)
    torch.testing.assert_close(decoded[:, 0], gt, atol=1e-3, rtol=1e-5)


def test_hand_checked_encode_and_per_class_decode():
    coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
    anchor = torch.tensor([[0.0, 0.0, 10.0, 20.0]])
    gt = torch.tensor([[5.0, 0.0, 15.0, 40.0]])  # centre moves by (5, 10), height doubles
    torch.testing.assert_close(coder.encode_single(gt, anchor), torch.tensor([[0.5, 0.5, 0.0, math.log(2.0)]]))
    codes = torch.zeros(1, 3 * 4)  # three classes, zero deltas: the anchor itself
    out = coder.decode(codes, [anchor])
    assert out.shape == (1, 3, 4)
    torch.testing.assert_close(out, anchor.expand(3, 4)[None])


def test_decode_clamps_size_delta():
    coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
    out = coder.decode_single(torch.tensor([[0.0, 0.0, 100.0, 100.0]]), torch.tensor([[0.0, 0.0, 16.0, 16.0]]))
    torch.testing.assert_close(out, torch.tensor([[8.0 - 500, 8.0 - 500, 8.0 + 500, 8.0 + 500]]))


def test_linear_coder_round_trip():
    coder = BoxLinearCoder(normalize_by_size=True)
    anchors, boxes = _random_boxes(10, 2), _random_boxes(10, 3)
    torch.testing.assert_close(coder.decode(coder.encode(anchors, boxes), anchors), boxes, atol=1e-3, rtol=1e-5)
