"""Pretraining clips from a weighted mixture of video and image sources (section 2.2, Table 1).

Every sample is a pure function of (seed, stream position): the source draw, the clip start and the
crop all come from a generator seeded by them. A run that resumes at the same position therefore sees
exactly the clips an uninterrupted run would. Unreadable files are skipped and counted, never fatal.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, Sampler

from vjepa_vlm.data.normalization import frames_to_unit_float, normalize_frames
from vjepa_vlm.data.video_io import VideoDecodeError, read_video, sample_frame_indices, video_info


@dataclass
class SourceArgs:
    """One data source: a JSONL manifest whose rows name a "video" or an "image" file.

    Args:
        manifest: JSONL file; each row has "video" or "image" (a path relative to `root`), optionally a segment
            "start"/"end" in seconds and a per-row sampling "weight" (`read_source`; the curated scene manifest
            of `vjepa-curate` has both).
        weight: sampling weight in the mixture (normalized over sources; Table 1 for VideoMix22M).
        root: directory the paths are relative to (default: the manifest's directory).
    """

    manifest: str = ""
    weight: float = 1.0
    root: str | None = None


@dataclass
class DataArgs:
    """Data section of a pretraining config.

    Args:
        sources: the mixture.
        num_frames: frames per clip (16 primary phase, 64 cooldown; Table 9).
        fps: frame rate clips are sampled at (Table 9: 4).
        crop_size: output side length (Table 9: 256; 256/384/512 in cooldown).
        crop_scale: random-resized-crop area fraction (Table 9: [0.3, 1.0]).
        crop_aspect_ratio: random-resized-crop aspect ratio (Table 9: [0.75, 1.35]).
        batch_size: clips per device per micro-batch.
        num_workers: DataLoader worker processes.
        max_retries: consecutive unreadable files tolerated for one sample before giving up.
    """

    sources: list[SourceArgs] = field(default_factory=list)
    num_frames: int = 16  # Table 9
    fps: float = 4.0  # Table 9
    crop_size: int = 256  # Table 9
    crop_scale: tuple[float, float] = (0.3, 1.0)  # Table 9
    crop_aspect_ratio: tuple[float, float] = (0.75, 1.35)  # Table 9
    batch_size: int = 24
    num_workers: int = 0
    max_retries: int = 20

    def __post_init__(self):
        self.crop_scale = tuple(self.crop_scale)
        self.crop_aspect_ratio = tuple(self.crop_aspect_ratio)

    def validate(self) -> list[str]:
        errors = []
        if any(source.weight < 0 for source in self.sources):
            errors.append("data.sources[*].weight must be >= 0")
        if self.sources and sum(source.weight for source in self.sources) <= 0:
            errors.append("data.sources weights must not all be zero")
        if not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            errors.append(f"data.crop_scale must satisfy 0 < min <= max <= 1, got {self.crop_scale}")
        if self.num_frames < 1 or self.crop_size < 1 or self.batch_size < 1:
            errors.append("data.num_frames, data.crop_size and data.batch_size must be >= 1")
        if self.fps <= 0:
            errors.append(f"data.fps must be > 0, got {self.fps}")
        return errors


@dataclass(frozen=True)
class ManifestItem:
    """One manifest row: a "video" or "image" file, for a video optionally a segment [start, end) in seconds."""

    kind: str
    path: Path
    start: float | None = None
    end: float | None = None


def _number(value, where: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: '{key}' must be a finite number, got {value!r}")
    return float(value)


def read_source(path: str | Path, root: str | Path | None = None) -> tuple[list[ManifestItem], np.ndarray | None]:
    """Rows of a pretraining manifest and their sampling probabilities (None: uniform).

    A row names a "video" or an "image" (relative to `root`, default the manifest's folder). A video row may add
    "start" and "end" (seconds; clips are then drawn inside that segment, as in a scene manifest of
    `vjepa_vlm.data.curation`) and any row a "weight": when one row has a weight every row needs one, and rows
    are drawn with probability proportional to it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} does not exist")
    base = Path(root) if root is not None else path.parent
    items, weights = [], []
    for line_number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{line_number}"
        row = json.loads(line)
        kind = "video" if "video" in row else "image" if "image" in row else None
        if kind is None:
            raise ValueError(f"{where}: a row needs a 'video' or 'image' key, got keys {sorted(row)}")
        start = end = None
        if "start" in row or "end" in row:
            if kind != "video" or "start" not in row or "end" not in row:
                raise ValueError(f"{where}: 'start' and 'end' (seconds) go together, on a 'video' row")
            start, end = _number(row["start"], where, "start"), _number(row["end"], where, "end")
            if not 0 <= start < end:
                raise ValueError(f"{where}: a segment needs 0 <= start < end, got start {start} and end {end}")
        if "weight" in row:
            weight = _number(row["weight"], where, "weight")
            if weight < 0:
                raise ValueError(f"{where}: 'weight' must be >= 0, got {weight}")
            weights.append(weight)
        items.append(ManifestItem(kind, base / row[kind], start, end))
    if not items:
        raise ValueError(f"manifest {path} has no rows")
    if not weights:
        return items, None
    if len(weights) != len(items):
        raise ValueError(f"manifest {path}: {len(weights)} of {len(items)} rows have a 'weight'; give every row one or none")
    total = float(np.sum(weights))
    if total <= 0:
        raise ValueError(f"manifest {path}: the row weights sum to 0")
    return items, np.asarray(weights) / total


def read_manifest(path: str | Path, root: str | Path | None = None) -> list[tuple[str, Path]]:
    """Rows of a JSONL manifest as (kind, absolute path), kind being "video" or "image" (segments and weights,
    if any, are left out)."""
    return [(item.kind, item.path) for item in read_source(path, root)[0]]


def random_resized_crop_box(
    height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float], rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a crop with area fraction in `scale` and w/h in `ratio` (log-uniform)."""
    area = height * width
    for _ in range(10):
        target_area = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side, side


def crop_and_normalize(
    frames: np.ndarray, box: tuple[int, int, int, int], crop_size: int
) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> normalized float (T, 3, crop_size, crop_size)."""
    top, left, h, w = box
    clip = frames_to_unit_float(frames[:, top : top + h, left : left + w])
    return normalize_frames(F.interpolate(clip, size=(crop_size, crop_size), mode="bilinear", antialias=True))


def load_frames(item: ManifestItem, num_frames: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """A clip of `num_frames` frames sampled at `fps` from a random start (inside the item's segment, if it has
    one); an image repeated in time."""
    if item.kind == "image":
        with Image.open(item.path) as image:
            frame = np.asarray(image.convert("RGB"))
        return np.repeat(frame[None], num_frames, axis=0)
    info = video_info(item.path)
    first, stop = 0, info.num_frames
    if item.start is not None:
        first = min(int(math.floor(item.start * info.fps)), info.num_frames - 1)
        stop = min(info.num_frames, max(first + 1, int(math.ceil(item.end * info.fps))))
    span = int(math.ceil((num_frames - 1) * info.fps / fps)) + 1
    start = first + int(rng.integers(0, max(1, stop - first - span + 1)))
    # Indices past the segment's end are clamped to its last frame, so a clip never crosses into the next scene.
    indices = sample_frame_indices(stop, num_frames, mode="fps", video_fps=info.fps, target_fps=fps, start=start)
    return read_video(item.path, indices)


class PretrainMixture(Dataset):
    """A stream of augmented clips indexed by stream position (any non-negative int).

    Each sample carries `skipped_files`, the unreadable files passed over while drawing it; `skipped`
    counts them by path in this process (in the workers when the DataLoader has any).

    Args:
        args: the data section (sources, clip shape, crop parameters).
        seed: base seed; sample `position` is drawn from a generator seeded by (seed, position).
    """

    def __init__(self, args: DataArgs, seed: int = 0):
        if not args.sources:
            raise ValueError("data.sources is empty: give at least one manifest")
        self.args = args
        self.seed = seed
        sources = [read_source(source.manifest, source.root) for source in args.sources]
        self.sources = [items for items, _ in sources]
        # Cumulative row probabilities of weighted manifests: one uniform draw and a binary search per sample.
        self.row_cdfs = [None if probabilities is None else np.cumsum(probabilities) for _, probabilities in sources]
        weights = np.array([source.weight for source in args.sources], dtype=np.float64)
        self.weights = weights / weights.sum()
        self.skipped: Counter[str] = Counter()

    def __len__(self) -> int:
        return sum(len(items) for items in self.sources)

    def __getitem__(self, position: int) -> dict:
        rng = np.random.default_rng([self.seed, int(position)])
        for attempt in range(self.args.max_retries):
            source = int(rng.choice(len(self.sources), p=self.weights))
            items, cdf = self.sources[source], self.row_cdfs[source]
            if cdf is None:
                row = int(rng.integers(len(items)))
            else:
                row = min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), len(items) - 1)
            item = items[row]
            try:
                frames = load_frames(item, self.args.num_frames, self.args.fps, rng)
            except (VideoDecodeError, UnidentifiedImageError, OSError, ValueError):
                self.skipped[str(item.path)] += 1
                continue
            box = random_resized_crop_box(*frames.shape[1:3], self.args.crop_scale, self.args.crop_aspect_ratio, rng)
            return {
                "pixel_values": crop_and_normalize(frames, box, self.args.crop_size),
                "index": int(position),
                # Travels with the sample so the count survives DataLoader worker processes.
                "skipped_files": attempt,
            }
        raise RuntimeError(
            f"{self.args.max_retries} consecutive unreadable files at stream position {position}; "
            f"skipped so far: {dict(self.skipped.most_common(5))}"
        )


class StreamPositionSampler(Sampler[int]):
    """Endless stream positions start+rank, start+rank+world, ...; a resumed run passes its position.

    Args:
        start: global samples already consumed.
        rank, world_size: this process's share of the stream.
    """

    def __init__(self, start: int = 0, rank: int = 0, world_size: int = 1):
        self.start, self.rank, self.world_size = start, rank, world_size

    def __iter__(self):
        position = self.start + self.rank
        while True:
            yield position
            position += self.world_size
