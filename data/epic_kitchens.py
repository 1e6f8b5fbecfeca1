"""Action segments for anticipation: EPIC-KITCHENS-100's official CSVs and the synthetic world's manifest.

EPIC-KITCHENS-100 (`EPIC_100_train.csv`, `EPIC_100_validation.csv`) has one row per action with `narration_id,
participant_id, video_id, start_frame, stop_frame, verb_class, noun_class` (and more columns, ignored). Frame numbers
are 1-based, at the video's own rate. The dataset's layout is read under a root directory:

    <root>/<participant_id>/videos/<video_id>.MP4                      (or .mp4), or
    <root>/<participant_id>/rgb_frames/<video_id>/frame_0000000001.jpg  (one JPEG per frame, numbered from 1)

A frame folder has no rate of its own: give `EPIC_100_video_info.csv` (`video_id, duration, fps, resolution`) or
one `frame_fps` for all. Actions are the (verb, noun) pairs of the CSVs read together (`action_vocabulary`), so train
and validation share their ids, as in facebookresearch/vjepa2 `evals/action_anticipation_frozen/`.

The synthetic world's `anticipation.jsonl` rows (`video`, `fps`, `event_frame`, `verb`, `noun`, `action`) become
segments whose action starts and stops at the event frame.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vjepa_vlm.data.manifests import read_jsonl
from vjepa_vlm.data.video_io import read_video, video_info

EPIC_COLUMNS = ("narration_id", "participant_id", "video_id", "start_frame", "stop_frame", "verb_class", "noun_class")
FRAME_PATTERN = "frame_{:010d}.jpg"


@dataclass(frozen=True)
class ActionSegment:
    """One action of a video.

    Args:
        source: a video file, or a folder of `frame_%010d.jpg` files.
        fps: frame rate of `source`.
        start_frame, stop_frame: 0-based first and last frame of the action.
        verb, noun, action: class ids (action = id of the (verb, noun) pair).
        key: an identifier for messages (narration id, or the manifest row id).
    """

    source: Path
    fps: float
    start_frame: int
    stop_frame: int
    verb: int
    noun: int
    action: int
    key: str = ""

    @property
    def labels(self) -> tuple[int, int, int]:
        return self.verb, self.noun, self.action


def read_segment_frames(segment: ActionSegment, indices: np.ndarray) -> np.ndarray:
    """uint8 (T, H, W, 3) frames of `segment.source` at 0-based `indices` (repeats allowed)."""
    if segment.source.is_dir():
        frames = []
        for index in indices.tolist():
            path = segment.source / FRAME_PATTERN.format(index + 1)
            if not path.is_file():
                raise FileNotFoundError(f"{segment.key}: frame {index + 1} of {segment.source} ({path.name}) is missing")
            with Image.open(path) as image:
                frames.append(np.asarray(image.convert("RGB")))
        return np.stack(frames)
    return read_video(segment.source, indices)


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"EPIC-KITCHENS annotation file {path} does not exist")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [name for name in required if name not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; expected at least {list(required)}")
        return list(reader)


def _integer(path: Path, line: int, row: dict, column: str) -> int:
    try:
        return int(row[column])
    except (TypeError, ValueError):
        raise ValueError(f"{path}:{line}: column {column!r} must be an integer, got {row[column]!r}") from None


def action_vocabulary(*csv_paths: str | Path) -> dict[tuple[int, int], int]:
    """Ids of every (verb_class, noun_class) pair of the given CSVs, in sorted order."""
    pairs = set()
    for path in map(Path, csv_paths):
        for line, row in enumerate(_read_csv(path, EPIC_COLUMNS), start=2):
            pairs.add((_integer(path, line, row, "verb_class"), _integer(path, line, row, "noun_class")))
    return {pair: index for index, pair in enumerate(sorted(pairs))}


def _source(root: Path, participant: str, video_id: str) -> Path:
    for name in (f"{video_id}.MP4", f"{video_id}.mp4"):
        video = root / participant / "videos" / name
        if video.is_file():
            return video
    frames = root / participant / "rgb_frames" / video_id
    if frames.is_dir():
        return frames
    raise FileNotFoundError(
        f"video {video_id} not found under {root}: expected {participant}/videos/{video_id}.MP4 or "
        f"{participant}/rgb_frames/{video_id}/"
    )


def _frame_rates(video_info_csv: Path | None) -> dict[str, float]:
    if video_info_csv is None:
        return {}
    rows = _read_csv(video_info_csv, ("video_id", "fps"))
    return {row["video_id"]: float(row["fps"]) for row in rows}


def read_epic_kitchens(
    annotations: str | Path,
    root: str | Path,
    actions: dict[tuple[int, int], int],
    video_info_csv: str | Path | None = None,
    frame_fps: float | None = None,
) -> list[ActionSegment]:
    """Segments of an EPIC-KITCHENS-100 annotation CSV over videos or frame folders under `root`.

    Args:
        annotations: `EPIC_100_train.csv` or `EPIC_100_validation.csv` (or a CSV with the same columns).
        root: the dataset root (see the module docstring for the layout).
        actions: (verb, noun) -> action id, from `action_vocabulary` over every CSV used.
        video_info_csv: `EPIC_100_video_info.csv`, the frame rate of frame folders.
        frame_fps: the frame rate of every frame folder missing from `video_info_csv`.
    """
    annotations, root = Path(annotations), Path(root)
    rates = _frame_rates(Path(video_info_csv) if video_info_csv is not None else None)
    sources: dict[tuple[str, str], tuple[Path, float]] = {}
    segments = []
    for line, row in enumerate(_read_csv(annotations, EPIC_COLUMNS), start=2):
        start, stop = (_integer(annotations, line, row, c) for c in ("start_frame", "stop_frame"))
        verb, noun = (_integer(annotations, line, row, c) for c in ("verb_class", "noun_class"))
        if not 1 <= start <= stop:
            raise ValueError(f"{annotations}:{line}: need 1 <= start_frame <= stop_frame, got {start}, {stop}")
        if (verb, noun) not in actions:
            raise ValueError(f"{annotations}:{line}: (verb_class, noun_class) = {(verb, noun)} is not in the action vocabulary")
        key = (row["participant_id"], row["video_id"])
        if key not in sources:
            source = _source(root, *key)
            fps = video_info(source).fps if source.is_file() else rates.get(key[1], frame_fps)
            if fps is None:
                raise ValueError(
                    f"{annotations}:{line}: frame folder {source} has no frame rate: give video_info_csv "
                    "(EPIC_100_video_info.csv) listing it, or frame_fps"
                )
            sources[key] = (source, float(fps))
        source, fps = sources[key]
        segments.append(ActionSegment(source, fps, start - 1, stop - 1, verb, noun, actions[(verb, noun)], row["narration_id"]))
    if not segments:
        raise ValueError(f"{annotations} has no action rows")
    return segments


def read_anticipation_manifest(path: str | Path, root: str | Path | None = None) -> list[ActionSegment]:
    """Segments of a synthetic world's `anticipation.jsonl` (paths relative to `root`, default the world dir)."""
    path = Path(path)
    base = Path(root) if root is not None else path.parent.parent
    segments = []
    for line, row in enumerate(read_jsonl(path), start=1):
        missing = [k for k in ("video", "fps", "event_frame", "verb", "noun", "action") if k not in row]
        if missing:
            raise ValueError(f"{path}:{line}: missing key(s) {missing}")
        event = int(row["event_frame"])
        segments.append(ActionSegment(base / row["video"], float(row["fps"]), event, event, int(row["verb"]),
                                      int(row["noun"]), int(row["action"]), str(row.get("id", line))))
    if not segments:
        raise ValueError(f"{path} has no rows")
    return segments


__all__ = ["ActionSegment", "EPIC_COLUMNS", "action_vocabulary", "read_anticipation_manifest", "read_epic_kitchens",
           "read_segment_frames"]
