"""Scene splitting with PySceneDetect (appendix A.2: split at scene transitions, drop scenes shorter than 4 s).

Cuts come from PySceneDetect's `ContentDetector` (a jump in the HSV content of consecutive frames) on the
PyAV backend, the decoder the rest of the package uses. Two lengths are in seconds, so one setting works at any
frame rate: `min_cut_gap_s` is the detector's own minimum distance between cuts (shorter flickers are not cuts),
`min_scene_s` is the paper's filter applied to the scenes found.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from vjepa_vlm.data.video_io import VideoDecodeError


@dataclass(frozen=True)
class SceneArgs:
    """Scene detection settings.

    Args:
        min_scene_s: scenes shorter than this many seconds are dropped (appendix A.2: 4 s).
        threshold: `ContentDetector` threshold on the mean HSV change between frames (PySceneDetect's default 27).
        min_cut_gap_s: no two cuts closer than this many seconds.
    """

    min_scene_s: float = 4.0  # appendix A.2
    threshold: float = 27.0
    min_cut_gap_s: float = 0.5

    def validate(self) -> list[str]:
        errors = []
        if not (math.isfinite(self.min_scene_s) and self.min_scene_s >= 0):
            errors.append(f"min_scene_s must be a number of seconds >= 0, got {self.min_scene_s}")
        if not self.threshold > 0:
            errors.append(f"threshold must be > 0, got {self.threshold}")
        if not self.min_cut_gap_s > 0:
            errors.append(f"min_cut_gap_s must be > 0 seconds, got {self.min_cut_gap_s}")
        return errors


@dataclass(frozen=True)
class SceneSpan:
    """One scene: frames [start_frame, end_frame) of a video at `fps`."""

    start_frame: int
    end_frame: int
    fps: float

    @property
    def start(self) -> float:
        return self.start_frame / self.fps

    @property
    def end(self) -> float:
        return self.end_frame / self.fps

    @property
    def middle_frame(self) -> int:
        return (self.start_frame + self.end_frame - 1) // 2


def detect_cuts(path: str | Path, args: SceneArgs = SceneArgs()) -> tuple[list[SceneSpan], int, float]:
    """All scenes of `path` (none dropped), its frame count and fps; raises VideoDecodeError if unreadable."""
    from scenedetect import ContentDetector, SceneManager, open_video
    from scenedetect.video_stream import VideoOpenFailure

    if not Path(path).is_file():
        raise VideoDecodeError(f"video file not found: {path}")
    try:
        video = open_video(str(path), backend="pyav")
        fps = float(video.frame_rate)
        manager = SceneManager()
        manager.add_detector(ContentDetector(threshold=args.threshold, min_scene_len=max(1, round(args.min_cut_gap_s * fps))))
        manager.detect_scenes(video)
        scenes = manager.get_scene_list(start_in_scene=True)
        num_frames = video.frame_number
    except (VideoOpenFailure, OSError, ValueError, RuntimeError) as error:
        raise VideoDecodeError(f"cannot read video {path} for scene detection: {error}") from error
    if num_frames <= 0:
        raise VideoDecodeError(f"{path} contains no decodable video frames")
    spans = [SceneSpan(start.get_frames(), min(end.get_frames(), num_frames), fps) for start, end in scenes]
    return [span for span in spans if span.end_frame > span.start_frame], num_frames, fps


def split_scenes(path: str | Path, args: SceneArgs = SceneArgs()) -> list[SceneSpan]:
    """The scenes of `path` that last at least `args.min_scene_s` seconds."""
    spans, _, _ = detect_cuts(path, args)
    return [span for span in spans if span.end - span.start >= args.min_scene_s]
