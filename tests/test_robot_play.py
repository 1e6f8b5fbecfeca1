"""Robot play data: the Fetch simulator recorded for real, the LeRobot v3.0 layout, determinism, the reader."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from vjepa_vlm.data.lerobot_format import (
    LeRobotEpisodes, LeRobotFormatError, LeRobotWriter, vector_feature, video_feature,
)
from vjepa_vlm.data.robot_play import BEHAVIOUR_MIXES, BEHAVIOURS, ScriptedPlay, record_play, recorded_camera
from vjepa_vlm.data.robot_sim import CAMERAS, camera_name_of, make_fetch_env
from vjepa_vlm.data.video_io import VideoDecodeError
from vjepa_vlm.eval.planning import model_camera
from vjepa_vlm.modeling_vjepa2_ac import VJEPA2WorldModel
from vjepa_vlm.scripts import record_play as record_play_script
from vjepa_vlm.train.ac_trainer import load_recipe, train
from vjepa_vlm.train.checkpoint import latest_checkpoint

REPO = Path(__file__).resolve().parents[1]
OBLIQUE_RECIPE = REPO / "train" / "recipes" / "ac_tiny_residual_3000_oblique.yaml"
CAMERA = "observation.images.front"
DATA_COLUMNS = {
    "observation.state", "action", "eval.block_pose", "timestamp", "frame_index", "episode_index", "index", "task_index",
}


@pytest.fixture(scope="module")
def play(tmp_path_factory):
    """Three real episodes of 40 steps at 32 x 32, two episodes per file (so files hold several episodes)."""
    out = tmp_path_factory.mktemp("play") / "fetch"
    summary = record_play(out, episodes=3, seed=7, size=32, steps=40, episodes_per_file=2, progress=False)
    return out, summary


def test_simulator_renders_the_camera_with_the_goal_hidden_and_reads_the_end_effector():
    env = make_fetch_env(size=32, max_steps=5)
    try:
        env.reset(seed=3)
        frame = env.render()
        assert frame.shape == (32, 32, 3) and frame.dtype == np.uint8 and frame.std() > 10
        model, mujoco = env.sim.model, env._mujoco
        assert model.site_rgba[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "target0"), 3] == 0
        before = env.state()
        grip = env.sim.data.site_xpos[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "robot0:grip")]
        np.testing.assert_allclose(before[:3], grip, atol=1e-6)
        block = env.block_pose()
        assert abs(block[2] - env.table_height) < 0.005 and abs(np.linalg.norm(block[3:]) - 1) < 1e-5
        # +x at full scale moves the mocap target 5 cm; the gripper follows most of the way within one 40 ms step.
        env.step([1.0, 0.0, 0.0, 0.0])
        moved = env.state()[:3] - before[:3]
        assert 0.02 < moved[0] <= 0.051 and np.abs(moved[1:]).max() < 0.01
        assert env.fps == 25
    finally:
        env.close()


def test_an_env_still_renders_its_scene_after_another_env_in_the_process_is_closed():
    # Closing an env frees its GL context, which releases the thread's current one (the one the other env uses).
    env, other = make_fetch_env(size=32, max_steps=5), make_fetch_env(size=32, max_steps=5)
    try:
        env.reset(seed=3)
        first = env.render().copy()
        other.reset(seed=4)
        other.render()
        other.close()
        assert first.std() > 10 and np.array_equal(env.render(), first)
    finally:
        env.close()


def test_no_offscreen_rendering_is_a_clear_error():
    # Loads robot_sim by path so the child skips the package's model imports; a bogus backend stands in for a
    # machine whose GL library is missing (both fail where MuJoCo loads its backend).
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('robot_sim', {str(REPO / 'data' / 'robot_sim.py')!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "try:\n    module.make_fetch_env(32, 5)\n"
        "except module.SimulatorUnavailableError as error:\n    print('ERROR', error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env={**os.environ, "MUJOCO_GL": "no-such-backend"},
                            capture_output=True, text=True, timeout=120)
    assert "ERROR MuJoCo cannot render offscreen with MUJOCO_GL=no-such-backend" in result.stdout, result.stderr
    assert "MUJOCO_GL=egl" in result.stdout


def test_recording_writes_the_lerobot_v3_layout(play):
    out, summary = play
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 25 and info["robot_type"] == "fetch"
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (3, 120, 1)
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    features = info["features"]
    assert set(features) == DATA_COLUMNS | {CAMERA}
    assert features[CAMERA]["dtype"] == "video" and features[CAMERA]["shape"] == [32, 32, 3]
    assert features["observation.state"] == {"dtype": "float32", "shape": [4], "names": ["x", "y", "z", "gripper_opening"]}
    assert features["action"]["shape"] == [4] and features["eval.block_pose"]["shape"] == [7]

    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == [
        "data/chunk-000/file-000.parquet", "data/chunk-000/file-001.parquet",
        "meta/episodes/chunk-000/file-000.parquet", "meta/info.json", "meta/recording.json", "meta/stats.json",
        "meta/tasks.parquet",
        f"videos/{CAMERA}/chunk-000/file-000.mp4", f"videos/{CAMERA}/chunk-000/file-001.mp4",
    ]
    rows = pd.concat([pd.read_parquet(out / f"data/chunk-000/file-00{i}.parquet") for i in range(2)], ignore_index=True)
    assert set(rows.columns) == DATA_COLUMNS
    assert rows["index"].tolist() == list(range(120))
    assert rows["episode_index"].tolist() == [0] * 40 + [1] * 40 + [2] * 40
    assert rows["frame_index"].tolist() == list(range(40)) * 3
    np.testing.assert_allclose(rows["timestamp"], np.tile(np.arange(40) / 25, 3), atol=1e-6)
    actions = np.stack(rows["action"])
    assert actions.shape == (120, 4) and np.abs(actions).max() <= 1

    episodes = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet").to_pandas()
    assert episodes["episode_index"].tolist() == [0, 1, 2] and episodes["length"].tolist() == [40, 40, 40]
    assert episodes["data/file_index"].tolist() == [0, 0, 1]
    assert episodes["dataset_from_index"].tolist() == [0, 40, 80] and episodes["dataset_to_index"].tolist() == [40, 80, 120]
    assert episodes[f"videos/{CAMERA}/file_index"].tolist() == [0, 0, 1]
    assert episodes[f"videos/{CAMERA}/from_timestamp"].tolist() == [0.0, 1.6, 0.0]
    assert episodes[f"videos/{CAMERA}/to_timestamp"].tolist() == [1.6, 3.2, 1.6]
    tasks = pd.read_parquet(out / "meta" / "tasks.parquet")
    assert tasks.loc["scripted play with the block", "task_index"] == 0

    stats = json.loads((out / "meta" / "stats.json").read_text())
    state = np.stack(rows["observation.state"]).astype(np.float64)
    np.testing.assert_allclose(stats["observation.state"]["mean"], state.mean(0), rtol=1e-6)
    np.testing.assert_allclose(stats["observation.state"]["max"], state.max(0), rtol=1e-6)
    recording = json.loads((out / "meta" / "recording.json").read_text())
    assert recording["evaluation_only"] == ["eval.block_pose"] and recording["seed"] == 7


def test_play_reaches_the_block_and_counts_what_the_stored_poses_show(play):
    out, summary = play
    reader = LeRobotEpisodes(out, extra_keys=("eval.block_pose",))
    assert len(reader) == 3
    moved = 0
    for index in range(3):
        episode = reader.episode(index)
        assert episode.frames.shape == (40, 32, 32, 3)
        block = episode.extra["eval.block_pose"]
        # The scripted policy brings the gripper to the block (it starts >= 10 cm away in the Fetch task).
        assert np.linalg.norm(episode.state[:, :3] - block[:, :3], axis=1).min() < 0.05
        moved += np.linalg.norm(block[:, :3] - block[0, :3], axis=1).max() > 0.01
    assert summary.moved == moved >= 1


def test_same_seed_same_episodes_another_seed_others(play, tmp_path):
    out, _ = play
    again = record_play(tmp_path / "again", episodes=1, seed=7, size=32, steps=40, progress=False)
    other = record_play(tmp_path / "other", episodes=1, seed=8, size=32, steps=5, progress=False)
    first = LeRobotEpisodes(out).episode(0)
    same = LeRobotEpisodes(again.out_dir).episode(0)
    different = LeRobotEpisodes(other.out_dir).episode(0)
    np.testing.assert_array_equal(first.state, same.state)
    np.testing.assert_array_equal(first.action, same.action)
    np.testing.assert_array_equal(first.frames, same.frames)
    assert not np.array_equal(first.action[:5], different.action)


@pytest.fixture(scope="module")
def oblique(tmp_path_factory):
    """The play fixture's first episode recorded through the oblique camera."""
    out = tmp_path_factory.mktemp("oblique") / "fetch"
    return record_play(out, episodes=1, seed=7, size=32, steps=40, camera="oblique", progress=False).out_dir


def test_a_named_camera_records_the_same_episodes_seen_from_elsewhere_under_its_own_key(play, oblique, tmp_path):
    out, _ = play
    recording = json.loads((oblique / "meta" / "recording.json").read_text())
    assert recording["camera_name"] == "oblique" and recording["camera_key"] == "observation.images.oblique"
    assert recording["camera"]["azimuth"] == CAMERAS["oblique"]["azimuth"] != CAMERAS["front"]["azimuth"]
    assert recorded_camera(oblique) == "oblique" and recorded_camera(out) == "front"
    front, turned = LeRobotEpisodes(out).episode(0), LeRobotEpisodes(oblique).episode(0)
    np.testing.assert_array_equal(front.state, turned.state)
    np.testing.assert_array_equal(front.action, turned.action)
    assert np.abs(front.frames.astype(int) - turned.frames).mean() > 10
    with pytest.raises(ValueError, match="unknown camera 'top'; expected one of"):
        record_play(tmp_path / "top", episodes=1, seed=7, size=32, steps=5, camera="top", progress=False)
    assert not (tmp_path / "top").exists()


def test_a_world_model_saves_the_camera_of_its_play_and_a_recipe_naming_another_is_refused(oblique, tmp_path):
    overrides = [
        f"play_data.dir={oblique}", "play_data.camera=oblique", "data.camera_key=observation.images.oblique",
        "data.num_episodes=1", "data.num_frames=4", "data.crop_size=32", "data.cache_features=false", "steps=1",
        "optim.warmup_steps=0", "optim.decay_steps=1", f"checkpoint.dir={tmp_path / 'run'}", "checkpoint.every_steps=1",
    ]
    run = train(load_recipe(OBLIQUE_RECIPE, overrides))
    model = VJEPA2WorldModel.from_pretrained(latest_checkpoint(run) / "model")
    assert model.config.camera == "oblique" and model_camera(model, "m") == "oblique"
    with pytest.raises(ValueError, match="recorded with the 'oblique' camera, but play_data.camera is 'front'"):
        train(load_recipe(OBLIQUE_RECIPE, [*overrides, "play_data.camera=front"]))


def test_recordings_made_before_cameras_were_named_are_read_by_their_settings(tmp_path):
    meta = tmp_path / "old" / "meta"
    meta.mkdir(parents=True)
    settings = {**CAMERAS["front"], "lookat": list(CAMERAS["front"]["lookat"])}
    (meta / "recording.json").write_text(json.dumps({"camera": settings}))
    assert recorded_camera(tmp_path / "old") == "front" and recorded_camera(tmp_path) is None
    (meta / "recording.json").write_text(json.dumps({"camera": {**settings, "azimuth": 90.0}}))
    with pytest.raises(ValueError, match=r"recording.json: camera settings .* are none of the named cameras"):
        recorded_camera(tmp_path / "old")
    (meta / "recording.json").write_text(json.dumps({"camera_name": "top"}))
    with pytest.raises(ValueError, match="camera_name 'top' is none of"):
        recorded_camera(tmp_path / "old")
    with pytest.raises(ValueError, match="none of the named cameras"):
        camera_name_of({**settings, "lookat": [1.3, 0.75]})


@pytest.mark.slow
def test_episodes_do_not_depend_on_the_worker_count(play, tmp_path):
    out, _ = play
    parallel = record_play(
        tmp_path / "parallel", episodes=3, seed=7, size=32, steps=40, episodes_per_file=2, workers=2, progress=False
    )
    tables = ("data/chunk-000/file-000.parquet", "data/chunk-000/file-001.parquet", "meta/episodes/chunk-000/file-000.parquet")
    for name in tables:
        assert pq.read_table(out / name).equals(pq.read_table(parallel.out_dir / name)), name
    serial_reader, parallel_reader = LeRobotEpisodes(out), LeRobotEpisodes(parallel.out_dir)
    for index in range(3):
        np.testing.assert_array_equal(serial_reader.episode(index).frames, parallel_reader.episode(index).frames)


def test_scripted_play_moves_towards_its_waypoint():
    policy = ScriptedPlay(np.random.default_rng(0), table_height=0.425)
    policy.random_prob, policy.noise_std = 0.0, 0.0
    state = np.array([1.3, 0.75, 0.55, 0.05], dtype=np.float32)
    block = np.array([1.2, 0.75, 0.425, 1, 0, 0, 0], dtype=np.float32)
    action = policy.act(state, block)
    target = policy.plan[0].target
    expected = np.clip(policy.gain * (target - state[:3]) / 0.05, -1, 1)
    np.testing.assert_allclose(action[:3], expected, rtol=1e-5)
    assert action[3] == policy.plan[0].gripper


def test_the_grasp_mix_chooses_pick_and_poke_far_more_often_and_the_default_is_unchanged():
    def shares(mix):
        policy = ScriptedPlay(np.random.default_rng(0), table_height=0.425, mix=mix)
        names = [policy.choose_behaviour() for _ in range(4000)]
        return {name: names.count(name) / len(names) for name in BEHAVIOURS}

    default, grasp = shares("default"), shares("grasp")
    for name, weight in zip(BEHAVIOURS, BEHAVIOUR_MIXES["default"]):
        assert abs(default[name] - weight) < 0.03, (name, default[name])
    assert grasp["pick"] + grasp["poke"] > 0.8
    assert default["pick"] + default["poke"] < 0.55
    # Without a mix the policy draws exactly the stream it drew before mixes existed.
    plain, named = ScriptedPlay(np.random.default_rng(3), 0.425), ScriptedPlay(np.random.default_rng(3), 0.425, "default")
    assert [plain.choose_behaviour() for _ in range(50)] == [named.choose_behaviour() for _ in range(50)]
    with pytest.raises(ValueError, match="behaviour mix must be one of"):
        ScriptedPlay(np.random.default_rng(0), 0.425, mix="grasps")


def test_a_recording_names_its_behaviour_mix_and_an_unknown_mix_writes_nothing(play, tmp_path, capsys):
    out, _ = play
    assert json.loads((out / "meta" / "recording.json").read_text())["behaviour_mix"] == "default"
    grasp = record_play(tmp_path / "grasp", episodes=1, seed=7, size=32, steps=5, mix="grasp", progress=False).out_dir
    assert json.loads((grasp / "meta" / "recording.json").read_text())["behaviour_mix"] == "grasp"
    with pytest.raises(ValueError, match="behaviour mix must be one of"):
        record_play(tmp_path / "bad", episodes=1, seed=7, size=32, steps=5, mix="grasps", progress=False)
    assert not (tmp_path / "bad").exists()
    assert record_play_script.parse_args(["--out", "x", "--episodes", "1", "--seed", "0"]).behaviour_mix == "default"
    with pytest.raises(SystemExit):
        record_play_script.parse_args(["--out", "x", "--episodes", "1", "--seed", "0", "--behaviour-mix", "grasps"])
    assert "invalid choice: 'grasps'" in capsys.readouterr().err


def _smooth_frames(length: int, size: int, offset: int) -> np.ndarray:
    # Each frame a flat grey whose level encodes (episode, frame), so decoded order is checkable through H.264.
    levels = offset + 6 * np.arange(length)
    return np.broadcast_to(levels[:, None, None, None], (length, size, size, 3)).astype(np.uint8).copy()


@pytest.fixture
def other_robot(tmp_path):
    """A dataset of a 7-DoF arm: 7-D joint state, 7-D action, a wrist camera, episodes of 9, 5 and 7 frames."""
    rng = np.random.default_rng(0)
    root = tmp_path / "arm7"
    root.mkdir()
    features = {
        "observation.images.wrist": video_feature(16, 16, fps=10),
        "observation.images.top": video_feature(16, 16, fps=10),
        "observation.state": vector_feature([f"joint_{i}" for i in range(7)]),
        "action": vector_feature([f"joint_{i}" for i in range(6)] + ["gripper"]),
    }
    writer = LeRobotWriter(root, fps=10, features=features, robot_type="arm7", episodes_per_file=2)
    written = []
    for episode, length in enumerate((9, 5, 7)):
        state, action = rng.normal(size=(length, 7)).astype(np.float32), rng.normal(size=(length, 7)).astype(np.float32)
        wrist = _smooth_frames(length, 16, 40 * episode)
        writer.add_episode({"observation.images.wrist": wrist, "observation.images.top": 255 - wrist},
                           {"observation.state": state, "action": action}, task=["stack", "unstack", "stack"][episode])
        written.append((wrist, state, action))
    writer.finish()
    return root, written


def test_reader_round_trips_another_robots_dims_and_camera(other_robot):
    root, written = other_robot
    reader = LeRobotEpisodes(root, camera_key="observation.images.wrist", state_dim=7, action_dim=7)
    assert len(reader) == 3 and [reader.length(i) for i in range(3)] == [9, 5, 7]
    for index, (frames, state, action) in enumerate(written):
        episode = reader.episode(index)
        np.testing.assert_array_equal(episode.state, state)
        np.testing.assert_array_equal(episode.action, action)
        assert episode.frames.shape == frames.shape
        np.testing.assert_allclose(episode.frames.mean(axis=(1, 2, 3)), frames.mean(axis=(1, 2, 3)), atol=2)
    clip = reader.episode(2, start=3, num_frames=4)
    np.testing.assert_array_equal(clip.state, written[2][1][3:7])
    np.testing.assert_allclose(clip.frames.mean(axis=(1, 2, 3)), written[2][0][3:7].mean(axis=(1, 2, 3)), atol=2)
    top = LeRobotEpisodes(root, camera_key="observation.images.top").episode(1, frames=True)
    np.testing.assert_allclose(top.frames.mean(axis=(1, 2, 3)), 255 - written[1][0].mean(axis=(1, 2, 3)), atol=2)
    tasks = pd.read_parquet(root / "meta" / "tasks.parquet")
    assert tasks["task_index"].to_dict() == {"stack": 0, "unstack": 1}
    rows = pd.read_parquet(root / "data" / "chunk-000" / "file-000.parquet")
    assert rows["task_index"].tolist() == [0] * 9 + [1] * 5


def test_reader_errors_name_the_file_and_field(other_robot, tmp_path):
    root, _ = other_robot
    with pytest.raises(LeRobotFormatError, match=r"episode 1 has 5 frames; frames \[2, 8\) were requested"):
        LeRobotEpisodes(root, camera_key="observation.images.wrist").episode(1, start=2, num_frames=6)
    with pytest.raises(LeRobotFormatError, match=r"info.json: pass camera_key"):
        LeRobotEpisodes(root)
    with pytest.raises(LeRobotFormatError, match=r"info.json: state_key 'observation.joints' is not among the features"):
        LeRobotEpisodes(root, camera_key="observation.images.wrist", state_key="observation.joints")
    with pytest.raises(LeRobotFormatError, match=r"info.json: feature 'action' has shape \[7\], expected \[4\]"):
        LeRobotEpisodes(root, camera_key="observation.images.wrist", action_dim=4)
    with pytest.raises(LeRobotFormatError, match=r"not a LeRobot dataset folder"):
        LeRobotEpisodes(tmp_path)

    video = root / "videos" / "observation.images.wrist" / "chunk-000" / "file-001.mp4"
    video.write_bytes(b"not an mp4")
    reader = LeRobotEpisodes(root, camera_key="observation.images.wrist")
    assert reader.episode(2, frames=False).state.shape == (7, 7)
    with pytest.raises(VideoDecodeError, match=r"episode 2, camera 'observation.images.wrist': .*file-001.mp4"):
        reader.episode(2)

    data = root / "data" / "chunk-000" / "file-000.parquet"
    pq.write_table(pq.read_table(data).drop(["action"]), data)
    with pytest.raises(LeRobotFormatError, match=r"file-000.parquet: missing columns \['action'\]"):
        LeRobotEpisodes(root, camera_key="observation.images.wrist").episode(0)
    info = json.loads((root / "meta" / "info.json").read_text())
    (root / "meta" / "info.json").write_text(json.dumps({**info, "codebase_version": "v2.1"}))
    with pytest.raises(LeRobotFormatError, match=r"codebase_version 'v2.1' is not supported"):
        LeRobotEpisodes(root, camera_key="observation.images.wrist")


def test_writer_rejects_mismatched_episodes(tmp_path):
    features = {"observation.state": vector_feature(["a", "b"]), "cam": video_feature(8, 8, 10)}
    writer = LeRobotWriter(tmp_path, fps=10, features=features)
    frames = np.zeros((3, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match=r"'observation.state' rows have shape \(3,\), expected \(2,\)"):
        writer.add_episode({"cam": frames}, {"observation.state": np.zeros((3, 3))}, "t")
    with pytest.raises(ValueError, match=r"same non-zero length"):
        writer.add_episode({"cam": frames}, {"observation.state": np.zeros((4, 2))}, "t")
    with pytest.raises(ValueError, match=r"lacks features \['cam'\]"):
        writer.add_episode({}, {"observation.state": np.zeros((3, 2))}, "t")


def test_command_line_refuses_an_existing_output_and_bad_sizes(tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    assert record_play_script.main(["--out", str(tmp_path / "taken"), "--episodes", "1", "--seed", "0"]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert record_play_script.main(["--out", str(tmp_path / "new"), "--episodes", "1", "--seed", "0", "--size", "33"]) == 2
    assert "size must be an even integer" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
    with pytest.raises(SystemExit):
        record_play_script.parse_args(["--out", str(tmp_path / "new"), "--episodes", "1", "--seed", "0", "--camera", "top"])
    assert "invalid choice: 'top'" in capsys.readouterr().err
