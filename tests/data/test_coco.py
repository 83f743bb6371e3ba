"""CocoDetection: targets, id mapping, masks, keypoints and the error messages."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from torchdet.data.coco import CocoDetection, coco_bbox_to_xyxy, segmentation_to_mask
from torchdet.data.image_io import CorruptImageError


def _mask_box(mask: torch.Tensor) -> list:
    """xyxy box (continuous pixels) of a non-empty binary mask [H, W]."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]


def write_coco(folder: Path, annotations, categories, images=None, *, sizes=None, mode="RGB") -> Path:
    """Write images (solid colour) and a COCO json into ``folder``; return the json path."""
    folder.mkdir(parents=True, exist_ok=True)
    if images is None:
        sizes = sizes or [(40, 60)]
        images = [{"id": i + 1, "file_name": f"img{i + 1}.png", "height": h, "width": w} for i, (h, w) in enumerate(sizes)]
    for image in images:
        Image.new(mode, (image["width"], image["height"]), color=None if mode == "P" else 0).save(folder / image["file_name"])
    path = folder / "_annotations.coco.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def _ann(ann_id, category_id, bbox, image_id=1, **extra):
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": 0, **extra}


# -- on the generated shapes data ---------------------------------------------------------------


def test_shapes_targets_match_the_json(shapes_files):
    dataset = CocoDetection(shapes_files["train"], with_masks=True, with_keypoints=True)
    data = json.loads(Path(shapes_files["train"]).read_text())
    assert len(dataset) == 10
    assert dataset.categories == ["__background__", "circle", "square", "triangle", "star", "cross"]
    assert dataset.num_classes == 6
    assert dataset.image_ids == sorted(image["id"] for image in data["images"])

    image, target = dataset[0]
    info = dataset.image_info(0)
    assert image.dtype == torch.float32 and image.shape == (3, info["height"], info["width"])
    assert 0.0 <= image.min() and image.max() <= 1.0
    anns = [a for a in data["annotations"] if a["image_id"] == target["image_id"]]
    expected = coco_bbox_to_xyxy(torch.tensor([a["bbox"] for a in anns], dtype=torch.float32))
    torch.testing.assert_close(target["boxes"], expected)
    assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64
    assert target["labels"].tolist() == [a["category_id"] for a in anns]  # ids 1..5 are contiguous already
    assert target["masks"].dtype == torch.uint8 and target["masks"].shape == (len(anns), 96, 96)
    assert target["keypoints"].shape == (len(anns), 5, 3) and target["keypoints"].dtype == torch.float32
    assert target["iscrowd"].tolist() == [0] * len(anns)
    for mask, box in zip(target["masks"], target["boxes"].tolist()):
        assert np.allclose(_mask_box(mask), box, atol=1.5)
    assert dataset.keypoint_names == ["center", "top", "right", "bottom", "left"]
    assert (0, 1) in dataset.skeleton  # 1-based in the file, 0-based here


def test_coco_object_and_aspect_ratios(shapes_files):
    dataset = CocoDetection(shapes_files["val"])
    assert sorted(dataset.coco.getImgIds()) == dataset.image_ids
    assert dataset.aspect_ratios() == [1.0, 1.0]
    assert "masks" not in dataset[0][1] and "keypoints" not in dataset[0][1]


def test_transforms_are_applied(shapes_files):
    calls = []

    def transform(image, target):
        calls.append(target["image_id"])
        return image * 0, target

    image, _ = CocoDetection(shapes_files["val"], transforms=transform)[1]
    assert calls == [2] and image.abs().sum() == 0


# -- hand-written files -------------------------------------------------------------------------


def test_non_contiguous_category_ids_map_both_ways(tmp_path):
    categories = [{"id": 10, "name": "dog"}, {"id": 3, "name": "cat"}, {"id": 0, "name": "animals"}]
    anns = [_ann(1, 10, [1, 2, 10, 20]), _ann(2, 3, [5, 5, 4, 4])]
    dataset = CocoDetection(write_coco(tmp_path, anns, categories))
    assert dataset.categories == ["__background__", "animals", "cat", "dog"]
    assert dataset.label_to_category_id == {1: 0, 2: 3, 3: 10}
    assert dataset.category_id_to_label == {0: 1, 3: 2, 10: 3}
    _, target = dataset[0]
    assert target["labels"].tolist() == [3, 2]
    assert [dataset.label_to_category_id[label] for label in target["labels"].tolist()] == [10, 3]
    torch.testing.assert_close(target["boxes"], torch.tensor([[1.0, 2.0, 11.0, 22.0], [5.0, 5.0, 9.0, 9.0]]))


def test_crowd_excluded_and_degenerate_boxes_dropped_with_count(tmp_path):
    anns = [
        _ann(1, 1, [1, 1, 10, 10]),
        _ann(2, 1, [0, 0, 30, 30], iscrowd=1),
        _ann(3, 1, [5, 5, 0, 8]),  # zero width
        _ann(4, 1, [70, 5, 5, 5]),  # entirely right of the 60 px wide image: zero width once clipped
    ]
    with pytest.warns(UserWarning, match=r"dropping 2 annotation\(s\) whose box has no area.*annotation id\(s\) \[3, 4\]"):
        dataset = CocoDetection(write_coco(tmp_path, anns, [{"id": 1, "name": "a"}]))
    _, target = dataset[0]
    assert target["boxes"].tolist() == [[1.0, 1.0, 11.0, 11.0]]
    assert target["labels"].tolist() == [1] and target["area"].tolist() == [100.0]


def test_boxes_are_clipped_to_the_image(tmp_path):
    path = write_coco(tmp_path, [_ann(1, 1, [50, 30, 20, 20])], [{"id": 1, "name": "a"}], sizes=[(40, 60)])
    assert CocoDetection(path)[0][1]["boxes"].tolist() == [[50.0, 30.0, 60.0, 40.0]]


def test_image_without_annotations_has_empty_target(tmp_path):
    path = write_coco(tmp_path, [_ann(1, 1, [1, 1, 3, 3], image_id=1)], [{"id": 1, "name": "a"}], sizes=[(20, 20), (30, 30)])
    _, target = CocoDetection(path, with_masks=True)[1]
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)
    assert target["masks"].shape == (0, 30, 30)


def test_polygon_and_rle_masks(tmp_path):
    height, width = 40, 60
    square = np.zeros((height, width), dtype=np.uint8)
    square[10:20, 30:50] = 1
    compressed = mask_utils.encode(np.asfortranarray(square))
    compressed["counts"] = compressed["counts"].decode("ascii")
    # uncompressed RLE: run lengths in column-major order, starting with zeros
    flat = square.flatten(order="F")
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [2]])))
    counts = np.diff(np.concatenate([[0], changes])).tolist()
    uncompressed = {"size": [height, width], "counts": counts}
    polygon = [[30, 10, 50, 10, 50, 20, 30, 20]]
    anns = [
        _ann(1, 1, [30, 10, 20, 10], segmentation=polygon),
        _ann(2, 1, [30, 10, 20, 10], segmentation=compressed),
        _ann(3, 1, [30, 10, 20, 10], segmentation=uncompressed),
        _ann(4, 1, [30, 10, 20, 10], segmentation=[]),
    ]
    _, target = CocoDetection(write_coco(tmp_path, anns, [{"id": 1, "name": "a"}]), with_masks=True)[0]
    masks = target["masks"]
    for index in (1, 2):
        assert torch.equal(masks[index], torch.from_numpy(square))
    assert abs(int(masks[0].sum()) - int(square.sum())) <= 40  # polygon rasterisation differs at edges
    assert _mask_box(masks[0]) == [30, 10, 50, 20] or np.allclose(_mask_box(masks[0]), [30, 10, 50, 20], atol=1)
    assert masks[3].sum() == 0


def test_rle_of_the_wrong_size_is_an_error():
    rle = {"size": [10, 10], "counts": [100]}
    with pytest.raises(ValueError, match=r"annotation id 7: RLE segmentation size \[10, 10\]"):
        segmentation_to_mask(rle, 20, 20, annotation_id=7)


def test_keypoints_and_annotations_without_them(tmp_path):
    categories = [{"id": 1, "name": "p", "keypoints": ["a", "b"], "skeleton": [[1, 2]]}]
    anns = [_ann(1, 1, [1, 1, 10, 10], keypoints=[2, 3, 2, 4, 5, 1], num_keypoints=2), _ann(2, 1, [2, 2, 5, 5])]
    dataset = CocoDetection(write_coco(tmp_path, anns, categories), with_keypoints=True)
    keypoints = dataset[0][1]["keypoints"]
    assert keypoints.shape == (2, 2, 3)
    assert keypoints[0].tolist() == [[2.0, 3.0, 2.0], [4.0, 5.0, 1.0]]
    assert keypoints[1].abs().sum() == 0
    assert dataset.skeleton == [(0, 1)]


def test_with_keypoints_on_a_file_without_keypoints(tmp_path):
    path = write_coco(tmp_path, [_ann(1, 1, [1, 1, 3, 3])], [{"id": 1, "name": "a"}])
    with pytest.raises(ValueError, match="has no keypoints"):
        CocoDetection(path, with_keypoints=True)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16"])
def test_non_rgb_images_become_rgb(tmp_path, mode):
    path = write_coco(tmp_path, [_ann(1, 1, [1, 1, 3, 3])], [{"id": 1, "name": "a"}], mode=mode)
    image, _ = CocoDetection(path)[0]
    assert image.shape == (3, 40, 60) and image.dtype == torch.float32


def test_images_dir_defaults_to_the_json_folder_and_can_be_given(tmp_path):
    path = write_coco(tmp_path / "split", [_ann(1, 1, [1, 1, 3, 3])], [{"id": 1, "name": "a"}])
    moved = tmp_path / "elsewhere" / "x.json"
    moved.parent.mkdir()
    moved.write_text(path.read_text())
    assert CocoDetection(moved, images_dir=tmp_path / "split")[0][0].shape == (3, 40, 60)
    with pytest.raises(FileNotFoundError, match=r"img1\.png"):
        CocoDetection(moved)[0]


def test_aspect_ratios_do_not_need_the_images(tmp_path):
    images = [{"id": 1, "file_name": "missing.jpg", "width": 200, "height": 100}]
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"images": images, "annotations": [], "categories": [{"id": 1, "name": "a"}]}))
    assert CocoDetection(path).aspect_ratios() == [2.0]


# -- errors -------------------------------------------------------------------------------------


def test_not_json_is_a_clear_error(tmp_path):
    path = tmp_path / "a.json"
    path.write_text("images: [1, 2]")
    with pytest.raises(ValueError, match="not valid JSON.*COCO detection file is a JSON object"):
        CocoDetection(path)


def test_missing_keys_are_named(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match=r"missing list\(s\) 'annotations', 'categories'.*\"bbox\""):
        CocoDetection(path)


def test_a_results_list_is_not_annotations(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps([{"image_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]))
    with pytest.raises(ValueError, match="top level is a list"):
        CocoDetection(path)


def test_bad_entries_are_named(tmp_path):
    anns = [{"id": 5, "image_id": 1, "category_id": 9, "bbox": [0, 0, 1, 1]}]
    with pytest.raises(ValueError, match=r"annotation id 5 has category_id 9"):
        CocoDetection(write_coco(tmp_path, anns, [{"id": 1, "name": "a"}]))
    anns = [{"id": 5, "image_id": 1, "category_id": 1}]
    with pytest.raises(ValueError, match=r"annotations\[0\] has no \['bbox'\] field"):
        CocoDetection(write_coco(tmp_path, anns, [{"id": 1, "name": "a"}]))


def test_missing_annotation_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        CocoDetection(tmp_path / "nope.json")


def test_empty_dataset(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    with pytest.raises(ValueError, match="empty"):
        CocoDetection(path)


def test_missing_image_names_the_file(tmp_path):
    path = write_coco(tmp_path, [_ann(1, 1, [1, 1, 3, 3])], [{"id": 1, "name": "a"}])
    (tmp_path / "img1.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"image file not found: .*img1\.png"):
        CocoDetection(path)[0]


def test_corrupt_image_names_the_file(tmp_path):
    path = write_coco(tmp_path, [_ann(1, 1, [1, 1, 3, 3])], [{"id": 1, "name": "a"}])
    (tmp_path / "img1.png").write_bytes(b"not an image at all")
    with pytest.raises(CorruptImageError, match=r"cannot decode image file .*img1\.png.*skip_bad_images=True"):
        CocoDetection(path)[0]


def test_skip_bad_images(tmp_path):
    anns = [_ann(i, 1, [1, 1, 3, 3], image_id=i) for i in (1, 2, 3, 4)]
    path = write_coco(tmp_path, anns, [{"id": 1, "name": "a"}], sizes=[(20, 20), (21, 21), (22, 22), (23, 23)])
    (tmp_path / "img1.png").unlink()  # missing: found at construction
    noise = np.random.default_rng(0).integers(0, 255, size=(22, 22, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "img3.png")
    png = (tmp_path / "img3.png").read_bytes()
    (tmp_path / "img3.png").write_bytes(png[: len(png) // 2])  # truncated: header fine, pixels not

    with pytest.warns(UserWarning, match=r"skipped 1 of 4 images"):
        dataset = CocoDetection(path, skip_bad_images=True)
    assert dataset.image_ids == [2, 3, 4] and len(dataset) == 3
    assert dataset.skipped_images[0][0].endswith("img1.png")

    with pytest.warns(UserWarning, match=r"skipping corrupt image .*img3\.png"):
        image, target = dataset[1]
    assert target["image_id"] == 4 and image.shape == (3, 23, 23)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dataset[1][1]["image_id"] == 4  # remembered: no second warning
    assert len(dataset.skipped_images) == 2
