"""Pretraining-data curation by cluster retrieval (section 2.3, appendix A.2, Table 11).

A pool of raw videos -> scenes (PySceneDetect, scenes under 4 s dropped; `scene_split`) -> one embedding per
scene's middle frame -> spherical k-means over the pool -> every target video (embedded the same way) assigned
to its nearest cluster -> clusters that received a target are kept and sampled with
w_c = sum_d w_d * N_{d,c} / N_d (`curation_cluster`).

`curate` writes into `out_dir`:

    curated.jsonl   retained scenes: {"video", "start", "end" (seconds), "cluster", "weight"}; a scene's weight is
                    w_c divided among the scenes of its cluster, so clusters are drawn with probability w_c
                    (pretraining's `data.sources` reads "weight" per row)
    pool.jsonl      every scene of the pool with its cluster, unweighted: the uncurated baseline
    report.json, report.md   Table 11 (clusters, scenes, retrieval weight per target), unreadable files, timings
    centroids.npy   the k-means centroids
    work/           resumable state: scene detection and embedding shards (`curation_shards`), settings.json

Video paths in the manifests are relative to `out_dir`. The embedder is a function of uint8 frames, so this
module needs no model; `scripts/curate.py` supplies our V-JEPA 2 encoder or any `AutoModel` image encoder.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from vjepa_vlm.data.curation_cluster import (
    cluster_weights,
    kmeans,
    nearest_cluster,
    retrieval_table,
)
from vjepa_vlm.data.curation_shards import collect_shards, run_shards
from vjepa_vlm.data.manifests import dataset_root, read_jsonl, write_jsonl
from vjepa_vlm.data.scene_split import SceneArgs, SceneSpan, detect_cuts
from vjepa_vlm.data.video_io import VideoDecodeError, read_video, video_info

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")
# (N, H, W, 3) uint8 frames, possibly of different sizes, as a list -> (N, D) embeddings.
EmbedFn = Callable[[list[np.ndarray]], np.ndarray]


@dataclass(frozen=True)
class TargetSpec:
    """One target dataset: its name, a JSONL manifest of "video" rows and its retrieval weight w_d."""

    name: str
    manifest: Path
    weight: float


def parse_target(text: str) -> TargetSpec:
    """`name=manifest:weight` (e.g. `ssv2=ssv2/train.jsonl:0.125`) -> TargetSpec; errors say what was expected."""
    name, sep, rest = text.partition("=")
    manifest, colon, weight = rest.rpartition(":")
    if not sep or not name or not colon or not manifest:
        raise ValueError(f"target {text!r}: expected name=manifest:weight, e.g. k710=k710/train.jsonl:0.7")
    try:
        value = float(weight)
    except ValueError:
        raise ValueError(f"target {text!r}: weight {weight!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"target {text!r}: weight must be a finite number > 0, got {weight}")
    return TargetSpec(name, Path(manifest), value)


@dataclass
class CurationArgs:
    """Curation settings.

    Args:
        clusters: k-means clusters over the pool (the paper: 1.5M for 316M scenes, about 200 scenes per cluster).
        scenes: scene detection (`SceneArgs`: 4 s minimum scene length, appendix A.2).
        iterations: k-means iterations.
        seed: k-means seed.
        shard_size: videos per detection shard and frames per embedding shard (the unit of resumption).
    """

    clusters: int = 100
    scenes: SceneArgs = field(default_factory=SceneArgs)
    iterations: int = 20
    seed: int = 0
    shard_size: int = 64

    def validate(self) -> list[str]:
        errors = [f"scenes: {error}" for error in self.scenes.validate()]
        if self.clusters < 1:
            errors.append(f"clusters must be >= 1, got {self.clusters}")
        if self.iterations < 1 or self.shard_size < 1:
            errors.append(f"iterations and shard_size must be >= 1, got {self.iterations} and {self.shard_size}")
        return errors


def resolve_media(manifest: Path, relative: str) -> Path:
    """A manifest's media path: relative to the manifest's folder, or else to the dataset root of the
    `root/{split}/name.jsonl` layout (`manifests.dataset_root`, the synthetic world's)."""
    path = Path(relative)
    if path.is_absolute():
        return path
    beside = manifest.parent / path
    if beside.exists():
        return beside
    under_root = dataset_root(manifest) / path
    return under_root if under_root.exists() else beside


def manifest_videos(manifest: Path) -> list[Path]:
    videos = []
    for number, row in enumerate(read_jsonl(manifest), start=1):
        if not isinstance(row.get("video"), str):
            # A bad row is bad input like any other: the command reports ValueErrors as clean errors.
            raise ValueError(f"{manifest}: row {number} needs a 'video' path, got keys {sorted(row)}")  # noqa: TRY004
        videos.append(resolve_media(manifest, row["video"]))
    if not videos:
        raise ValueError(f"{manifest} has no rows")
    return videos


def list_pool(pool: str | Path) -> list[Path]:
    """Videos of the pool: every file with a video suffix under a folder, or the "video" rows of a manifest."""
    pool = Path(pool)
    if pool.is_dir():
        videos = sorted(path for path in pool.rglob("*") if path.suffix.lower() in VIDEO_SUFFIXES and path.is_file())
        if not videos:
            raise ValueError(f"pool folder {pool} holds no video files ({', '.join(VIDEO_SUFFIXES)})")
        return videos
    if pool.is_file():
        return manifest_videos(pool)
    raise FileNotFoundError(f"pool {pool} is neither a folder of videos nor a JSONL manifest")


def readable_target_videos(spec: TargetSpec) -> tuple[list[tuple[Path, int]], list[str]]:
    """(video, frame count) of every readable video of a target and the unreadable ones; none readable is an error."""
    readable, unreadable = [], []
    for video in manifest_videos(spec.manifest):
        try:
            readable.append((video, video_info(video).num_frames))
        except VideoDecodeError as error:
            unreadable.append(f"{video}: {error}")
    if not readable:
        raise ValueError(f"target {spec.name!r}: none of the {len(unreadable)} videos of {spec.manifest} is readable "
                         f"(first: {unreadable[0]})")
    return readable, unreadable


def _detect_shard(args: SceneArgs) -> Callable[[Sequence[str]], list[dict]]:
    def work(videos: Sequence[str]) -> list[dict]:
        rows = []
        for video in videos:
            try:
                spans, num_frames, fps = detect_cuts(video, args)
            except VideoDecodeError as error:
                rows.append({"video": video, "error": str(error)})
                continue
            rows.append({"video": video, "num_frames": num_frames, "fps": fps,
                         "scenes": [[span.start_frame, span.end_frame] for span in spans]})
        return rows

    return work


def _embed_shard(embed: EmbedFn) -> Callable[[Sequence[tuple[str, int]]], np.ndarray]:
    def work(items: Sequence[tuple[str, int]]) -> np.ndarray:
        by_video: dict[str, list[int]] = defaultdict(list)
        for video, frame in items:
            by_video[video].append(frame)
        # One decoding pass per video for all of its frames in the shard.
        frames = {}
        for video, indices in by_video.items():
            wanted = sorted(set(indices))
            frames.update({(video, i): frame for i, frame in zip(wanted, read_video(video, wanted))})
        return np.asarray(embed([frames[(video, frame)] for video, frame in items]), dtype=np.float32)

    return work


def _check_settings(work_dir: Path, settings: dict, rank: int) -> None:
    """Refuse to resume work made with other settings: its shards would silently mix two curations."""
    path = work_dir / "settings.json"
    if path.is_file():
        previous = json.loads(path.read_text())
        if previous != settings:
            changed = sorted(key for key in settings.keys() | previous.keys() if settings.get(key) != previous.get(key))
            raise ValueError(f"{work_dir} holds work made with other settings ({', '.join(changed)} differ); "
                             f"choose another --out, or delete {work_dir} to start over")
    elif rank == 0:
        work_dir.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".settings.json.tmp-{os.getpid()}")
        temporary.write_text(json.dumps(settings, indent=1))
        os.replace(temporary, path)


def _relative(video: str, out_dir: Path) -> str:
    return os.path.relpath(Path(video).resolve(), out_dir.resolve())


def _table_markdown(rows: list[dict]) -> str:
    lines = ["| retrieval target | clusters | scenes | retrieval weight |", "| --- | ---: | ---: | ---: |"]
    for row in rows:
        weight = "" if row["weight"] is None else f"{row['weight']:g}"
        lines.append(f"| {row['target']} | {row['clusters']} | {row['scenes']} | {weight} |")
    return "\n".join(lines) + "\n"


def curate(
    pool: str | Path,
    targets: Sequence[TargetSpec],
    out_dir: str | Path,
    embed: EmbedFn,
    *,
    embedder_id: str,
    args: CurationArgs | None = None,
    rank: int = 0,
    world_size: int = 1,
    barrier: Callable[[], None] = lambda: None,
) -> dict | None:
    """Curate `pool` towards `targets` into `out_dir` (layout in the module docstring); returns the report on
    process 0 and None elsewhere. Rerunning with the same settings resumes from the finished shards.

    Args:
        pool: folder of videos or JSONL manifest of "video" rows.
        targets: target datasets with their retrieval weights.
        out_dir: output folder (created).
        embed: uint8 frames -> (N, D) embeddings; the same function embeds pool scenes and target videos.
        embedder_id: names the embedder in the settings, so resuming with another encoder is refused.
        args: scene detection, k-means and sharding settings (default: `CurationArgs()`).
        rank, world_size, barrier: this process, the process count and a function that waits for all of them
            (`accelerate`'s `wait_for_everyone`); the defaults run alone.
    """
    args = args or CurationArgs()
    errors = args.validate()
    names = [spec.name for spec in targets]
    if not targets:
        errors.append("give at least one target (name=manifest:weight)")
    if len(set(names)) != len(names):
        errors.append(f"target names must be unique, got {names}")
    if errors:
        raise ValueError("curation settings: " + "; ".join(errors))
    out_dir, timings = Path(out_dir), {}
    work_dir = out_dir / "work"
    pool_videos = [str(video) for video in list_pool(pool)]
    checked = {spec.name: readable_target_videos(spec) for spec in targets}
    # The shard size is part of the settings: shard files of another size would be read as the wrong items.
    settings = {"pool": pool_videos, "embedder": embedder_id, "scenes": asdict(args.scenes),
                "shard_size": args.shard_size,
                "targets": {name: [str(video) for video, _ in readable] for name, (readable, _) in checked.items()}}
    _check_settings(work_dir, settings, rank)

    started = time.perf_counter()
    run_shards(pool_videos, _detect_shard(args.scenes), work_dir / "scenes", shard_size=args.shard_size,
               suffix=".json", rank=rank, world_size=world_size, desc="scene detection")
    barrier()
    timings["scene_detection_s"] = time.perf_counter() - started
    detections = [row for shard in collect_shards(work_dir / "scenes", len(pool_videos), shard_size=args.shard_size,
                                                  suffix=".json") for row in shard]
    unreadable = [row for row in detections if "error" in row]
    scenes, too_short = [], 0
    for row in detections:
        for start, end in row.get("scenes", []):
            span = SceneSpan(start, end, row["fps"])
            if span.end - span.start >= args.scenes.min_scene_s:
                scenes.append((row["video"], span))
            else:
                too_short += 1
    if args.clusters > len(scenes):
        raise ValueError(f"--clusters {args.clusters} is more than the {len(scenes)} pool scenes of at least "
                         f"{args.scenes.min_scene_s:g} s; use at most {len(scenes)}")

    items = [(video, span.middle_frame) for video, span in scenes]
    items += [(str(video), num_frames // 2) for readable, _ in checked.values() for video, num_frames in readable]
    started = time.perf_counter()
    computed = run_shards(items, _embed_shard(embed), work_dir / "embeddings", shard_size=args.shard_size,
                          suffix=".npy", rank=rank, world_size=world_size, desc="embedding")
    barrier()
    timings["embedding_s"] = time.perf_counter() - started
    if rank != 0:
        return None
    embeddings = np.concatenate(collect_shards(work_dir / "embeddings", len(items), shard_size=args.shard_size,
                                               suffix=".npy"))
    pool_embeddings, offset, target_embeddings = embeddings[: len(scenes)], len(scenes), {}
    for name, (readable, _) in checked.items():
        target_embeddings[name] = embeddings[offset : offset + len(readable)]
        offset += len(readable)

    started = time.perf_counter()
    centroids = kmeans(pool_embeddings, args.clusters, iterations=args.iterations, seed=args.seed)
    timings["kmeans_s"] = time.perf_counter() - started
    pool_clusters = nearest_cluster(pool_embeddings, centroids)
    target_clusters = {name: nearest_cluster(values, centroids) for name, values in target_embeddings.items()}
    weights_by_target = {spec.name: spec.weight for spec in targets}
    weights = cluster_weights(target_clusters, weights_by_target, args.clusters)
    weights /= weights.sum()
    scenes_per_cluster = np.bincount(pool_clusters, minlength=args.clusters)

    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [{"video": _relative(video, out_dir), "start": round(span.start, 4), "end": round(span.end, 4),
             "cluster": int(cluster)} for (video, span), cluster in zip(scenes, pool_clusters)]
    curated = [{**row, "weight": float(weights[row["cluster"]] / scenes_per_cluster[row["cluster"]])}
               for row in rows if weights[row["cluster"]] > 0]
    write_jsonl(out_dir / "pool.jsonl", rows)
    write_jsonl(out_dir / "curated.jsonl", curated)
    np.save(out_dir / "centroids.npy", centroids)
    table = retrieval_table(pool_clusters, target_clusters, weights_by_target, args.clusters)
    report = {
        "table": table,
        "pool_videos": len(pool_videos),
        "unreadable_pool_videos": len(unreadable),
        "unreadable_pool_files": [row["error"] for row in unreadable],
        "scenes_detected": len(scenes) + too_short,
        "scenes_shorter_than_min": too_short,
        "pool_scenes": len(scenes),
        "curated_scenes": len(curated),
        "targets": {name: {"manifest": str(spec.manifest), "videos": len(checked[name][0]),
                           "unreadable": checked[name][1], "weight": spec.weight}
                    for name, spec in zip(names, targets)},
        "embedder": embedder_id,
        "args": asdict(args),
        "timings": {key: round(value, 3) for key, value in timings.items()},
        # Frames this process embedded in this run (resumed shards excluded): with `embedding_s`, its throughput.
        "embedded_this_run": computed,
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=1))
    (out_dir / "report.md").write_text(
        f"# Curation report (Table 11 shape)\n\n{_table_markdown(table)}\n"
        f"Pool: {len(pool_videos)} videos ({len(unreadable)} unreadable, skipped), {report['scenes_detected']} scenes "
        f"detected, {too_short} shorter than {args.scenes.min_scene_s:g} s dropped; {len(curated)} scenes kept.\n")
    return report
