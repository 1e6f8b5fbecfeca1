"""Video files on disk: H.264 mp4 writing, (selective) decoding, metadata and frame-index sampling.

Everything goes through PyAV so the same code reads the synthetic world and real datasets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import av
import numpy as np

SAMPLING_MODES = ("uniform", "fps")


class VideoDecodeError(RuntimeError):
    """A video file is missing, unreadable or has no decodable video frames."""


@dataclass(frozen=True)
class VideoInfo:
    """Stream metadata of one video file.

    Args:
        num_frames: number of decodable frames.
        fps: average frame rate of the video stream.
        height: frame height in pixels.
        width: frame width in pixels.
    """

    num_frames: int
    fps: float
    height: int
    width: int


def write_video(path: str | Path, frames: np.ndarray, fps: float, *, crf: int = 18, preset: str = "ultrafast") -> None:
    """Encode `frames` (uint8, T x H x W x 3, RGB) as H.264/yuv420p mp4 at `fps` frames per second.

    yuv420p halves chroma resolution, so height and width must be even; `crf` 18 keeps small colored
    objects distinguishable after compression while 'ultrafast' keeps generation cheap.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise ValueError(f"{path}: frames must be uint8 of shape (T, H, W, 3) with T >= 1, got {frames.dtype} {frames.shape}")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"{path}: H.264 yuv420p needs even height and width, got {height}x{width}")
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"{path}: fps must be a positive finite number, got {fps}")
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": preset, "crf": str(crf)}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def _open(path: str | Path) -> av.container.InputContainer:
    if not Path(path).is_file():
        raise VideoDecodeError(f"video file not found: {path}")
    try:
        container = av.open(str(path), mode="r")
    except av.FFmpegError as error:
        raise VideoDecodeError(f"cannot open video {path}: {error}") from error
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(f"{path} has no video stream")
    return container


def read_video(path: str | Path, indices: Sequence[int] | None = None) -> np.ndarray:
    """Decode frames of `path` as uint8 RGB, shape (T, H, W, 3).

    Args:
        path: video file.
        indices: frame indices to return, in the given order (repeats allowed); all frames when None.
            Decoding stops after the largest requested index.
    """
    wanted = None if indices is None else [int(i) for i in indices]
    if wanted is not None and (not wanted or min(wanted) < 0):
        raise ValueError(f"{path}: indices must be a non-empty list of frame numbers >= 0 (None reads all), got {wanted}")
    last = None if wanted is None else max(wanted)
    decoded: dict[int, np.ndarray] = {}
    needed = None if wanted is None else set(wanted)
    with _open(path) as container:
        try:
            for position, frame in enumerate(container.decode(video=0)):
                if needed is None or position in needed:
                    decoded[position] = frame.to_ndarray(format="rgb24")
                if last is not None and position >= last:
                    break
        except av.FFmpegError as error:
            raise VideoDecodeError(f"corrupt video {path}: {error}") from error
    if not decoded:
        raise VideoDecodeError(f"{path} contains no decodable video frames")
    if wanted is None:
        return np.stack([decoded[i] for i in sorted(decoded)])
    missing = sorted(set(wanted) - decoded.keys())
    if missing:
        raise ValueError(f"{path}: frame indices {missing} out of range (video has {len(decoded)} decodable frames up to the request)")
    return np.stack([decoded[i] for i in wanted])


def video_info(path: str | Path) -> VideoInfo:
    """Frame count, frame rate and size of `path`; counts by decoding when the container has no frame count."""
    with _open(path) as container:
        stream = container.streams.video[0]
        num_frames = stream.frames
        if num_frames <= 0:
            try:
                num_frames = sum(1 for _ in container.decode(video=0))
            except av.FFmpegError as error:
                raise VideoDecodeError(f"corrupt video {path}: {error}") from error
        rate = stream.average_rate or stream.base_rate
        if num_frames <= 0 or rate is None:
            raise VideoDecodeError(f"{path} contains no decodable video frames")
        return VideoInfo(num_frames=int(num_frames), fps=float(rate), height=stream.height, width=stream.width)


def sample_frame_indices(
    num_frames: int,
    num_samples: int,
    *,
    mode: str = "uniform",
    video_fps: float | None = None,
    target_fps: float | None = None,
    start: int = 0,
) -> list[int]:
    """Indices of `num_samples` frames of a `num_frames`-frame video, beginning at `start`.

    "uniform": the span [start, num_frames) is cut into `num_samples` equal segments and the centre frame of
    each is taken (frames repeat when num_samples exceeds the span). "fps": consecutive samples spaced by
    video_fps / target_fps frames, as when a video is resampled to `target_fps`; samples past the last frame
    are clamped to it (the clip is padded by repeating its last frame, never wrapped to its start, so time
    keeps flowing forward).
    """
    if num_frames < 1 or num_samples < 1:
        raise ValueError(f"num_frames and num_samples must be >= 1, got {num_frames} and {num_samples}")
    if not 0 <= start < num_frames:
        raise ValueError(f"start must be in [0, {num_frames}), got {start}")
    if mode == "uniform":
        span = num_frames - start
        return [start + int((i + 0.5) * span / num_samples) for i in range(num_samples)]
    if mode == "fps":
        if not video_fps or not target_fps or video_fps <= 0 or target_fps <= 0:
            raise ValueError(f"mode='fps' needs positive video_fps and target_fps, got {video_fps} and {target_fps}")
        step = video_fps / target_fps
        return [min(start + int(round(i * step)), num_frames - 1) for i in range(num_samples)]
    raise ValueError(f"mode must be one of {SAMPLING_MODES}, got {mode!r}")


def sample_frames(frames, num_frames: int) -> np.ndarray:
    """Uniformly pick `num_frames` frames of already-decoded (T, H, W, 3) frames."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or len(frames) == 0:
        raise ValueError(f"video frames must be a non-empty (T, H, W, 3) array, got shape {frames.shape}")
    return frames[sample_frame_indices(len(frames), num_frames, mode="uniform")]


def load_video_frames(
    path: str | Path, num_frames: int, sampling: str = "uniform", target_fps: float | None = None
) -> np.ndarray:
    """Decode `num_frames` uint8 frames of the video at `path` (raises `VideoDecodeError` if unreadable).

    Args:
        path: video file.
        num_frames: frames to return (a multiple of the encoder's tubelet size).
        sampling: "uniform" over the whole video, or "fps" (consecutive frames at `target_fps`, from the start).
        target_fps: frame rate for "fps" sampling (1 fps in the scaling setup, Table 22).
    """
    info = video_info(path)
    indices = sample_frame_indices(
        info.num_frames, num_frames, mode=sampling, video_fps=info.fps, target_fps=target_fps
    )
    return read_video(path, indices)
