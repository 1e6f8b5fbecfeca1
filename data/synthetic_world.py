"""The synthetic video world: configuration, per-clip records and the on-disk dataset (videos, images, manifests).

Layout written by `generate_world` (every path inside a manifest is relative to `out_dir`):

    meta.json                                   parameters, seed, class lists, split rules
    videos/{split}/{id}.mp4, images/{split}/{id}.png   (the image is the clip's middle frame)
    {split}/clips.jsonl                         everything known about each clip
    {split}/motion_classification.jsonl         {"video", "label"}   SSv2-like motion class
    {split}/appearance_classification.jsonl     {"video", "label"}   category of the main object
    {split}/image_classification.jsonl          {"image", "label"}   category of the main object
    {split}/anticipation.jsonl                  EK100-like: context frames before an event, verb/noun/action
    {split}/video_captions.jsonl, video_qa.jsonl, image_captions.jsonl, image_qa.jsonl   LLaVA conversations
    {split}/video_qa_cloze.jsonl                the multiple-choice video questions asked openly (`cloze_row`)
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from vjepa_vlm.data import synthetic_labels as labels
from vjepa_vlm.data.manifests import atomic_output_dir, write_jsonl
from vjepa_vlm.data.synthetic_motion import ANTICIPATION_VERBS, MOTION_CLASSES, MOTION_NAMES, MOTIONS_BY_NAME, event_window
from vjepa_vlm.data.synthetic_objects import CATEGORIES, COLORS, DIGITS, SHAPES
from vjepa_vlm.data.synthetic_scene import render, sample_scene
from vjepa_vlm.data.synthetic_splits import SPLIT_RULES, SPLITS, held_out_triples
from vjepa_vlm.data.video_io import write_video

GENERATOR_VERSION = 1
FRAMES_RANGE = (16, 64)
SIZE_RANGE = (64, 256)
MAX_OBJECTS = 3
# Frames an anticipation context must keep before its gap to the event.
MIN_CONTEXT_FRAMES = 2


@dataclass(frozen=True)
class WorldConfig:
    """Parameters of a synthetic world; validated on construction, before anything is written.

    Args:
        frames: frames per clip (16-64; the paper's clips are 16 frames, Table 5 / Sec. 2).
        size: frame side in pixels (64-256, even for H.264 yuv420p).
        fps: frame rate written into the mp4 (V-JEPA 2 samples SSv2/EK100 at a fixed fps; default 8).
        max_objects: objects per scene, 1-3 (distractors are added up to this number when they fit).
        motions: enabled motion class names (at least 2, see MOTION_NAMES).
        anticipation_s: gap between the end of an anticipation context and its event. EK100 uses 1 s
            (Sec. 6); our clips last 2 s, so the default is 0.5 s.
        compositional_fraction: share of test clips drawn from held-out (motion, category, color) triples.
        shared_event_motion: bounce, stop and push movers draw speed and direction from one distribution (see
            `synthetic_motion.sample_motion`), so in a bounce / stop / push world only what lies ahead of the mover
            tells the coming event. Off by default (the clips of earlier worlds).
    """

    frames: int = 16
    size: int = 64
    fps: float = 8.0
    max_objects: int = MAX_OBJECTS
    motions: tuple[str, ...] = MOTION_NAMES
    anticipation_s: float = 0.5
    compositional_fraction: float = 0.5
    shared_event_motion: bool = False

    def __post_init__(self):
        object.__setattr__(self, "motions", tuple(self.motions))
        validate_world_config(self)

    @property
    def anticipation_frames(self) -> int:
        return max(1, int(round(self.anticipation_s * self.fps)))


def validate_world_config(config: WorldConfig) -> None:
    """Raise ValueError naming the field and the accepted range for any impossible parameter."""
    if not isinstance(config.frames, int) or not FRAMES_RANGE[0] <= config.frames <= FRAMES_RANGE[1]:
        raise ValueError(f"frames must be an integer in {FRAMES_RANGE[0]}..{FRAMES_RANGE[1]}, got {config.frames!r}")
    if not isinstance(config.size, int) or not SIZE_RANGE[0] <= config.size <= SIZE_RANGE[1] or config.size % 2:
        raise ValueError(
            f"size must be an even integer in {SIZE_RANGE[0]}..{SIZE_RANGE[1]} (smaller frames cannot hold "
            f"{MAX_OBJECTS} recognizable objects; H.264 needs even sides), got {config.size!r}"
        )
    if not isinstance(config.fps, (int, float)) or not 0 < config.fps <= 120:
        raise ValueError(f"fps must be a number in (0, 120], got {config.fps!r}")
    if not isinstance(config.max_objects, int) or not 1 <= config.max_objects <= MAX_OBJECTS:
        raise ValueError(f"max_objects must be an integer in 1..{MAX_OBJECTS} (more do not fit a scene), got {config.max_objects!r}")
    unknown = [m for m in config.motions if m not in MOTIONS_BY_NAME]
    if unknown:
        raise ValueError(f"unknown motion name(s) {unknown}; expected names from {list(MOTION_NAMES)}")
    if len(set(config.motions)) < 2:
        raise ValueError(f"motions must name at least 2 distinct classes (questions offer alternatives), got {list(config.motions)}")
    crowded = [m for m in config.motions if MOTIONS_BY_NAME[m].num_objects > config.max_objects]
    if crowded:
        raise ValueError(f"motions {crowded} need 2 objects but max_objects={config.max_objects}")
    if not 0.0 <= config.compositional_fraction <= 1.0:
        raise ValueError(f"compositional_fraction must be in [0, 1], got {config.compositional_fraction!r}")
    if not config.anticipation_s > 0:
        raise ValueError(f"anticipation_s must be > 0, got {config.anticipation_s!r}")
    if any(MOTIONS_BY_NAME[m].event_verb for m in config.motions):
        earliest_event = event_window(config.frames)[0]
        if earliest_event - config.anticipation_frames < MIN_CONTEXT_FRAMES:
            raise ValueError(
                f"anticipation_s={config.anticipation_s} is {config.anticipation_frames} frames at fps={config.fps}, but events "
                f"can start at frame {earliest_event} of a {config.frames}-frame clip, leaving fewer than {MIN_CONTEXT_FRAMES} "
                "context frames: lower anticipation_s, or raise frames"
            )


@dataclass
class WorldSummary:
    """What `generate_world` wrote.

    Args:
        out_dir: the dataset root.
        num_clips: clips per split.
        num_video_qa: video QA rows per split.
        num_anticipation: anticipation rows per split.
        seconds: wall time of the whole generation.
    """

    out_dir: Path
    num_clips: dict[str, int] = field(default_factory=dict)
    num_video_qa: dict[str, int] = field(default_factory=dict)
    num_anticipation: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def clip_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """Independent stream per clip, so clips are identical whatever the worker count or order."""
    return np.random.default_rng([seed, SPLITS.index(split), index])


def _anticipation(scene, config: WorldConfig) -> dict | None:
    motion, event = scene.motion, scene.sample.event_frame
    if motion.event_verb is None or event is None:
        return None
    named = scene.labels[0 if motion.event_noun == "a" else 1]
    verb, noun = ANTICIPATION_VERBS.index(motion.event_verb), CATEGORIES.index(named.category)
    return {
        "context_end_frame": event - config.anticipation_frames,
        "event_frame": event,
        "anticipation_frames": config.anticipation_frames,
        "verb": verb,
        "noun": noun,
        "action": verb * len(CATEGORIES) + noun,
        "verb_name": motion.event_verb,
        "noun_name": named.category,
        "action_name": f"{motion.event_verb} {named.category}",
    }


def make_clip(config: WorldConfig, seed: int, split: str, index: int, root: Path | None) -> dict:
    """Sample, render and (when `root` is given) write one clip; returns its clips.jsonl record."""
    rng = clip_rng(seed, split, index)
    motion_name = config.motions[int(rng.integers(len(config.motions)))]
    compositional = split == "test" and rng.random() < config.compositional_fraction
    scene = sample_scene(motion_name, frames=config.frames, size=config.size, max_objects=config.max_objects, compositional=compositional, rng=rng,
                         shared_event_motion=config.shared_event_motion)
    frames = render(scene, config.frames, config.size, rng)
    clip_id = f"{index:06d}"
    video, image = f"videos/{split}/{clip_id}.mp4", f"images/{split}/{clip_id}.png"
    if root is not None:
        write_video(root / video, frames, config.fps)
        Image.fromarray(frames[config.frames // 2]).save(root / image, compress_level=1)
    objects = [
        {"shape": o.category, "color": o.color, "role": o.role, "moving": o.moving, "diameter": round(float(obj.diameter), 2)}
        for o, obj in zip(scene.labels, scene.objects)
    ]
    return {
        "id": clip_id,
        "split": split,
        "video": video,
        "image": image,
        "num_frames": config.frames,
        "fps": config.fps,
        "size": config.size,
        "motion_class": MOTION_NAMES.index(motion_name),
        "motion_label": scene.motion.label,
        "motion_name": motion_name,
        "appearance_label": CATEGORIES.index(scene.labels[0].category),
        "compositional": compositional,
        "objects": objects,
        "facts": scene.sample.facts,
        "caption": labels.video_caption(scene.motion, scene.labels, scene.sample.facts),
        "image_caption": labels.image_caption(scene.labels),
        "qa": labels.video_questions(scene.motion, scene.labels, scene.sample.facts, config.motions, rng),
        "image_qa": labels.image_questions(scene.labels, rng),
        "anticipation": _anticipation(scene, config),
    }


def _manifests(records: list[dict], split: str, seed: int) -> dict[str, list[dict]]:
    rng = np.random.default_rng([seed, SPLITS.index(split), 1 << 30])
    out: dict[str, list[dict]] = {name: [] for name in (
        "clips", "motion_classification", "appearance_classification", "image_classification", "anticipation",
        "video_captions", "video_qa", "video_qa_cloze", "image_captions", "image_qa")}
    for r in records:
        key = f"{split}-{r['id']}"
        out["clips"].append(r)
        out["motion_classification"].append({"video": r["video"], "label": r["motion_class"]})
        out["appearance_classification"].append({"video": r["video"], "label": r["appearance_label"]})
        out["image_classification"].append({"image": r["image"], "label": r["appearance_label"]})
        if r["anticipation"] is not None:
            out["anticipation"].append({"id": key, "video": r["video"], "num_frames": r["num_frames"], "fps": r["fps"], **r["anticipation"]})
        video_prompt = labels.VIDEO_CAPTION_PROMPTS[rng.integers(len(labels.VIDEO_CAPTION_PROMPTS))]
        image_prompt = labels.IMAGE_CAPTION_PROMPTS[rng.integers(len(labels.IMAGE_CAPTION_PROMPTS))]
        out["video_captions"].append(labels.conversation_row(key, "video", r["video"], video_prompt, r["caption"]))
        out["image_captions"].append(labels.conversation_row(key, "image", r["image"], image_prompt, r["image_caption"]))
        out["video_qa"] += [labels.qa_row(f"{key}-q{i}", "video", r["video"], q) for i, q in enumerate(r["qa"])]
        out["image_qa"] += [labels.qa_row(f"{key}-q{i}", "image", r["image"], q) for i, q in enumerate(r["image_qa"])]
    out["video_qa_cloze"] = [labels.cloze_row(row) for row in out["video_qa"] if row["format"] == "mc"]
    return out


def world_meta(config: WorldConfig, seed: int, n_train: int, n_test: int) -> dict:
    """Contents of meta.json: everything needed to interpret the integer labels."""
    return {
        "generator": "vjepa_vlm.data.synthetic_world",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "num_clips": {"train": n_train, "test": n_test},
        "config": asdict(config),
        "motion_classes": [
            {"index": MOTION_NAMES.index(m.name), "name": m.name, "label": m.label, "num_objects": m.num_objects}
            for m in MOTION_CLASSES
        ],
        "enabled_motions": list(config.motions),
        "categories": list(CATEGORIES),
        "shapes": list(SHAPES),
        "digits": list(DIGITS),
        "colors": {name: list(rgb) for name, rgb in COLORS.items()},
        "anticipation": {
            "verbs": list(ANTICIPATION_VERBS),
            "nouns": list(CATEGORIES),
            "actions": [f"{v} {n}" for v in ANTICIPATION_VERBS for n in CATEGORIES],
            "action_index": "verb * len(nouns) + noun",
            "anticipation_s": config.anticipation_s,
            "anticipation_frames": config.anticipation_frames,
            "context": "frames [0, context_end_frame) are the context; the event starts at event_frame = context_end_frame + anticipation_frames",
        },
        "question_types": list(labels.QUESTION_TYPES),
        "image_frame": "images are frame num_frames // 2 of their clip, before video compression",
        "split_rules": SPLIT_RULES,
        "held_out_triples": [list(t) for t in held_out_triples(config.motions)],
    }


def _make_clip_job(job: tuple) -> dict:
    return make_clip(*job)


def generate_world(
    out_dir: str | Path,
    *,
    n_train: int,
    n_test: int,
    seed: int,
    frames: int = 16,
    size: int = 64,
    fps: float = 8.0,
    max_objects: int = MAX_OBJECTS,
    motions: tuple[str, ...] | list[str] | None = None,
    anticipation_s: float = 0.5,
    compositional_fraction: float = 0.5,
    shared_event_motion: bool = False,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> WorldSummary:
    """Generate the train and test splits into `out_dir` atomically (temp dir + rename).

    Args:
        out_dir: dataset root; must not exist unless `overwrite` (then it is replaced as a whole).
        n_train, n_test: clips per split.
        seed: the only source of randomness; the same seed gives the same clips and labels.
        workers: processes rendering and encoding clips (at most 2 on the project machine).
        overwrite: replace an existing `out_dir` (else `OutputExistsError`).
        progress: show a progress bar over the clips on stderr (generation takes tens of seconds).
        other args: see WorldConfig.
    """
    started = time.perf_counter()
    config = WorldConfig(
        frames=frames, size=size, fps=fps, max_objects=max_objects, motions=MOTION_NAMES if motions is None else tuple(motions),
        anticipation_s=anticipation_s, compositional_fraction=compositional_fraction, shared_event_motion=shared_event_motion,
    )
    for name, value in (("n_train", n_train), ("n_test", n_test)):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if n_train + n_test < 1:
        raise ValueError("n_train + n_test must be at least 1")
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")

    summary = WorldSummary(Path(out_dir))
    with atomic_output_dir(out_dir, overwrite=overwrite) as root:
        for split in SPLITS:
            for kind in ("videos", "images"):
                (root / kind / split).mkdir(parents=True)
            (root / split).mkdir()
        jobs = [(config, seed, split, i, root) for split, n in (("train", n_train), ("test", n_test)) for i in range(n)]
        pool = multiprocessing.get_context().Pool(workers) if workers > 1 else None
        with pool or nullcontext():
            # imap keeps the job order, as map does, so the manifests do not depend on the worker count.
            chunksize = max(1, len(jobs) // (8 * workers))
            made = map(_make_clip_job, jobs) if pool is None else pool.imap(_make_clip_job, jobs, chunksize=chunksize)
            bar = tqdm(made, total=len(jobs), desc=f"world {Path(out_dir).name}", unit="clip", file=sys.stderr, disable=not progress)
            records = list(bar)
        for split in SPLITS:
            split_records = [r for r in records if r["split"] == split]
            for name, rows in _manifests(split_records, split, seed).items():
                write_jsonl(root / split / f"{name}.jsonl", rows)
            summary.num_clips[split] = len(split_records)
            summary.num_video_qa[split] = sum(len(r["qa"]) for r in split_records)
            summary.num_anticipation[split] = sum(r["anticipation"] is not None for r in split_records)
        with open(root / "meta.json", "w", encoding="utf-8") as handle:
            json.dump(world_meta(config, seed, n_train, n_test), handle, indent=1)
    summary.seconds = time.perf_counter() - started
    return summary
