import torch

from torchdet.models.anchor_utils import AnchorGenerator
from torchdet.models.image_list import ImageList


def test_cell_anchors_hand_checked():
    gen = AnchorGenerator(sizes=((32,),), aspect_ratios=((0.5, 1.0, 2.0),))
    # ratio = h / w, area = 32**2: w = 32 * sqrt(2) = 45.25, h = 22.63 for ratio 0.5; halves rounded.
    expected = torch.tensor([[-23.0, -11.0, 23.0, 11.0], [-16.0, -16.0, 16.0, 16.0], [-11.0, -23.0, 11.0, 23.0]])
    torch.testing.assert_close(gen.cell_anchors[0], expected)
    gen128 = AnchorGenerator(sizes=((128,),), aspect_ratios=((0.5,),))
    torch.testing.assert_close(gen128.cell_anchors[0], torch.tensor([[-91.0, -45.0, 91.0, 45.0]]))


def test_ratio_outermost_then_scale():
    gen = AnchorGenerator(sizes=((16, 32),), aspect_ratios=((1.0, 4.0),))
    a = gen.cell_anchors[0]
    assert a.shape == (4, 4)
    torch.testing.assert_close(a[0], torch.tensor([-8.0, -8.0, 8.0, 8.0]))  # ratio 1, size 16
    torch.testing.assert_close(a[1], torch.tensor([-16.0, -16.0, 16.0, 16.0]))  # ratio 1, size 32
    torch.testing.assert_close(a[2], torch.tensor([-4.0, -16.0, 4.0, 16.0]))  # ratio 4, size 16


def test_grid_and_levels():
    gen = AnchorGenerator(sizes=((32,), (64,)), aspect_ratios=((1.0,), (0.5, 1.0, 2.0)))
    assert gen.num_anchors_per_location() == [1, 3]
    images = ImageList(torch.zeros(2, 3, 64, 96), [(64, 90), (60, 96)])
    feats = [torch.zeros(2, 8, 2, 3), torch.zeros(2, 8, 1, 1)]  # strides 32x32 and 64x96
    anchors = gen(images, feats)
    assert len(anchors) == 2 and anchors[0].shape == (2 * 3 * 1 + 1 * 1 * 3, 4)
    torch.testing.assert_close(anchors[0], anchors[1])
    level0 = anchors[0][:6]
    # Cells row-major: (y, x) = (0,0), (0,1), (0,2), (1,0)...; stride 32 on both axes.
    centres = torch.stack([(level0[:, 0] + level0[:, 2]) / 2, (level0[:, 1] + level0[:, 3]) / 2], 1)
    torch.testing.assert_close(centres, torch.tensor([[0.0, 0.0], [32, 0], [64, 0], [0, 32], [32, 32], [64, 32]]))
    assert anchors[0].dtype == torch.float32


def test_sizes_shorthand_and_size_change():
    gen = AnchorGenerator(sizes=(32, 64), aspect_ratios=(1.0,))
    assert gen.sizes == ((32,), (64,)) and gen.num_anchors_per_location() == [1, 1]
    a = gen(ImageList(torch.zeros(1, 3, 32, 32), [(32, 32)]), [torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2, 2)])
    b = gen(ImageList(torch.zeros(1, 3, 64, 64), [(64, 64)]), [torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 4, 4)])
    assert a[0].shape == (16 + 4, 4) and b[0].shape == (64 + 16, 4)
    assert float(b[0][:64, 0].max()) == 7 * 8 - 16
