"""Videos in and out: decoding, batched prediction, JSON Lines, tracking, Ctrl-C, and the CLI."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("av")

from inference.mot import clear_mot  # noqa: E402
from inference.scenes import BUILDER, CATEGORIES, BlobDetector, moving_squares, recall  # noqa: E402
from torchdet.inference.tracking import ByteTracker  # noqa: E402
from torchdet.inference.video import VideoReader, VideoWriter, is_video_source, predict_video  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread_quiet(monkeypatch):
    monkeypatch.setenv("CI", "true")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def squares_video(tmp_path_factory):
    """(path, ground-truth tracks, frames): 30 frames of 4 bouncing squares, 120 x 160, 10 fps.

    The squares never touch (the blob detector would see two touching squares as one)."""
    frames, tracks = moving_squares(num_frames=30, num_objects=4, seed=1)
    path = tmp_path_factory.mktemp("video") / "squares.mp4"
    writer = VideoWriter(path, fps=10, width=160, height=120)
    for frame in frames:
        writer.write(frame)
    writer.close()
    return path, tracks, frames


def _lines(path: Path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_write_and_read_back(squares_video):
    path, _, frames = squares_video
    reader = VideoReader(str(path))
    assert (reader.width, reader.height, reader.num_frames) == (160, 120, 30)
    assert reader.fps == pytest.approx(10.0)
    decoded = list(reader)
    reader.close()
    assert [i for i, _, _ in decoded] == list(range(30))
    assert [t for _, t, _ in decoded] == pytest.approx([i / 10 for i in range(30)])
    assert decoded[5][2].shape == (3, 120, 160)
    blur = torch.nn.AvgPool2d(4)  # the encoder drops the pixel noise; compare the picture
    error = (blur(decoded[5][2].float()) - blur(frames[5].float())).abs().mean()
    moved = (blur(decoded[5][2].float()) - blur(frames[8].float())).abs().mean()
    assert error < 6 and moved > 2 * error


def test_predict_and_track_through_the_video(squares_video, tmp_path):
    path, tracks, _ = squares_video
    result = predict_video(BlobDetector(min_size=120).eval(), str(path), out_dir=tmp_path, categories=CATEGORIES,
                           batch_size=4, tracker=ByteTracker())
    assert result.frames == 30 and not result.interrupted and result.video.exists()
    records = _lines(result.json)
    assert [r["frame"] for r in records] == list(range(30))
    assert records[3]["timestamp"] == pytest.approx(0.3)
    predicted = [{d["track_id"]: d["box"] for d in r["detections"]} for r in records]
    scores = clear_mot(tracks, predicted)
    assert scores["mota"] > 0.85 and scores["id_switches"] == 0, scores
    reader = VideoReader(str(result.video))
    assert reader.num_frames == 30 and (reader.width, reader.height) == (160, 120)
    reader.close()


class _StopsAfter(torch.nn.Module):
    """A detector that finds nothing and presses Ctrl-C on its `calls`-th call."""

    def __init__(self, calls: int) -> None:
        super().__init__()
        self.calls = calls

    def forward(self, images):
        self.calls -= 1
        if self.calls == 0:
            raise KeyboardInterrupt
        return [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}
                for _ in images]


def test_ctrl_c_finishes_the_files(squares_video, tmp_path):
    path, _, _ = squares_video
    result = predict_video(_StopsAfter(3), str(path), out_dir=tmp_path, categories=CATEGORIES, batch_size=4)
    assert result.interrupted and result.frames == 8
    assert len(_lines(result.json)) == 8
    reader = VideoReader(str(result.video))
    assert len(list(reader)) == 8  # a complete, decodable file
    reader.close()


def test_sources_and_errors(squares_video, tmp_path, monkeypatch):
    path, _, _ = squares_video
    assert is_video_source(str(path)) and is_video_source("0") and is_video_source("rtsp://cam/live")
    assert not is_video_source("photo.jpg") and not is_video_source(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        VideoReader(str(tmp_path / "missing.mp4"))
    result = predict_video(_StopsAfter(100), str(path), out_dir=tmp_path, categories=CATEGORIES, batch_size=2,
                           max_frames=5, draw=False)
    assert result.frames == 5 and result.video is None
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(ImportError, match=r"pip install 'torchdet\[video\]'"):
        VideoReader(str(path))


@pytest.fixture(scope="module")
def blob_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "blob.pt"
    torch.save({"model": {}, "builder": BUILDER, "builder_kwargs": {"min_size": 120, "max_size": 1333},
                "categories": CATEGORIES}, path)
    return path


def test_cli_tracks_a_video(squares_video, blob_checkpoint, tmp_path, capsys):
    from torchdet.cli import main

    path, tracks, _ = squares_video
    out = tmp_path / "pred"
    code = main(["predict", "--weights", str(blob_checkpoint), str(path), "--out", str(out), "--track",
                 "--batch-size", "3", "--device", "cpu"])
    assert code == 0
    assert "processed 30 frames" in capsys.readouterr().out
    records = _lines(out / "squares.jsonl")
    assert len(records) == 30 and (out / "squares.mp4").stat().st_size > 0
    ids = {d["track_id"] for r in records for d in r["detections"]}
    assert ids == {1, 2, 3, 4}
    assert clear_mot(tracks, [{d["track_id"]: d["box"] for d in r["detections"]} for r in records])["id_switches"] == 0


def test_cli_rejects_track_on_images_and_mixed_sources(squares_video, blob_checkpoint, tmp_path, capsys):
    from torchdet.cli import main

    path, _, _ = squares_video
    assert main(["predict", "--weights", str(blob_checkpoint), "a.png", "--out", str(tmp_path), "--track"]) == 1
    assert "--track follows objects" in capsys.readouterr().err
    assert main(["predict", "--weights", str(blob_checkpoint), str(path), "b.mp4", "--out", str(tmp_path)]) == 1
    assert "one video" in capsys.readouterr().err


def test_cli_slices_video_frames(squares_video, blob_checkpoint, tmp_path):
    from torchdet.cli import main

    path, tracks, _ = squares_video
    out = tmp_path / "sliced"
    assert main(["predict", "--weights", str(blob_checkpoint), str(path), "--out", str(out), "--slice", "64", "80",
                 "--overlap", "0.5", "--max-frames", "6", "--no-pictures", "--device", "cpu"]) == 0
    records = _lines(out / "squares.jsonl")
    assert len(records) == 6 and not (out / "squares.mp4").exists()
    for record, truth in zip(records, tracks):  # one box per square, however the tiles cut it
        found = torch.tensor([d["box"] for d in record["detections"]])
        assert len(found) == 4 and recall(found, torch.tensor(list(truth.values())), iou=0.9) == 1.0


def test_cli_runs_a_tiny_torchdet_model_on_a_video(squares_video, tmp_path):
    """A real (untrained) torchdet detector through decode, slicing, tracking, drawing and encoding."""
    from torchdet.cli import main
    from torchdet.models.registry import build_model

    path, _, _ = squares_video
    torch.manual_seed(0)
    model = build_model("fasterrcnn_tiny", {"num_classes": 3})
    with torch.no_grad():  # untrained, but sure of class "a": every proposal survives as a detection
        model.roi_heads.box_predictor.cls_score.bias.copy_(torch.tensor([0.0, 6.0, 0.0]))
    checkpoint = tmp_path / "tiny.pt"
    torch.save({"model": model.state_dict(), "builder": "fasterrcnn_tiny", "builder_kwargs": {"num_classes": 3},
                "categories": ["__background__", "a", "b"]}, checkpoint)
    out = tmp_path / "tiny"
    assert main(["predict", "--weights", str(checkpoint), str(path), "--out", str(out), "--track", "--slice", "96",
                 "96", "--max-frames", "5", "--batch-size", "2", "--score-thresh", "0.3", "--device", "cpu"]) == 0
    records = _lines(out / "squares.jsonl")
    assert [r["frame"] for r in records] == list(range(5))
    tracked = [d for r in records for d in r["detections"]]
    assert tracked and {d["category_name"] for d in tracked} == {"a"}
    for det in tracked:
        assert set(det) == {"box", "score", "label", "category_name", "track_id"} and det["track_id"] >= 1
    reader = VideoReader(str(out / "squares.mp4"))
    assert len(list(reader)) == 5
    reader.close()
