"""Pretraining-data curation (appendix A.2): scene cuts, retrieval weights, resumable shards, and the whole
command on planted data under `accelerate launch` with 2 processes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from vjepa_vlm.data.curation import parse_target
from vjepa_vlm.data.curation_cluster import (
    cluster_weights,
    kmeans,
    nearest_cluster,
    retrieval_table,
)
from vjepa_vlm.data.curation_planted import (
    cut_scores,
    planted_scene,
    retention_scores,
    write_planted_pool,
)
from vjepa_vlm.data.curation_shards import collect_shards, run_shards, shard_path
from vjepa_vlm.data.manifests import read_jsonl
from vjepa_vlm.data.pretrain_dataset import DataArgs, PretrainMixture, SourceArgs
from vjepa_vlm.data.scene_split import SceneArgs, detect_cuts, split_scenes
from vjepa_vlm.data.video_io import write_video
from vjepa_vlm.scripts.benchmark_curation import write_targets
from vjepa_vlm.scripts.curate import auto_image_embedder, main

from vjepa_vlm import VJEPA2Config, VJEPA2Model

REPO = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)


def test_target_specs_parse_and_bad_weights_are_named():
    spec = parse_target("ssv2=data/ssv2:train.jsonl:0.125")
    assert (spec.name, spec.manifest, spec.weight) == ("ssv2", Path("data/ssv2:train.jsonl"), 0.125)
    with pytest.raises(ValueError, match="weight 'lots' is not a number"):
        parse_target("k710=k710.jsonl:lots")
    with pytest.raises(ValueError, match="expected name=manifest:weight"):
        parse_target("k710.jsonl")
    with pytest.raises(ValueError, match="> 0"):
        parse_target("k710=k710.jsonl:0")


def test_cluster_weights_are_the_papers_formula():
    # Target a: 4 videos in clusters 0,0,1,1; target b: 2 videos in cluster 1 and 3 -> w = 0.7*N_ac/4 + 0.3*N_bc/2.
    weights = cluster_weights({"a": np.array([0, 0, 1, 1]), "b": np.array([1, 3])}, {"a": 0.7, "b": 0.3}, 5)
    np.testing.assert_allclose(weights, [0.35, 0.35 + 0.15, 0, 0.15, 0])
    table = retrieval_table(np.array([0, 1, 1, 2, 3, 4, 4]), {"a": np.array([0, 1]), "b": np.array([1, 3])},
                            {"a": 0.7, "b": 0.3}, 5)
    assert [(r["target"], r["clusters"], r["scenes"]) for r in table] == [
        ("uncurated pool", 5, 7), ("a", 2, 3), ("b", 2, 3), ("curated (union)", 3, 4)]


def test_kmeans_finds_separated_groups_and_refuses_more_clusters_than_points():
    rng = np.random.default_rng(0)
    centres = np.eye(8, dtype=np.float32)[:3] * 10
    points = np.concatenate([c + rng.normal(0, 0.1, size=(30, 8)) for c in centres]).astype(np.float32)
    clusters = nearest_cluster(points, kmeans(points, 3, seed=0))
    assert all(len(set(clusters[i * 30 : (i + 1) * 30])) == 1 for i in range(3)) and len(set(clusters)) == 3
    with pytest.raises(ValueError, match="cannot make 91 clusters of 90 pool scenes"):
        kmeans(points, 91)


def test_scene_split_finds_the_cuts_and_drops_short_scenes_in_seconds(tmp_path):
    rng = np.random.default_rng(0)
    for fps in (4.0, 8.0):
        lengths = [int(5 * fps), int(2 * fps), int(5 * fps)]  # 5 s, 2 s, 5 s
        frames = np.concatenate([planted_scene(kind, n, 32, rng) for kind, n in zip(("world", "flat", "text"), lengths)])
        write_video(tmp_path / f"v{fps}.mp4", frames, fps)
        spans, num_frames, _ = detect_cuts(tmp_path / f"v{fps}.mp4")
        assert num_frames == sum(lengths)
        assert [span.start_frame for span in spans] == [0, lengths[0], lengths[0] + lengths[1]]
        kept = split_scenes(tmp_path / f"v{fps}.mp4", SceneArgs(min_scene_s=4.0))
        assert [(span.start, span.end) for span in kept] == [(0, 5), (7, 12)]
    assert SceneArgs(min_scene_s=-1).validate() and not SceneArgs().validate()


def test_cut_and_retention_scores_count_what_they_claim():
    truth = [{"video": "a.mp4", "fps": 1.0, "num_frames": 30,
              "scenes": [{"kind": "world", "start": 0, "end": 10}, {"kind": "noise", "start": 10, "end": 20},
                         {"kind": "world", "start": 20, "end": 30}]}]
    assert cut_scores(truth[0], [10, 15, 21]) == (2, 3, 2)
    pool = [{"video": "x/a.mp4", "start": s, "end": s + 10} for s in (0, 10, 20)]
    scores = retention_scores(truth, pool, [pool[0], pool[1]], lambda v: Path(v).name)
    assert (scores["on_target_kept"], scores["off_target_kept"], scores["curated_on_target_share"]) == (0.5, 1.0, 0.5)


def test_shards_split_across_processes_and_a_rerun_computes_only_what_is_missing(tmp_path):
    calls = []

    def work(items):
        calls.append(list(items))
        if items[0] == 6 and len(calls) == 2:
            raise RuntimeError("crash halfway")
        return np.asarray(items, dtype=np.float32)[:, None] * 2

    items = list(range(10))
    assert run_shards(items, work, tmp_path, shard_size=3, suffix=".npy", rank=1, world_size=2) == 4
    assert calls == [[3, 4, 5], [9]]
    calls.clear()
    with pytest.raises(RuntimeError, match="crash"):
        run_shards(items, work, tmp_path, shard_size=3, suffix=".npy", rank=0, world_size=2)
    assert not shard_path(tmp_path, 2, ".npy").exists() and not list(tmp_path.glob(".*tmp*"))
    with pytest.raises(FileNotFoundError, match="shard_000002.npy"):
        collect_shards(tmp_path, len(items), shard_size=3, suffix=".npy")
    calls.clear()
    assert run_shards(items, work, tmp_path, shard_size=3, suffix=".npy") == 3  # one process now: only shard 2 left
    assert calls == [[6, 7, 8]]
    np.testing.assert_array_equal(np.concatenate(collect_shards(tmp_path, 10, shard_size=3, suffix=".npy"))[:, 0],
                                  np.arange(10) * 2)


def test_any_autmodel_image_encoder_embeds_frames(tmp_path):
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       image_size=32, patch_size=8)).save_pretrained(tmp_path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    embed = auto_image_embedder(tmp_path, batch_size=2, device=torch.device("cpu"))
    frames = [np.full((40, 48, 3), v, dtype=np.uint8) for v in (0, 128, 255)]
    out = embed(frames)
    assert out.shape == (3, 32) and np.isfinite(out).all() and not np.allclose(out[0], out[2])


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("curation")
    truth = write_planted_pool(root / "pool", num_videos=6, scenes_per_video=6, seed=0)
    (root / "pool" / "broken.mp4").write_bytes(b"not a video")
    targets = write_targets(root / "targets", 40, seed=1)
    torch.manual_seed(0)
    VJEPA2Model(VJEPA2Config.from_preset("vjepa2-tiny", patch_size=8)).save_pretrained(root / "encoder")
    return root, truth, targets


def _args(root, targets, out, *extra):
    return ["--pool", str(root / "pool"), "--targets", f"world={targets}:1", "--encoder", str(root / "encoder"),
            "--out", str(out), "--shard-size", "8", *extra]


def test_bad_input_is_refused_before_the_long_work(planted, tmp_path, capsys):
    root, _, targets = planted
    unreadable = tmp_path / "t" / "train.jsonl"
    unreadable.parent.mkdir()
    unreadable.write_text('{"video": "missing.mp4"}\n')
    assert main(_args(root, unreadable, tmp_path / "a", "--clusters", "4")) == 2
    assert "none of the 1 videos" in capsys.readouterr().err
    assert main([*_args(root, targets, tmp_path / "b", "--clusters", "4")[:3], "world=x.jsonl:heavy", "--encoder",
                 str(root / "encoder"), "--out", str(tmp_path / "b"), "--clusters", "4"]) == 2
    assert "weight 'heavy' is not a number" in capsys.readouterr().err
    assert main(_args(root, targets, tmp_path / "c", "--clusters", "1000")) == 2
    assert "--clusters 1000 is more than the 36 pool scenes" in capsys.readouterr().err
    assert not (tmp_path / "c" / "work" / "embeddings").exists()


@pytest.mark.slow
def test_curation_on_planted_data_two_processes_then_resumed(planted, tmp_path):
    root, truth, targets = planted
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--multi_gpu",
              "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no"]
    result = subprocess.run([*launch, str(REPO / "scripts" / "curate.py"), *_args(root, targets, out, "--clusters", "6")],
                            check=False, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    report = json.loads((out / "report.json").read_text())
    total = report["pool_scenes"] + 40
    # Process 0 embedded the even shards only; the odd ones exist, so process 1 embedded them.
    assert report["embedded_this_run"] == sum(min(8, total - i * 8) for i in range(0, -(-total // 8), 2)) < total
    assert report["unreadable_pool_videos"] == 1 and "broken.mp4" in report["unreadable_pool_files"][0]
    assert [row["target"] for row in report["table"]] == ["uncurated pool", "world", "curated (union)"]

    detections = [row for shard in collect_shards(out / "work" / "scenes", 7, shard_size=8, suffix=".json") for row in shard]
    by_name = {row["video"]: row for row in truth}
    scores = np.sum([cut_scores(by_name[Path(row["video"]).name], [s for s, _ in row["scenes"][1:]])
                     for row in detections if "scenes" in row], axis=0)
    assert scores[0] / scores[1] >= 0.9 and scores[0] / scores[2] >= 0.9  # cut precision, recall
    curated = read_jsonl(out / "curated.jsonl")
    retention = retention_scores(truth, read_jsonl(out / "pool.jsonl"), curated, lambda video: Path(video).name)
    assert retention["on_target_kept"] >= 0.9 and retention["off_target_kept"] <= 0.1, retention
    assert sum(row["weight"] for row in curated) == pytest.approx(1.0)

    # One process resumes the two processes' work: nothing is recomputed but a deleted shard.
    before = (out / "curated.jsonl").read_text()
    (out / "work" / "embeddings" / "shard_000001.npy").unlink()
    assert main(_args(root, targets, out, "--clusters", "6"))["embedded_this_run"] == 8
    assert (out / "curated.jsonl").read_text() == before
    assert main(_args(root, targets, out, "--clusters", "6", "--min-scene-s", "3")) == 2  # other settings: refused

    # Pretraining reads the curated scenes with their weights.
    dataset = PretrainMixture(DataArgs(sources=[SourceArgs(str(out / "curated.jsonl"))], num_frames=4, crop_size=32))
    assert dataset[0]["pixel_values"].shape == (4, 3, 32, 32) and dataset[0]["skipped_files"] == 0
