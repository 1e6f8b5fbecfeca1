"""Curation on planted data, and its speed: cut precision/recall, on- and off-target scenes kept, scenes embedded
per second, k-means time.

    python scripts/benchmark_curation.py --out runs/curation_bench            # writes runs/curation_bench/results.json

The pool is long videos of concatenated scenes with known cuts (`data/curation_planted.py`): synthetic-world
scenes (on target) and noise, flat colours, scrolling text and line figures (off target). The targets are
synthetic-world clips drawn with another seed. Without --encoder the embedder is a randomly initialized tiny
V-JEPA 2 encoder (seeded), so the result does not depend on a pretraining run. Rerunning reuses the planted data
and the curation's finished shards (the embedding rate is then that of the first run, kept in the report).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from vjepa_vlm.data.curation import CurationArgs, TargetSpec, curate
from vjepa_vlm.data.curation_cluster import kmeans
from vjepa_vlm.data.curation_planted import (
    cut_scores,
    retention_scores,
    write_planted_pool,
)
from vjepa_vlm.data.curation_shards import collect_shards
from vjepa_vlm.data.manifests import read_jsonl, write_jsonl
from vjepa_vlm.data.scene_split import SceneArgs
from vjepa_vlm.data.synthetic_world import WorldConfig, make_clip
from vjepa_vlm.scripts.curate import vjepa2_embedder

from vjepa_vlm import VJEPA2Config, VJEPA2Model


def write_targets(root: Path, count: int, seed: int) -> Path:
    """`count` synthetic-world training clips under `root` and their manifest `root/train/world.jsonl`."""
    manifest = root / "train" / "world.jsonl"
    if manifest.is_file():
        return manifest
    for folder in ("videos/train", "images/train", "train"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    write_jsonl(manifest, ({"video": make_clip(WorldConfig(), seed, "train", i, root)["video"]} for i in range(count)))
    return manifest


def kmeans_seconds(points: int, dim: int, clusters: int, seed: int) -> float:
    """Seconds of 20 faiss k-means iterations over `points` random `dim`-dimensional embeddings."""
    rng = np.random.default_rng(seed)
    # Points around `clusters` random centres, so k-means has structure to find, like real scene embeddings.
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    data = centres[rng.integers(clusters, size=points)] + 0.5 * rng.normal(size=(points, dim)).astype(np.float32)
    started = time.perf_counter()
    kmeans(data, clusters, iterations=20, seed=seed)
    return time.perf_counter() - started


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/curation_bench"))
    parser.add_argument("--videos", type=int, default=24, help="planted pool videos")
    parser.add_argument("--scenes-per-video", type=int, default=8)
    parser.add_argument("--on-target-fraction", type=float, default=0.4)
    parser.add_argument("--targets", type=int, default=200, help="synthetic-world target clips")
    parser.add_argument("--clusters", type=int, default=24)
    parser.add_argument("--encoder", type=Path, default=None, help="VJEPA2Model folder (default: random tiny, seeded)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kmeans-points", type=int, default=100_000)
    parser.add_argument("--kmeans-clusters", type=int, default=500, help="about 200 points per cluster, as in the paper")
    parser.add_argument("--kmeans-dims", type=int, nargs="*", default=[96, 1024], help="tiny and ViT-L widths")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    pool_dir = args.out / "pool"
    if not (pool_dir / "truth.jsonl").is_file():
        write_planted_pool(pool_dir, num_videos=args.videos, scenes_per_video=args.scenes_per_video,
                           on_target_fraction=args.on_target_fraction, seed=args.seed)
    truth = read_jsonl(pool_dir / "truth.jsonl")
    manifest = write_targets(args.out / "targets", args.targets, seed=args.seed + 1)
    encoder = args.encoder
    if encoder is None:
        encoder = args.out / "random_tiny_encoder"
        if not (encoder / "config.json").is_file():
            torch.manual_seed(args.seed)
            VJEPA2Model(VJEPA2Config.from_preset("vjepa2-tiny", patch_size=8)).save_pretrained(encoder)
    curation_dir = args.out / "curated"
    curation = CurationArgs(clusters=args.clusters, seed=args.seed, shard_size=32, scenes=SceneArgs())
    report = curate(pool_dir, [TargetSpec("world", manifest, 1.0)], curation_dir,
                    vjepa2_embedder(encoder, None, 32, torch.device("cpu")), embedder_id=f"vjepa2:{encoder}",
                    args=curation)
    first_rates = args.out / "embedding_rate.json"
    if report["embedded_this_run"]:
        first_rates.write_text(json.dumps({"frames": report["embedded_this_run"], "seconds": report["timings"]["embedding_s"],
                                           "scene_detection_s": report["timings"]["scene_detection_s"]}))
    rate = json.loads(first_rates.read_text())

    detections = [row for shard in collect_shards(curation_dir / "work" / "scenes", len(truth), shard_size=32, suffix=".json")
                  for row in shard]
    by_name = {row["video"]: row for row in truth}
    hits = detected = planted = 0
    for row in detections:
        scores = cut_scores(by_name[Path(row["video"]).name], [start for start, _ in row["scenes"][1:]])
        hits, detected, planted = hits + scores[0], detected + scores[1], planted + scores[2]
    retention = retention_scores(truth, read_jsonl(curation_dir / "pool.jsonl"), read_jsonl(curation_dir / "curated.jsonl"),
                                 lambda video: Path(video).name)
    pool_seconds = sum(row["num_frames"] / row["fps"] for row in truth)
    results = {
        "pool_videos": len(truth),
        "pool_minutes": round(pool_seconds / 60, 2),
        "cut_precision": round(hits / max(detected, 1), 4),
        "cut_recall": round(hits / max(planted, 1), 4),
        **{key: round(value, 4) if isinstance(value, float) else value for key, value in retention.items()},
        "table": report["table"],
        "scene_detection_video_seconds_per_second": round(pool_seconds / rate["scene_detection_s"], 1),
        "frames_embedded_per_second": round(rate["frames"] / rate["seconds"], 1),
        "kmeans_seconds": {f"{args.kmeans_points} x {dim}, k={args.kmeans_clusters}":
                           round(kmeans_seconds(args.kmeans_points, dim, args.kmeans_clusters, args.seed), 2)
                           for dim in args.kmeans_dims},
        "torch_threads": torch.get_num_threads(),
        "encoder": str(encoder),
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
    sys.exit(0)
