import fcntl
import json
import os
import runpy
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from vjepa_vlm.data import synthetic_world
from vjepa_vlm.data.manifests import load_manifest_as_dataset, read_jsonl
from vjepa_vlm.data.synthetic_labels import OPEN_INSTRUCTION, cloze_row
from vjepa_vlm.data.synthetic_objects import COLORS
from vjepa_vlm.data.synthetic_scene import render, sample_scene
from vjepa_vlm.data.synthetic_splits import is_held_out
from vjepa_vlm.data.synthetic_world import WorldConfig, generate_world, make_clip
from vjepa_vlm.data.video_io import read_video, video_info

MANIFESTS = (
    "clips", "motion_classification", "appearance_classification", "image_classification", "anticipation",
    "video_captions", "video_qa", "video_qa_cloze", "image_captions", "image_qa",
)
EVENT_MOTIONS = ("bounce", "push", "collide", "start")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("worlds") / "world"
    summary = generate_world(out, n_train=8, n_test=6, seed=3, motions=("move_left", "move_right", *EVENT_MOTIONS))
    return out, summary


def test_layout_and_manifests_point_at_real_files(world):
    out, summary = world
    assert summary.num_clips == {"train": 8, "test": 6}
    for split in ("train", "test"):
        for name in MANIFESTS:
            rows = read_jsonl(out / split / f"{name}.jsonl")
            for row in rows:
                for key in ("video", "image"):
                    if key in row:
                        assert not Path(row[key]).is_absolute() and (out / row[key]).is_file()
        assert len(read_jsonl(out / split / "video_qa.jsonl")) == summary.num_video_qa[split]
    clip = read_jsonl(out / "train" / "clips.jsonl")[0]
    info = video_info(out / clip["video"])
    assert (info.num_frames, info.height, info.width, info.fps) == (16, 64, 64, 8.0)
    assert read_video(out / clip["video"], [0, 15]).shape == (2, 64, 64, 3)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["seed"] == 3 and len(meta["motion_classes"]) >= 20 and "held out" in meta["split_rules"]
    assert meta["motion_classes"][clip["motion_class"]]["label"] == clip["motion_label"]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def test_every_multiple_choice_question_has_its_cloze_twin(world):
    out, _ = world
    for split in ("train", "test"):
        mc = [r for r in read_jsonl(out / split / "video_qa.jsonl") if r["format"] == "mc"]
        cloze = read_jsonl(out / split / "video_qa_cloze.jsonl")
        assert mc and [c["id"] for c in cloze] == [f"{r['id']}-cloze" for r in mc]
        for row, twin in zip(mc, cloze):
            human, gpt = twin["conversations"]
            assert human["value"] == f"<video>\n{row['question']}\n{OPEN_INSTRUCTION}" and gpt["value"] == row["answer"]
            assert twin["candidates"] == row["options"] and twin["video"] == row["video"]
            assert (twin["format"], twin["question_type"], twin["template"]) == ("cloze", row["question_type"], row["template"])
            assert not any(option in human["value"] for option in row["options"] if option not in row["question"])
    with pytest.raises(ValueError, match="expected 'mc'"):
        cloze_row({**mc[0], "format": "open"})


def test_conversation_rows_follow_the_llava_format(world):
    out, _ = world
    for row in read_jsonl(out / "test" / "video_qa.jsonl"):
        human, gpt = row["conversations"]
        assert human["from"] == "human" and human["value"].startswith("<video>\n") and gpt["from"] == "gpt"
        assert row["question_type"] in {"motion", "appearance", "counting"}
        if row["format"] == "mc":
            assert 2 <= len(row["options"]) <= 5 and gpt["value"] == row["answer_letter"]
            assert row["options"]["ABCDE".index(row["answer_letter"])] == row["answer"]
            assert f"{row['answer_letter']}. {row['answer']}" in human["value"]
        else:
            assert gpt["value"] == row["answer"] and row["answer"] in row["candidates"]
    for row in read_jsonl(out / "test" / "image_captions.jsonl"):
        assert row["conversations"][0]["value"].startswith("<image>\n") and "video" not in row


def test_anticipation_context_ends_before_the_event(world):
    out, _ = world
    meta = json.loads((out / "meta.json").read_text())["anticipation"]
    rows = read_jsonl(out / "train" / "anticipation.jsonl") + read_jsonl(out / "test" / "anticipation.jsonl")
    assert rows
    for row in rows:
        assert row["context_end_frame"] >= synthetic_world.MIN_CONTEXT_FRAMES
        assert row["context_end_frame"] + row["anticipation_frames"] == row["event_frame"] < row["num_frames"]
        assert meta["actions"][row["action"]] == row["action_name"] == f"{meta['verbs'][row['verb']]} {meta['nouns'][row['noun']]}"


def test_compositional_split_holds_triples_out_of_train(world):
    out, _ = world
    for split in ("train", "test"):
        for clip in read_jsonl(out / split / "clips.jsonl"):
            main = clip["objects"][0]
            assert is_held_out(clip["motion_name"], main["shape"], main["color"]) == clip["compositional"]
            assert split == "test" or not clip["compositional"]
    config = WorldConfig(compositional_fraction=1.0)
    assert all(make_clip(config, 0, "test", i, None)["compositional"] for i in range(5))


def test_generation_is_deterministic_and_worker_count_independent(world, tmp_path):
    out, _ = world
    again = generate_world(tmp_path / "again", n_train=8, n_test=6, seed=3, workers=2, motions=("move_left", "move_right", *EVENT_MOTIONS))
    for name in MANIFESTS:
        assert read_jsonl(out / "test" / f"{name}.jsonl") == read_jsonl(again.out_dir / "test" / f"{name}.jsonl")
    other = make_clip(WorldConfig(), 4, "train", 0, None)
    assert other != make_clip(WorldConfig(), 3, "train", 0, None)


def test_a_larger_test_split_starts_with_the_smaller_ones_clips(world, tmp_path):
    # scripts/vlm_pipeline.py --world_test 512 relies on it: the default world's held-out questions stay a prefix.
    out, _ = world
    larger = generate_world(tmp_path / "larger", n_train=2, n_test=9, seed=3, motions=("move_left", "move_right", *EVENT_MOTIONS))
    small, big = read_jsonl(out / "test" / "video_qa.jsonl"), read_jsonl(larger.out_dir / "test" / "video_qa.jsonl")
    assert big[: len(small)] == small and len(big) > len(small)
    clip = "videos/test/000005.mp4"
    assert (out / clip).read_bytes() == (larger.out_dir / clip).read_bytes()


def test_single_frame_images_and_datasets_view(world):
    out, _ = world
    dataset = load_manifest_as_dataset(out / "test" / "video_qa.jsonl", absolute_paths=True)
    assert len(dataset) == 24 and Path(dataset[0]["video"]).is_file()
    assert {"options", "candidates", "answer_letter"} <= set(dataset.column_names)
    assert any(row is None for row in dataset["options"])
    images = load_manifest_as_dataset(out / "train" / "image_classification.jsonl")
    assert images.column_names == ["image", "label"] and len(images) == 8


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"size": 32}, "size must be an even integer in 64..256"),
        ({"size": 65}, "size must be an even integer"),
        ({"frames": 8}, "frames must be an integer in 16..64"),
        ({"frames": 100}, "frames must be an integer in 16..64"),
        ({"max_objects": 4}, "max_objects must be an integer in 1..3"),
        ({"motions": ("move_left", "teleport")}, "unknown motion name.*teleport"),
        ({"motions": ("move_left",)}, "at least 2"),
        ({"max_objects": 1, "motions": ("move_left", "push")}, "push.*need 2 objects"),
        ({"anticipation_s": 2.0}, "anticipation_s=2.0"),
        ({"fps": -1.0}, "fps must be"),
        ({"n_train": -1}, "n_train must be"),
    ],
)
def test_impossible_parameters_fail_before_writing(tmp_path, kwargs, message):
    arguments = {"n_train": 2, "n_test": 1, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        generate_world(tmp_path / "world", **arguments)
    assert not any(tmp_path.iterdir())


def test_existing_output_is_never_half_overwritten(tmp_path, monkeypatch):
    out = tmp_path / "world"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        generate_world(out, n_train=2, n_test=1, seed=0)
    calls = []

    def failing_write(path, frames, fps):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")

    monkeypatch.setattr(synthetic_world, "write_video", failing_write)
    with pytest.raises(OSError, match="disk full"):
        generate_world(out, n_train=2, n_test=1, seed=0, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["world"] and (out / "keep.txt").read_text() == "old"
    monkeypatch.undo()
    generate_world(out, n_train=2, n_test=1, seed=0, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "meta.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["world"]


def test_cli_writes_a_world_and_reports_bad_input(tmp_path, capsys):
    script = Path(__file__).resolve().parents[1] / "scripts" / "make_synthetic_data.py"
    main = runpy.run_path(str(script), run_name="make_synthetic_data")["main"]
    assert main(["--out", str(tmp_path / "w"), "--train", "2", "--test", "1", "--seed", "1"]) == 0
    assert len(read_jsonl(tmp_path / "w" / "train" / "clips.jsonl")) == 2
    assert "3/3" in capsys.readouterr().err  # the progress bar
    assert main(["--out", str(tmp_path / "x"), "--train", "2", "--test", "1", "--seed", "1", "--size", "16"]) == 2
    assert "size must be" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert main(["--out", str(tmp_path / "w"), "--train", "2", "--test", "1", "--seed", "1"]) == 2
    error = capsys.readouterr().err
    assert "already exists; pass --overwrite to replace it" in error and "overwrite=True" not in error


def test_output_folders_follow_the_umask(tmp_path):
    previous = os.umask(0o027)
    try:
        generate_world(tmp_path / "world", n_train=1, n_test=1, seed=0, progress=False)
    finally:
        os.umask(previous)
    modes = {stat.S_IMODE(p.stat().st_mode) for p in [tmp_path / "world", *(tmp_path / "world").rglob("*")] if p.is_dir()}
    assert modes == {0o750}


def test_stale_staging_folders_are_removed_and_live_ones_kept(tmp_path):
    dead, retired, live = (tmp_path / name for name in (".world.tmp-dead", ".world.old-1234", ".world.tmp-live"))
    for folder in (dead, retired, live, tmp_path / ".other.tmp-x"):
        folder.mkdir()
        (folder / "clip.mp4").write_bytes(b"partial")
    descriptor = os.open(live, os.O_RDONLY)
    fcntl.flock(descriptor, fcntl.LOCK_EX)  # as a writer still running holds it
    try:
        generate_world(tmp_path / "world", n_train=1, n_test=1, seed=0, progress=False)
    finally:
        os.close(descriptor)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tmp-x", ".world.tmp-live", "world"]


def _start_generation(out: Path) -> subprocess.Popen:
    code = (
        "import sys; from vjepa_vlm.data.synthetic_world import generate_world; "
        "generate_world(sys.argv[1], n_train=400, n_test=0, seed=0, progress=False)"
    )
    earlier = set(out.parent.glob(f".{out.name}.tmp-*"))
    process = subprocess.Popen([sys.executable, "-c", code, str(out)], env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    # Wait until this run writes clips, i.e. its own staging folder exists and holds a video.
    while not [p for p in out.parent.glob(f".{out.name}.tmp-*") if p not in earlier and list(p.glob("videos/train/*.mp4"))]:
        assert process.poll() is None and time.monotonic() < deadline, "generation never started"
        time.sleep(0.2)
    return process


@pytest.mark.slow
def test_killed_generation_leaves_no_staging_folder_behind(tmp_path):
    out = tmp_path / "world"
    killed = _start_generation(out)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=60)
    assert [p.name.split("-")[0] for p in tmp_path.iterdir()] == [".world.tmp"]  # nothing can clean up after SIGKILL
    terminated = _start_generation(out)  # the next run removes the killed run's leftovers first
    terminated.send_signal(signal.SIGTERM)
    assert terminated.wait(timeout=60) == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []


def test_rendered_clip_shows_the_main_object_moving_right():
    rng = np.random.default_rng(0)
    scene = sample_scene("move_right", frames=16, size=64, max_objects=1, compositional=False, rng=rng)
    frames = render(scene, 16, 64, rng).astype(float)
    color = np.array(COLORS[scene.labels[0].color], dtype=float)
    distance = np.abs(frames - color).sum(-1)
    columns = [np.unravel_index(np.argmin(frame), frame.shape)[1] for frame in distance]
    assert columns[-1] - columns[0] > 10


@pytest.mark.slow
def test_largest_configuration_writes_long_high_resolution_clips(tmp_path):
    generate_world(tmp_path / "big", n_train=1, n_test=1, seed=0, frames=64, size=256, fps=16.0, anticipation_s=1.0, motions=("push", "rotate_cw"))
    clip = read_jsonl(tmp_path / "big" / "test" / "clips.jsonl")[0]
    info = video_info(tmp_path / "big" / clip["video"])
    assert (info.num_frames, info.height, info.width, info.fps) == (64, 256, 256, 16.0)
    if clip["anticipation"]:
        assert clip["anticipation"]["anticipation_frames"] == 16
