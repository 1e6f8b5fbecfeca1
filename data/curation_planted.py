"""Planted curation data: long videos made of known scenes, some on target (synthetic-world clips), most not.

The curation tests and benchmark need a pool whose truth is known: where every cut is and which scenes a
curation by synthetic-world targets should keep. Off-target kinds stand for what web video has and a target
distribution lacks: noise, flat colour fields, scrolling text, and another object family (thin line figures on
a light background instead of filled sprites on a dark one). Noise evolves smoothly in time, as real video
does between cuts; per-frame white noise would make every frame a cut for any detector.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from vjepa_vlm.data.synthetic_motion import MOTION_NAMES
from vjepa_vlm.data.synthetic_scene import render, sample_scene
from vjepa_vlm.data.video_io import write_video

ON_TARGET = "world"
OFF_TARGET = ("noise", "flat", "text", "objects")
KINDS = (ON_TARGET, *OFF_TARGET)
_GLYPHS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz 0123456789"


def _smooth_field(size: int, rng: np.random.Generator) -> np.ndarray:
    coarse = rng.uniform(0, 255, size=(6, 6, 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC), dtype=np.float32)


def _noise(frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    start, end = _smooth_field(size, rng), _smooth_field(size, rng)
    blend = np.linspace(0, 1, frames, dtype=np.float32)[:, None, None, None]
    return (1 - blend) * start + blend * end + rng.normal(0, 12, size=(frames, size, size, 3))


def _flat(frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    color = rng.uniform(0, 255, size=3)
    drift = np.linspace(0, rng.uniform(-20, 20), frames)[:, None, None, None]
    return np.broadcast_to(color, (frames, size, size, 3)) + drift + rng.normal(0, 2, size=(frames, size, size, 3))


def _text(frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    ink, paper = (20, 20, 20), tuple(int(v) for v in rng.uniform(200, 255, size=3))
    page = Image.new("RGB", (size, size + frames), paper)
    draw = ImageDraw.Draw(page)
    for top in range(0, size + frames, 10):
        draw.text((2, top), "".join(rng.choice(list(_GLYPHS), size=size // 5)), fill=ink)
    page = np.asarray(page, dtype=np.float32)
    # One pixel per frame upwards: a credits roll.
    return np.stack([page[t : t + size] for t in range(frames)])


def _objects(frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    background = rng.uniform(170, 230)
    figures = [(rng.uniform(8, size - 8, 2), rng.uniform(6, size / 3), rng.uniform(0, np.pi), rng.uniform(-0.15, 0.15),
                tuple(int(v) for v in rng.integers(0, 120, 3))) for _ in range(int(rng.integers(3, 7)))]
    out = []
    for t in range(frames):
        image = Image.new("RGB", (size, size), (int(background),) * 3)
        draw = ImageDraw.Draw(image)
        for center, length, angle, spin, color in figures:
            theta = angle + spin * t
            offset = length / 2 * np.array([np.cos(theta), np.sin(theta)])
            draw.line([tuple(center - offset), tuple(center + offset)], fill=color, width=2)
        out.append(np.asarray(image, dtype=np.float32))
    return np.stack(out)


def _world(frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    motion = MOTION_NAMES[int(rng.integers(len(MOTION_NAMES)))]
    scene = sample_scene(motion, frames=frames, size=size, max_objects=3, compositional=False, rng=rng)
    return render(scene, frames, size, rng)


_MAKERS = {"world": _world, "noise": _noise, "flat": _flat, "text": _text, "objects": _objects}


def planted_scene(kind: str, frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 (frames, size, size, 3) of one scene of `kind` (one of KINDS)."""
    if kind not in _MAKERS:
        raise ValueError(f"unknown planted scene kind {kind!r}; expected one of {KINDS}")
    return np.clip(_MAKERS[kind](frames, size, rng), 0, 255).astype(np.uint8)


def write_planted_pool(
    out_dir: str | Path,
    *,
    num_videos: int,
    scenes_per_video: int,
    seconds: tuple[float, float] = (4.5, 7.0),
    on_target_fraction: float = 0.4,
    size: int = 64,
    fps: float = 8.0,
    seed: int = 0,
) -> list[dict]:
    """Write `num_videos` mp4s of concatenated scenes into `out_dir`; returns (and writes to truth.jsonl) the truth.

    Each truth row: {"video": file name, "num_frames", "fps", "scenes": [{"kind", "start", "end"}]} with frame
    bounds [start, end). Scene lengths are uniform in `seconds`; a scene is on target with probability
    `on_target_fraction`, otherwise one of OFF_TARGET uniformly.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    truth = []
    for index in range(num_videos):
        rng = np.random.default_rng([seed, index])
        parts, scenes, cursor = [], [], 0
        for _ in range(scenes_per_video):
            kind = ON_TARGET if rng.random() < on_target_fraction else OFF_TARGET[int(rng.integers(len(OFF_TARGET)))]
            length = round(rng.uniform(*seconds) * fps)
            parts.append(planted_scene(kind, length, size, rng))
            scenes.append({"kind": kind, "start": cursor, "end": cursor + length})
            cursor += length
        name = f"planted_{index:04d}.mp4"
        write_video(out_dir / name, np.concatenate(parts), fps)
        truth.append({"video": name, "num_frames": cursor, "fps": fps, "scenes": scenes})
    (out_dir / "truth.jsonl").write_text("".join(json.dumps(row) + "\n" for row in truth))
    return truth


def scene_kind(truth_row: dict, start_frame: int, end_frame: int) -> str:
    """The planted kind covering most of frames [start_frame, end_frame) of a truth row's video."""
    overlaps = {}
    for scene in truth_row["scenes"]:
        overlap = min(end_frame, scene["end"]) - max(start_frame, scene["start"])
        if overlap > 0:
            overlaps[scene["kind"]] = overlaps.get(scene["kind"], 0) + overlap
    if not overlaps:
        raise ValueError(f"frames [{start_frame}, {end_frame}) lie outside the planted video {truth_row['video']}")
    return max(overlaps, key=overlaps.get)


def cut_scores(truth_row: dict, cut_frames: list[int], tolerance: int = 1) -> tuple[int, int, int]:
    """(true positives, detected cuts, planted cuts) of one video; a cut matches a planted one within `tolerance`
    frames, each planted cut at most once."""
    planted = [scene["start"] for scene in truth_row["scenes"][1:]]
    unmatched, hits = set(planted), 0
    for cut in cut_frames:
        match = next((p for p in sorted(unmatched, key=lambda p: abs(p - cut)) if abs(p - cut) <= tolerance), None)
        if match is not None:
            unmatched.discard(match)
            hits += 1
    return hits, len(cut_frames), len(planted)


def retention_scores(truth: list[dict], pool_rows: list[dict], curated_rows: list[dict], video_name) -> dict:
    """Share of on-target and of off-target pool scenes that the curation kept.

    Args:
        truth: `write_planted_pool`'s rows.
        pool_rows, curated_rows: `curate`'s pool.jsonl and curated.jsonl rows (start/end in seconds).
        video_name: maps a manifest row's "video" to the truth's file name.
    """
    by_name = {row["video"]: row for row in truth}

    def key(row):
        return video_name(row["video"]), round(row["start"], 3)

    kept = {key(row) for row in curated_rows}
    counts = {"on": [0, 0], "off": [0, 0]}
    for row in pool_rows:
        truth_row = by_name[video_name(row["video"])]
        fps = truth_row["fps"]
        kind = scene_kind(truth_row, round(row["start"] * fps), round(row["end"] * fps))
        side = counts["on" if kind == ON_TARGET else "off"]
        side[0] += key(row) in kept
        side[1] += 1
    return {
        "on_target_scenes": counts["on"][1],
        "off_target_scenes": counts["off"][1],
        "on_target_kept": counts["on"][0] / max(counts["on"][1], 1),
        "off_target_kept": counts["off"][0] / max(counts["off"][1], 1),
        "curated_on_target_share": counts["on"][0] / max(counts["on"][0] + counts["off"][0], 1),
    }
