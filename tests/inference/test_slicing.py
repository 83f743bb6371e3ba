"""Sliced inference: the tile grid, the merges, coordinates mapped back, and small objects found."""
from __future__ import annotations

from typing import Dict, List

import pytest
import torch
from torch import Tensor, nn

from inference.scenes import BlobDetector, recall, small_objects_scene
from torchdet.inference.slicing import SlicedPredictor, box_ios, greedy_clusters, sliced_predict, tile_grid


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_tile_grid_covers_the_image_with_flush_last_tiles():
    tiles = tile_grid(1000, 1200, (512, 400), overlap=0.25)
    assert tiles[:, 2].max() == 1200 and tiles[:, 3].max() == 1000  # flush with the border
    assert ((tiles[:, 2] - tiles[:, 0]) == 400).all() and ((tiles[:, 3] - tiles[:, 1]) == 512).all()
    xs = sorted(set(tiles[:, 0].tolist()))
    assert xs == [0, 300, 600, 800]  # stride 400 - 100, then the flush tile
    assert sorted(set(tiles[:, 1].tolist())) == [0, 384, 488]
    covered = torch.zeros(1000, 1200, dtype=torch.bool)
    for x1, y1, x2, y2 in tiles.tolist():
        covered[y1:y2, x1:x2] = True
    assert covered.all()


def test_tile_grid_small_image_and_bad_values():
    assert tile_grid(300, 200, 512).tolist() == [[0, 0, 200, 300]]
    assert tile_grid(512, 1024, 512, overlap=0.0).tolist() == [[0, 0, 512, 512], [512, 0, 1024, 512]]
    with pytest.raises(ValueError, match="overlap"):
        tile_grid(100, 100, 50, overlap=1.0)
    with pytest.raises(ValueError, match="tile size"):
        tile_grid(100, 100, (0, 50))


def test_ios_and_greedy_clusters_by_class():
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 4], [1, 0, 11, 10], [0, 0, 10, 10], [50, 50, 60, 60.]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95, 0.5])
    labels = torch.tensor([1, 1, 1, 2, 1])
    assert box_ios(boxes[:1], boxes[1:2]).item() == pytest.approx(1.0)  # a partial box inside a full one
    by_iou = greedy_clusters(boxes, scores, labels, match_metric="iou", match_threshold=0.5)
    assert [g.tolist() for g in by_iou] == [[3], [0, 2], [1], [4]]  # class 2 never joins class 1
    by_ios = greedy_clusters(boxes, scores, labels, match_metric="ios", match_threshold=0.5)
    assert [g.tolist() for g in by_ios] == [[3], [0, 1, 2], [4]]
    with pytest.raises(ValueError, match="match_metric"):
        greedy_clusters(boxes, scores, labels, match_metric="giou")


@pytest.fixture(scope="module")
def scene():
    return small_objects_scene(size=2000, small=12, large=40, seed=0)


def test_small_objects_missed_whole_and_found_sliced(scene):
    image, truth = scene
    detector = BlobDetector(min_size=800).eval()
    plain = detector([image])[0]
    small = (truth[:, 2] - truth[:, 0]) < 20
    assert recall(plain["boxes"], truth[small]) == 0.0  # 12 px shrinks to ~5 px at min_size 800
    assert recall(plain["boxes"], truth[~small]) == 1.0
    sliced = sliced_predict(detector, image, (512, 512), 0.2, merge="nmm", match_metric="ios")
    assert recall(sliced["boxes"], truth) == 1.0
    assert len(sliced["boxes"]) == len(truth)  # partial boxes at tile borders merged into their objects
    assert sliced["scores"].shape == sliced["labels"].shape == (len(truth),)


def test_nms_by_iou_keeps_partial_boxes_that_ios_merging_joins(scene):
    image, truth = scene
    detector = BlobDetector(min_size=800).eval()
    sliced = sliced_predict(detector, image[:, :1000, :1000], 512, 0.2, merge="nms", match_metric="iou",
                            batch_size=2)
    inside = (truth[:, 2] <= 1000) & (truth[:, 3] <= 1000)
    assert recall(sliced["boxes"], truth[inside]) == 1.0
    assert len(sliced["boxes"]) > inside.sum()  # the cut halves of objects on tile borders stay


class _SquareFinder(nn.Module):
    """Finds the bright pixels of each input: one box, its mask and its centre keypoint; counts calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: List[int] = []

    def forward(self, images: List[Tensor]) -> List[Dict[str, Tensor]]:
        self.calls.append(len(images))
        outputs = []
        for image in images:
            fg = image[0] > 0.5
            ys, xs = fg.nonzero(as_tuple=True)
            if len(ys) == 0:
                outputs.append({"boxes": torch.zeros(0, 4), "scores": torch.zeros(0),
                                "labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 1, *fg.shape),
                                "keypoints": torch.zeros(0, 1, 3), "keypoints_scores": torch.zeros(0, 1)})
                continue
            box = torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=torch.float32)
            centre = torch.tensor([[[(box[0, 0] + box[0, 2]) / 2, (box[0, 1] + box[0, 3]) / 2, 1.0]]])
            outputs.append({"boxes": box, "scores": torch.tensor([0.5 + 0.001 * len(ys)]),
                            "labels": torch.tensor([3]), "masks": fg[None, None].float(), "keypoints": centre,
                            "keypoints_scores": torch.tensor([[float(len(ys))]])})
        return outputs


def test_boxes_masks_keypoints_mapped_back_to_the_image():
    image = torch.zeros(3, 100, 120)
    image[:, 30:44, 52:70] = 1.0  # on the border between tiles
    model = _SquareFinder()
    for merge in ("nms", "nmm"):
        out = sliced_predict(model, image, 60, 0.25, merge=merge, match_metric="ios", batch_size=3)
        assert len(out["boxes"]) == 1
        assert out["labels"].tolist() == [3]
        assert out["masks"].shape == (1, 1, 100, 120)
        if merge == "nmm":  # the union of the tiles' views: the whole square, its whole mask
            assert out["boxes"][0].tolist() == [52, 30, 70, 44]
            assert torch.equal(out["masks"][0, 0] > 0.5, image[0] > 0.5)
        x1, y1, x2, y2 = out["boxes"][0].tolist()  # nms: the best single view
        assert out["keypoints"][0, 0, :2].tolist() == pytest.approx([(x1 + x2) / 2, (y1 + y2) / 2])
        assert out["keypoints_scores"].tolist() == [[(x2 - x1) * (y2 - y1)]]  # the best view's own entry
        assert (out["masks"][0, 0] > 0.5).sum() > 0


def test_batches_and_the_whole_image_pass():
    image = torch.zeros(3, 100, 120)
    model = _SquareFinder()
    SlicedPredictor(model, 60, 0.25, batch_size=3, full_image=True).eval()([image])
    assert model.calls == [3, 3, 1]  # 2 x 3 tiles by threes, then the whole image alone
    out = SlicedPredictor(model, 60, 0.25).eval()([image])[0]
    assert out["boxes"].shape == (0, 4) and out["masks"].shape == (0, 1, 100, 120)


def test_bad_options_and_training_mode():
    with pytest.raises(ValueError, match="merge"):
        SlicedPredictor(_SquareFinder(), 64, merge="wbf")
    with pytest.raises(ValueError, match="batch_size"):
        SlicedPredictor(_SquareFinder(), 64, batch_size=0)
    with pytest.raises(ValueError, match="eval"):
        SlicedPredictor(_SquareFinder(), 64).train()([torch.zeros(3, 10, 10)])


def test_cli_slice_finds_what_the_plain_call_misses(tmp_path, capsys):
    import json

    from inference.scenes import BUILDER, CATEGORIES
    from torchdet.cli import main
    from torchdet.visualization import save_image

    image, truth = small_objects_scene(size=1000, small=8, large=30, spacing=100, seed=2)
    save_image(image, tmp_path / "field.png")
    checkpoint = tmp_path / "blob.pt"
    torch.save({"model": {}, "builder": BUILDER, "builder_kwargs": {"min_size": 800}, "categories": CATEGORIES},
               checkpoint)
    found = {}
    for name, extra in (("plain", []), ("sliced", ["--slice", "256", "256", "--overlap", "0.25", "--slice-full"])):
        out = tmp_path / name
        assert main(["predict", "--weights", str(checkpoint), str(tmp_path / "field.png"), "--out", str(out),
                     "--device", "cpu", *extra]) == 0
        detections = json.loads((out / "predictions.json").read_text())
        boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (d["bbox"] for d in detections)]).reshape(-1, 4)
        found[name] = recall(boxes, truth)
        assert (out / "field.png").exists()
    assert found["plain"] < 0.3 and found["sliced"] == 1.0, found
    assert main(["predict", "--weights", str(checkpoint), str(tmp_path / "field.png"), "--out", str(tmp_path),
                 "--slice", "256", "0"]) == 1
    assert "--slice H W" in capsys.readouterr().err
