"""Detection (and tracking) on videos, cameras and network streams.

    torchdet predict --weights runs/a/best.pt clip.mp4 --out pred          # file: progress bar
    torchdet predict --weights runs/a/best.pt 0 --out pred --track         # camera 0, until Ctrl-C
    torchdet predict --weights runs/a/best.pt rtsp://cam.local/live --out pred

Frames are decoded and the annotated video encoded with PyAV (FFmpeg), an optional extra:
``pip install 'torchdet[video]'``. Frames go through the model in batches; each frame's
detections (with track ids under `--track`) are appended to ``OUT/<name>.jsonl``, one JSON
object per line and per frame: ``{"frame": 0, "timestamp": 0.0, "detections": [{"box": [x1,
y1, x2, y2], "score": 0.93, "label": 1, "category_name": "person", "track_id": 4}, ...]}``.
Lines are written as frames are done, so an endless stream's file is readable at any time.
Ctrl-C or the end of the stream stops cleanly: the video file is finished (playable) and the
JSON Lines file holds every frame written to it.
"""
from __future__ import annotations

import json
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from torchdet.progress import bars_enabled, echo, progress
from torchdet.inference.tracking import ByteTracker

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".flv", ".wmv")
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")


def _av() -> Any:
    try:
        import av
    except ImportError as error:
        raise ImportError("video input and output need PyAV: pip install 'torchdet[video]'") from error
    return av


def is_video_source(source: str) -> bool:
    """Whether `source` names a video file (by suffix), a camera index ("0") or a stream URL."""
    text = str(source)
    if Path(text).is_dir():
        return False
    camera = text.isdigit() and not Path(text).exists()
    return camera or text.lower().startswith(STREAM_SCHEMES) or Path(text).suffix.lower() in VIDEO_SUFFIXES


def _source_name(source: str) -> str:
    if source.isdigit():
        return f"camera{source}"
    if source.lower().startswith(STREAM_SCHEMES):
        return "stream"
    return Path(source).stem


class VideoReader:
    """Frames of a video file, camera or stream: iterate for (index, timestamp s, uint8 [3, H, W]).

    `fps` (None when the source does not say), `num_frames` (None for cameras and streams),
    `width` and `height` describe the source.
    """

    def __init__(self, source: str) -> None:
        av = _av()
        self.source = str(source)
        self.live = self.source.isdigit() or self.source.lower().startswith(STREAM_SCHEMES)
        args = _open_args(self.source)
        try:
            self.container = av.open(*args)
        except (av.FFmpegError, OSError) as error:
            raise OSError(f"cannot open video source {self.source!r}: {error}") from error
        if not self.container.streams.video:
            self.container.close()
            raise ValueError(f"{self.source!r} has no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        rate = self.stream.average_rate or self.stream.guessed_rate
        self.fps: Optional[float] = float(rate) if rate else None
        self.num_frames: Optional[int] = None if self.live or not self.stream.frames else int(self.stream.frames)
        self.width, self.height = int(self.stream.width), int(self.stream.height)

    def __iter__(self) -> Iterator[Tuple[int, float, Tensor]]:
        av = _av()
        index = 0
        try:
            for frame in self.container.decode(self.stream):
                timestamp = float(frame.time) if frame.time is not None else index / (self.fps or 30.0)
                image = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1).contiguous()
                yield index, timestamp, image
                index += 1
        except av.FFmpegError as error:
            if not self.live:
                raise OSError(f"cannot decode {self.source!r} at frame {index}: {error}") from error
            echo(f"stream {self.source!r} ended: {error}")  # a dropped connection ends a live stream

    def close(self) -> None:
        self.container.close()


def _open_args(source: str) -> Tuple[Any, ...]:
    """av.open's (file, mode, format, options) for a file, a camera index or a URL."""
    if source.isdigit():
        if sys.platform.startswith("linux"):
            return (f"/dev/video{source}", "r", "v4l2")
        if sys.platform == "darwin":
            return (source, "r", "avfoundation")
        raise ValueError(f"camera {source}: camera indexes work on Linux and macOS; on Windows stream the "
                         "camera (e.g. with ffmpeg to rtsp://...) and pass that URL")
    if source.lower().startswith(("rtsp://", "rtsps://")):
        return (source, "r", None, {"rtsp_transport": "tcp"})
    if not Path(source).is_file():
        raise FileNotFoundError(f"video file not found: {source!r}")
    return (source,)


class VideoWriter:
    """An H.264 (or MPEG-4 where FFmpeg lacks libx264) MP4 of uint8 [3, H, W] frames."""

    def __init__(self, path: Path, fps: float, width: int, height: int) -> None:
        av = _av()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(str(self.path), "w")
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        self.stream = self.container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        self.stream.width, self.stream.height = max(2, width - width % 2), max(2, height - height % 2)
        self.stream.pix_fmt = "yuv420p"  # even sizes; PyAV rescales odd-sized frames

    def write(self, image: Tensor) -> None:
        frame = _av().VideoFrame.from_ndarray(image.permute(1, 2, 0).contiguous().numpy(), format="rgb24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode(None):
            self.container.mux(packet)
        self.container.close()


@dataclass
class VideoResult:
    """`frames` processed, `detections` written, `tracks` started (0 without tracking), the files
    written, and whether Ctrl-C stopped the run."""

    frames: int
    detections: int
    json: Path
    video: Optional[Path]
    tracks: int = 0
    interrupted: bool = False


@torch.no_grad()
def predict_video(model: nn.Module, source: str, *, out_dir: Path, categories: Sequence[str],
                  device: torch.device = torch.device("cpu"), score_thresh: float = 0.5, batch_size: int = 4,
                  tracker: Optional[ByteTracker] = None, draw: bool = True, max_frames: Optional[int] = None,
                  show_progress: bool = False) -> VideoResult:
    """Run `model` over the frames of `source` (a video file, a camera index such as "0", a URL).

    Writes ``out_dir/<name>.jsonl`` (see the module docstring) and, with `draw`, the annotated
    ``out_dir/<name>.mp4``. Without a tracker, detections scoring below `score_thresh` are left
    out; with one, every detection goes to `tracker.update` and what it returns is kept.
    """
    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1; got {batch_size}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"--max-frames must be at least 1; got {max_frames}")
    model.eval()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = _source_name(str(source))
    result = VideoResult(frames=0, detections=0, json=out_dir / f"{name}.jsonl",
                         video=out_dir / f"{name}.mp4" if draw else None)
    with ExitStack() as stack:
        reader = VideoReader(str(source))
        stack.callback(reader.close)
        lines = stack.enter_context(open(result.json, "w"))
        writer: Optional[VideoWriter] = None
        if result.video is not None:
            writer = VideoWriter(result.video, reader.fps or 30.0, reader.width, reader.height)
            stack.callback(writer.close)
        total = reader.num_frames
        if total is not None and max_frames is not None:
            total = min(total, max_frames)

        def finish(batch: List[Tuple[int, float, Tensor]]) -> None:
            outputs = model([image.to(device, torch.float32) / 255.0 for _, _, image in batch])
            for (index, timestamp, image), output in zip(batch, outputs):
                output = {k: v.detach().cpu() for k, v in output.items()}
                if tracker is not None:
                    output = tracker.update(output)
                else:
                    keep = output["scores"] >= score_thresh
                    output = {k: v[keep] for k, v in output.items()}
                lines.write(json.dumps(_frame_record(index, timestamp, output, categories)) + "\n")
                if writer is not None:
                    writer.write(draw_frame(image, output, categories))
                result.frames += 1
                result.detections += len(output["boxes"])
            lines.flush()

        batch: List[Tuple[int, float, Tensor]] = []
        try:
            for item in progress(reader, total=total, desc=name, enabled=show_progress):
                batch.append(item)
                if len(batch) == batch_size:
                    finish(batch)
                    batch = []
                if max_frames is not None and item[0] + 1 >= max_frames:
                    break
            if batch:
                finish(batch)
        except KeyboardInterrupt:
            result.interrupted = True
    if tracker is not None:
        result.tracks = tracker.tracks_started
    return result


def _frame_record(index: int, timestamp: float, output: Dict[str, Tensor], categories: Sequence[str]
                  ) -> Dict[str, Any]:
    detections = []
    track_ids = output.get("track_ids")
    for i, (box, score, label) in enumerate(zip(output["boxes"].tolist(), output["scores"].tolist(),
                                                output["labels"].tolist())):
        det = {"box": [round(v, 2) for v in box], "score": round(score, 4), "label": int(label),
               "category_name": categories[label] if 0 <= label < len(categories) else str(label)}
        if track_ids is not None:
            det["track_id"] = int(track_ids[i])
        detections.append(det)
    return {"frame": index, "timestamp": round(timestamp, 4), "detections": detections}


def draw_frame(image: Tensor, output: Dict[str, Tensor], categories: Sequence[str], width: int = 2,
               font_size: Optional[int] = None) -> Tensor:
    """`image` uint8 [3, H, W] with its detections drawn: captions ``#id name score`` and one colour
    per track when ``track_ids`` are given, else ``name score`` and one colour per class."""
    from torchdet.visualization import color_palette, draw_bounding_boxes, draw_segmentation_masks

    labels = output["labels"].tolist()
    if not labels:
        return image  # nothing to draw (drawing no boxes would warn on every empty frame)
    names = [categories[label] if 0 <= label < len(categories) else str(label) for label in labels]
    captions = [f"{name} {score:.2f}" for name, score in zip(names, output["scores"].tolist())]
    keys = labels
    if "track_ids" in output:
        keys = output["track_ids"].tolist()
        captions = [f"#{track} {caption}" for track, caption in zip(keys, captions)]
    palette = color_palette(max(keys, default=0) + 1)
    colours = [palette[key] for key in keys]
    if "masks" in output:
        masks = output["masks"]
        masks = masks[:, 0] if masks.dim() == 4 else masks
        image = draw_segmentation_masks(image, masks > 0.5 if masks.is_floating_point() else masks.bool(),
                                        alpha=0.5, colors=colours)
    return draw_bounding_boxes(image, output["boxes"], captions, colors=colours, width=width, font_size=font_size,
                               label_background=True)


def run_video(weights: str, source: str, *, out: str, model: Optional[str] = None, num_classes: Optional[int] = None,
              score_thresh: float = 0.5, batch_size: int = 4, device: Optional[str] = None, draw: bool = True,
              track: bool = False, slicing: Optional[Dict[str, Any]] = None,
              overrides: Optional[Dict[str, Any]] = None, max_frames: Optional[int] = None,
              log: Callable[[str], None] = echo) -> VideoResult:
    """`torchdet predict` on a video, camera or stream: load the model `weights` describes, optionally
    slice each frame (`slicing`: SlicedPredictor's options) and track (`track`), and write OUT."""
    from torchdet.distributed import resolve_device
    from torchdet.inference.api import lower_score_threshold
    from torchdet.inference.loading import load_inference_model
    from torchdet.inference.slicing import SlicedPredictor

    if not 0.0 <= score_thresh <= 1.0:
        raise ValueError(f"--score-thresh must be in [0, 1], got {score_thresh}")
    dev = resolve_device(device)
    net, spec, _ = load_inference_model(weights, model_name=model, num_classes=num_classes,
                                        overrides=dict(overrides or {}), device=dev)
    tracker = None
    if track:  # ByteTrack keeps tracks alive with the low-score detections: let them through the model
        tracker = ByteTracker(high_thresh=score_thresh, low_thresh=min(0.1, score_thresh),
                              new_track_thresh=min(1.0, score_thresh + 0.1))
    lower_score_threshold(net, tracker.low_thresh if tracker else score_thresh)
    if slicing:
        net = SlicedPredictor(net, **slicing)
    result = predict_video(net, source, out_dir=Path(out), categories=spec.categories, device=dev,
                           score_thresh=score_thresh, batch_size=batch_size, tracker=tracker, draw=draw,
                           max_frames=max_frames, show_progress=bars_enabled())
    stop = "stopped by Ctrl-C after" if result.interrupted else "processed"
    log(f"{stop} {result.frames} frames: {result.detections} detections"
        + (f", {result.tracks} tracks" if track else "") + f"; wrote {result.json}"
        + (f" and {result.video}" if result.video else ""))
    return result
