import math
import warnings
from collections import OrderedDict

import torch

from torchdet.models.anchor_utils import AnchorGenerator
from torchdet.models.image_list import ImageList
from torchdet.models.rpn import RegionProposalNetwork, RPNHead, concat_box_prediction_layers


def _rpn(head=None, **kw):
    gen = AnchorGenerator(sizes=((16,), (32,)), aspect_ratios=((0.5, 1.0, 2.0),) * 2)
    head = head or RPNHead(8, 3)
    args = dict(fg_iou_thresh=0.7, bg_iou_thresh=0.3, batch_size_per_image=256, positive_fraction=0.5,
                pre_nms_top_n=dict(training=50, testing=40), post_nms_top_n=dict(training=30, testing=20),
                nms_thresh=0.7)
    args.update(kw)
    return RegionProposalNetwork(gen, head, **args)


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    images = ImageList(torch.zeros(2, 3, 64, 64), [(64, 60), (50, 64)])
    features = OrderedDict([("0", torch.randn(2, 8, 8, 8, generator=g)), ("1", torch.randn(2, 8, 4, 4, generator=g))])
    return images, features


def test_head_keys_shapes_init():
    head = RPNHead(8, 3, conv_depth=2)
    keys = set(head.state_dict())
    assert keys == {"conv.0.0.weight", "conv.0.0.bias", "conv.1.0.weight", "conv.1.0.bias",
                    "cls_logits.weight", "cls_logits.bias", "bbox_pred.weight", "bbox_pred.bias"}
    assert float(head.cls_logits.bias.detach().abs().sum()) == 0 and abs(float(head.bbox_pred.weight.detach().std()) - 0.01) < 0.005
    logits, deltas = head([torch.randn(1, 8, 5, 6), torch.randn(1, 8, 3, 3)])
    assert [t.shape for t in logits] == [(1, 3, 5, 6), (1, 3, 3, 3)]
    assert [t.shape for t in deltas] == [(1, 12, 5, 6), (1, 12, 3, 3)]


def test_head_loads_old_single_conv_checkpoints():
    head = RPNHead(8, 3)
    sd = {k.replace("conv.0.0.", "conv."): torch.full_like(v, 0.5) for k, v in head.state_dict().items()}
    sd = OrderedDict(sd)
    sd._metadata = OrderedDict({"": {"version": 1}})
    head.load_state_dict(sd)
    assert float(head.conv[0][0].weight.detach().mean()) == 0.5


def test_concat_orders_cell_then_anchor():
    # One level, N=1, A=2, C=1, H=1, W=2: logits [1, 2, 1, 2] -> order (cell 0: a0, a1), (cell 1: a0, a1).
    cls = torch.tensor([[[[0.0, 1.0]], [[10.0, 11.0]]]])
    reg = torch.arange(16.0).view(1, 8, 1, 2)
    scores, deltas = concat_box_prediction_layers([cls], [reg])
    assert scores.flatten().tolist() == [0.0, 10.0, 1.0, 11.0]
    assert deltas.shape == (4, 4) and deltas[1].tolist() == [8.0, 10.0, 12.0, 14.0]


def test_eval_proposals_inside_images_and_capped():
    rpn = _rpn().eval()
    images, features = _inputs()
    boxes, losses = rpn(images, features)
    assert losses == {}
    for b, (h, w) in zip(boxes, images.image_sizes):
        assert b.shape[1] == 4 and 0 < len(b) <= 20
        assert bool((b[:, 0] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 1] >= 0).all() and (b[:, 3] <= h).all())
        assert bool(((b[:, 2] - b[:, 0]) >= 1e-3).all())


def test_score_thresh_drops_everything_when_high():
    rpn = _rpn(score_thresh=1.1).eval()
    boxes, _ = rpn(*_inputs())
    assert [len(b) for b in boxes] == [0, 0]


def test_training_losses_hand_checked_with_zero_head():
    head = RPNHead(8, 3)
    for p in head.parameters():
        torch.nn.init.zeros_(p)
    rpn = _rpn(head).train()
    images, features = _inputs()
    targets = [{"boxes": torch.tensor([[4.0, 4.0, 30.0, 20.0]])}, {"boxes": torch.zeros(0, 4)}]
    _, losses = rpn(images, features, targets)
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg"}
    # Zero logits: BCE is log 2 whatever the labels.
    assert math.isclose(float(losses["loss_objectness"].detach()), math.log(2.0), rel_tol=1e-5)
    assert float(losses["loss_rpn_box_reg"].detach()) > 0


def test_assign_targets():
    rpn = _rpn()
    anchors = [torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 9], [50, 50, 60, 60], [0, 0, 10, 16]])] * 2
    targets = [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]])}, {"boxes": torch.zeros(0, 4)}]
    labels, matched = rpn.assign_targets_to_anchors(anchors, targets)
    # IoUs 1.0, 0.9, 0, 0.625 (between thresholds -> ignored).
    assert labels[0].tolist() == [1.0, 1.0, 0.0, -1.0]
    assert labels[1].tolist() == [0.0] * 4 and matched[1].shape == (4, 4)


def test_traced_top_n_follows_the_level_size():
    """While tracing, min(pre_nms_top_n, level size) stays in the graph: fewer anchors later, fewer kept."""
    rpn = _rpn().eval()  # pre_nms_top_n testing = 40

    def top_n(objectness):
        return rpn._get_top_n_idx(objectness, [objectness.shape[1]])

    g = torch.Generator().manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings
        traced = torch.jit.trace(top_n, (torch.rand(2, 64, generator=g),), check_trace=False)
    small = torch.rand(2, 25, generator=g)
    assert traced(small).shape == (2, 25)
    assert torch.equal(traced(small), top_n(small))
    assert traced(torch.rand(2, 90, generator=g)).shape == (2, 40)
