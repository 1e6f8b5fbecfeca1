"""Closed-loop planning evaluation in the Fetch simulator: scene variants, oracle-made goals and success criteria,
failing episodes, input checks, and `scripts/eval_planning.py` end to end with a tiny world model (resumable)."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from vjepa2_oracle import randomize_
from vjepa_vlm.data.robot_sim import VARIANTS
from vjepa_vlm.eval.planning import (
    FETCH_CEM,
    LIFT_M,
    TASKS,
    BCPolicy,
    OraclePolicy,
    PlannerPolicy,
    Policy,
    RandomPolicy,
    Task,
    check_tasks,
    check_world_model,
    frames_to_model,
    load_action_map,
    make_setup,
    model_camera,
    resolve_camera,
    run_episode,
)
from vjepa_vlm.scripts import eval_planning
from vjepa_vlm.scripts.eval_planning import simulator
from vjepa_vlm.vision.bc_policy import BCPolicyConfig, GoalConditionedPolicy

from vjepa_vlm import VJEPA2WorldModel, VJEPA2WorldModelConfig


@pytest.fixture(scope="module")
def env():
    return simulator(64, "default")


class StillRecordingSubgoals(Policy):
    """Stands still and records the sub-goal index the episode hands it at every step."""

    name = "still"

    def __init__(self):
        self.goal_indices = []

    def act(self, env, frame, step, goal_index):
        self.goal_indices.append(goal_index)
        return np.zeros(4, np.float32)


def test_variants_change_the_picture_not_the_physics_and_states_restore(env):
    env.reset(seed=3)
    default = env.render().astype(int)
    for variant in VARIANTS[1:]:
        other = simulator(64, variant)
        other.reset(seed=3)
        assert np.array_equal(other.state(), env.state()) and np.array_equal(other.block_pose(), env.block_pose())
        frame = other.render().astype(int)
        # The block covers only a few pixels at 64 px: count changed pixels rather than average the change.
        assert frame.std() > 10 and (frame != default).any(-1).sum() >= 4, variant
    start = env.get_state()
    env.step(np.array([1.0, 0.0, 0.0, 1.0]))
    assert not np.array_equal(env.state(), simulator(64, "block_colour").state())
    env.set_state(start)
    assert np.array_equal(env.render().astype(int), default)


@pytest.mark.parametrize("name", ["reach", "grasp"])
def test_goals_are_made_by_the_oracle_which_reaches_them_and_random_actions_do_not(env, name):
    setup = make_setup(env, TASKS[name], seed=0, index=1)
    env.set_state(setup.start_state)
    start_frame = env.render()
    assert len(setup.goal_frames) == 1 and np.abs(setup.goal_frames[0].astype(int) - start_frame).mean() > 0.2
    assert setup.distance(env) > 0.05 and not setup.success(env)
    oracle = run_episode(env, setup, OraclePolicy())
    assert oracle["success"] and oracle["error"] is None and len(oracle["distances"]) == TASKS[name].steps + 1
    if name == "grasp":
        assert oracle["block_lift_m"] >= LIFT_M
    random = run_episode(env, setup, RandomPolicy(2.0, (-5.0, 5.0), seed=0))
    assert not random["success"] and random["final_distance"] > 0.05


def test_pick_and_place_has_three_goal_images_and_a_raising_policy_is_a_failure(env):
    setup = make_setup(env, TASKS["pick_and_place"], seed=0, index=0)
    assert len(setup.goal_frames) == 3 and TASKS["pick_and_place"].subgoal_steps == (4, 10, 4)

    class Broken(Policy):
        name = "broken"

        def act(self, env, frame, step, goal_index):
            raise RuntimeError("planner exploded")

    record = run_episode(env, setup, Broken())
    assert record["success"] is False and record["error"] == "RuntimeError: planner exploded"


def test_push_subgoal_adds_a_goal_behind_the_block_to_push_s_own_draws_and_policies_follow_the_schedule(env):
    push, split = make_setup(env, TASKS["push"], seed=0, index=2), make_setup(env, TASKS["push_subgoal"], seed=0, index=2)
    # The same start and, exactly, the same final goal as the published single-goal push.
    assert push.reset_seed == split.reset_seed and np.array_equal(push.start_state, split.start_state)
    assert np.array_equal(push.goal_block[-1], split.goal_block[-1]) and np.array_equal(push.goal_gripper[-1], split.goal_gripper[-1])
    assert np.array_equal(push.goal_frames[-1], split.goal_frames[-1])
    assert len(push.goal_frames) == 1 and len(split.goal_frames) == 2 and TASKS["push_subgoal"].steps == TASKS["push"].steps
    # The first goal: closed fingers down on the table about 7 cm behind the block, which has not moved yet.
    env.set_state(split.start_state)
    start_block, start_frame = env.block_pose()[:3].copy(), env.render()
    behind = split.goal_gripper[0]
    assert 0.05 < np.linalg.norm(behind[:2] - start_block[:2]) < 0.08 and abs(behind[2] - env.table_height) < 0.02
    assert np.linalg.norm(split.goal_block[0] - start_block) < 0.01
    assert np.abs(split.goal_frames[0].astype(int) - start_frame).mean() > 0.2
    assert np.abs(split.goal_frames[0].astype(int) - split.goal_frames[1]).mean() > 0.2
    oracle = run_episode(env, split, OraclePolicy())
    assert oracle["success"] and len(oracle["subgoal_gripper_m"]) == 2 and max(oracle["subgoal_gripper_m"]) < 0.02
    assert "subgoal_gripper_m" not in run_episode(env, push, OraclePolicy())

    policy = StillRecordingSubgoals()
    still = run_episode(env, split, policy)
    assert policy.goal_indices == [0] * 6 + [1] * 9 and not still["success"]
    assert still["subgoal_gripper_m"][0] == pytest.approx(float(np.linalg.norm(env.state()[:3] - behind)), abs=0.01)


@pytest.mark.parametrize("name, schedule", [("grasp_subgoal", [0] * 6 + [1] * 6),
                                            ("grasp_subgoal3", [0] * 6 + [1] * 2 + [2] * 4)])
def test_grasp_subgoals_split_grasp_s_own_run_into_stages(env, name, schedule):
    grasp, split = make_setup(env, TASKS["grasp"], seed=0, index=1), make_setup(env, TASKS[name], seed=0, index=1)
    # The same start and, to the bit, the same final goal image and configuration as the single-goal grasp.
    assert grasp.reset_seed == split.reset_seed and np.array_equal(grasp.start_state, split.start_state)
    assert np.array_equal(grasp.goal_frames[-1], split.goal_frames[-1])
    assert np.array_equal(grasp.goal_block[-1], split.goal_block[-1])
    assert np.array_equal(grasp.goal_gripper[-1], split.goal_gripper[-1])
    assert TASKS[name].steps == TASKS["grasp"].steps and len(split.goal_frames) == len(set(schedule))
    env.set_state(split.start_state)
    start_block = env.block_pose()[:3].copy()
    # The first goal: the gripper down around the block, which still rests where it started.
    assert np.linalg.norm(split.goal_gripper[0] - start_block) < 0.015
    assert np.linalg.norm(split.goal_block[0] - start_block) < 0.005
    oracle = run_episode(env, split, OraclePolicy())
    assert oracle["success"] and max(oracle["subgoal_gripper_m"]) < 0.02
    # The records say what the grip did: open at the first switch, closed (by a closing command) before the block
    # leaves the table, and the block up at the end.
    fingers, lifts = oracle["fingers_m"], oracle["block_lifts_m"]
    assert fingers[6] > 0.09 and lifts[6] < 0.005 and min(a[3] for a in oracle["actions"][6:8]) == -5.0
    assert fingers[8] < 0.06 and lifts[-1] == pytest.approx(oracle["block_lift_m"], abs=1e-4) and lifts[-1] > LIFT_M
    assert len(oracle["actions"]) == TASKS[name].steps and len(fingers) == len(lifts) == TASKS[name].steps + 1

    policy = StillRecordingSubgoals()
    still = run_episode(env, split, policy)
    assert policy.goal_indices == schedule and not still["success"] and max(still["block_lifts_m"]) < 0.005


def test_pick_and_place_subgoal_keeps_pick_and_place_s_own_goals_and_adds_the_grasp_s(env):
    base, split = make_setup(env, TASKS["pick_and_place"], seed=0, index=1), make_setup(env, TASKS["pick_and_place_subgoal"], seed=0, index=1)
    assert base.reset_seed == split.reset_seed and np.array_equal(base.start_state, split.start_state)
    # pick_and_place renders its three goals in one oracle run; the split task's goals at those points (lifted,
    # above the target, set down and released) are the same to the bit, so are its draws and success criterion.
    assert len(split.goal_frames) == 5 and len(base.goal_frames) == 3
    for name in ("goal_frames", "goal_gripper", "goal_block"):
        assert all(np.array_equal(a, b) for a, b in zip(getattr(base, name), getattr(split, name)[2:], strict=True)), name
    # The two goals added before the lift are the grasp's, from an uninterrupted run from the start: open fingers
    # around the block, then closed on it, the block still on the table.
    grasp = make_setup(env, TASKS["grasp_subgoal3"], seed=0, index=1)
    assert grasp.reset_seed == split.reset_seed
    assert all(np.array_equal(a, b) for a, b in zip(grasp.goal_frames[:2], split.goal_frames[:2], strict=True))
    env.set_state(split.start_state)
    start_block = env.block_pose()[:3].copy()
    assert np.linalg.norm(split.goal_block[1] - start_block) < 0.005 and split.goal_block[2][2] - start_block[2] > 2 * LIFT_M
    oracle = run_episode(env, split, OraclePolicy())
    # The oracle keeps to its own pace: at the grip's switches it is where the goals show it, and it ends on the
    # last; the lifted and above-target points it has already left when those stages' steps are spent.
    gripper_m = oracle["subgoal_gripper_m"]
    assert oracle["success"] and len(gripper_m) == 5 and max(gripper_m[0], gripper_m[1], gripper_m[4]) < 0.02
    assert oracle["fingers_m"][-1] > 0.09 and oracle["block_lifts_m"][-1] < 0.005  # released on the table
    policy = StillRecordingSubgoals()
    run_episode(env, split, policy)
    assert policy.goal_indices == [i for i, n in enumerate(TASKS["pick_and_place_subgoal"].subgoal_steps) for _ in range(n)]


def test_bc_reads_the_goal_image_of_the_sub_goal_it_is_given(env):
    """Fairness of push_subgoal: BC, like the planner, is conditioned on the current sub-goal's image."""
    model = randomize_(VJEPA2WorldModel(VJEPA2WorldModelConfig.from_preset("vjepa2-ac-tiny")), seed=0).eval()
    config = BCPolicyConfig(tokens=model.tokens_per_frame, feature_dim=model.config.predictor_config.encoder_hidden_size,
                            state_dim=4, action_dim=4, token_dim=3, hidden_size=16, action_scale=(5, 5, 5, 5))
    policy = randomize_(GoalConditionedPolicy(config), seed=1).eval()
    bc = BCPolicy(policy, model)
    setup = make_setup(env, TASKS["push_subgoal"], seed=0, index=2)
    bc.reset(setup)
    env.set_state(setup.start_state)
    frame = env.render()
    actions = [bc.act(env, frame, 0, goal_index) for goal_index in (0, 1)]
    assert not np.allclose(actions[0], actions[1])
    with torch.no_grad():
        goal = model.encode_frames(frames_to_model(setup.goal_frames[1][None], 64))[0]
        features = model.encode_frames(frames_to_model(frame[None], 64))[0]
        direct = policy(features, goal, torch.from_numpy(env.state()).float().unsqueeze(0))[0].numpy()
    np.testing.assert_allclose(actions[1], direct, atol=1e-5)


def test_bad_tasks_models_and_images_are_refused():
    with pytest.raises(ValueError, match=r"unknown task\(s\) \['stack'\]; expected .*'push_subgoal'"):
        check_tasks(["reach", "stack"])
    with pytest.raises(ValueError, match=r"task g: a base task and one stage_waypoints entry per sub-goal go together"):
        Task("g", (6, 6), base="grasp", stage_waypoints=(4,))
    config = VJEPA2WorldModelConfig.from_preset("vjepa2-ac-tiny")
    config.predictor_config.action_dim = 7
    with pytest.raises(ValueError, match=r"action_dim=7 \(the simulator's actions are"):
        check_world_model(VJEPA2WorldModel(config), 64, "m")
    with pytest.raises(ValueError, match="crop_size=64 but goal images and frames are rendered at 128 pixels"):
        check_world_model(VJEPA2WorldModel(VJEPA2WorldModelConfig.from_preset("vjepa2-ac-tiny")), 128, "m")
    with pytest.raises(ValueError, match="images are 32x32 but the world model expects 64x64"):
        frames_to_model(np.zeros((1, 32, 32, 3), np.uint8), 64)


def test_eval_planning_end_to_end_writes_records_table_curves_and_resumes(tmp_path):
    model_dir = tmp_path / "wm"
    randomize_(VJEPA2WorldModel(VJEPA2WorldModelConfig.from_preset("vjepa2-ac-tiny")), seed=0).save_pretrained(model_dir)
    out = tmp_path / "eval"
    argv = ["--model", f"tiny={model_dir}", "--tasks", "reach", "--episodes", "2", "--samples", "8", "--top-k", "2",
            "--iterations", "2", "--out", str(out), "--no-progress"]
    with pytest.raises(ValueError, match=r"unknown method\(s\) \['cosmos'\]"):
        eval_planning.main(argv + ["--methods", "random,cosmos"])
    result = eval_planning.main(argv)
    records = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert sorted((r["method"], r["episode"]) for r in records) == [
        (m, e) for m in ("oracle", "random", "tiny") for e in (0, 1)
    ]
    tiny = [r for r in records if r["method"] == "tiny"]
    assert all(r["error"] is None and len(r["distances"]) == 11 and r["settings"]["samples"] == 8 for r in tiny)
    assert tiny[0]["settings"]["init_std"] == FETCH_CEM.init_std and tiny[0]["settings"]["momentum"] == FETCH_CEM.momentum_mean
    assert tiny[0]["settings"]["warm_start"] == "none"
    assert result["summary"]["oracle/default/reach"]["successes"] == 2
    assert (out / "distance_reach_default.png").stat().st_size > 1000
    assert "| oracle | 100% (2/2)" in (out / "table.md").read_text()
    eval_planning.main(argv)  # everything is already there: nothing runs again
    assert len((out / "episodes.jsonl").read_text().splitlines()) == 6


def _calibration_file(path, cameras):
    path.write_text(json.dumps({"variant": "camera_shift", "cameras": cameras}))
    return path


def test_action_map_file_is_read_per_camera_and_bad_files_are_refused(tmp_path):
    turn = [[0.0, -1.0], [1.0, 0.0]]
    good = _calibration_file(tmp_path / "calibration.json", [
        {"azimuth_offset_deg": 0.0, "map": [[1.0, 0.0], [0.0, 1.0]], "condition_number": 1.0},
        {"azimuth_offset_deg": 15.0, "map": turn, "condition_number": 1.0},
    ])
    loaded = load_action_map(good, 15)
    assert loaded["map"] == ((0.0, -1.0), (1.0, 0.0)) and loaded["variant"] == "camera_shift"
    assert loaded["azimuth_offset_deg"] == 15.0
    with pytest.raises(ValueError, match=r"has 2 cameras \(azimuth offsets \[0.0, 15.0\]\)"):
        load_action_map(good)
    with pytest.raises(ValueError, match=r"no camera at azimuth offset 30; it has \[0.0, 15.0\]"):
        load_action_map(good, 30)
    with pytest.raises(FileNotFoundError, match="missing.json: not a file"):
        load_action_map(tmp_path / "missing.json")
    (tmp_path / "text.json").write_text("map: [[1, 0], [0, 1]]")
    with pytest.raises(ValueError, match="text.json: not a JSON file"):
        load_action_map(tmp_path / "text.json")
    (tmp_path / "list.json").write_text("[[1, 0], [0, 1]]")
    with pytest.raises(ValueError, match="non-empty 'cameras' list"):
        load_action_map(tmp_path / "list.json")
    for bad in ([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], [[1.0, None], [0.0, 1.0]], "identity"):
        path = _calibration_file(tmp_path / "bad.json", [{"azimuth_offset_deg": 0.0, "map": bad}])
        with pytest.raises(ValueError, match="expected a finite 2x2 matrix"):
            load_action_map(path)


def test_planner_executes_the_mapped_motion_and_the_script_passes_the_map_on(env, tmp_path):
    model = randomize_(VJEPA2WorldModel(VJEPA2WorldModelConfig.from_preset("vjepa2-ac-tiny")), seed=0).eval()
    setup = make_setup(env, TASKS["reach"], seed=0, index=0)
    env.set_state(setup.start_state)
    frame = env.render()
    small = replace(FETCH_CEM, samples=8, top_k=2, iterations=2)
    actions = {}
    for name, matrix in (("plain", None), ("turned", ((0.0, -1.0), (1.0, 0.0))), ("zero", ((0.0, 0.0), (0.0, 0.0)))):
        policy = PlannerPolicy(model, replace(small, action_map=matrix), name=name)
        policy.reset(setup)
        actions[name] = policy.act(env, frame, 0, 0)
    # The same search (same seed), only the executed (dx, dy) changes; dz and the gripper are kept.
    assert np.abs(actions["plain"][:2]).max() > 0
    np.testing.assert_allclose(actions["turned"], [-actions["plain"][1], actions["plain"][0], *actions["plain"][2:]],
                               atol=1e-6)
    np.testing.assert_allclose(actions["zero"], [0.0, 0.0, *actions["plain"][2:]], atol=1e-6)

    calibration = _calibration_file(tmp_path / "calibration.json",
                                    [{"azimuth_offset_deg": 0.0, "map": [[0.0, 0.0], [0.0, 0.0]]}])
    argv = ["--out", str(tmp_path / "eval"), "--samples", "8", "--top-k", "2"]
    cem, recorded = eval_planning.planner_config(eval_planning.parse_args(argv + ["--action-map", str(calibration)]))
    assert cem.action_map == ((0.0, 0.0), (0.0, 0.0)) and cem.samples == 8 and recorded["variant"] == "camera_shift"
    assert eval_planning.planner_config(eval_planning.parse_args(argv))[0].action_map is None
    with pytest.raises(ValueError, match="--action-map-azimuth needs --action-map"):
        eval_planning.main(argv + ["--action-map-azimuth", "15"])
    with pytest.raises(FileNotFoundError, match="nothing.json: not a file"):
        eval_planning.main(argv + ["--action-map", str(tmp_path / "nothing.json")])
    assert not (tmp_path / "eval").exists()


def test_a_warm_started_planner_starts_its_gripper_at_the_command_executed_last(env, tmp_path):
    model = randomize_(VJEPA2WorldModel(VJEPA2WorldModelConfig.from_preset("vjepa2-ac-tiny")), seed=0).eval()
    holding = make_setup(env, TASKS["reach_with_object"], seed=0, index=0)
    assert holding.start_gripper == -5.0 and make_setup(env, TASKS["reach"], seed=0, index=0).start_gripper == 0.0
    starts, plan = [], model.plan

    def recording_plan(*args, init_mean=None, **kwargs):
        starts.append(init_mean)
        return plan(*args, init_mean=init_mean, **kwargs)

    model.plan = recording_plan
    small = replace(FETCH_CEM, samples=8, top_k=2, iterations=2)
    env.set_state(holding.start_state)
    frame = env.render()
    cold = PlannerPolicy(model, small, name="cold")
    cold.reset(holding)
    cold.act(env, frame, 0, 0)
    warm = PlannerPolicy(model, replace(small, warm_start="hold_gripper"), name="warm")
    warm.reset(holding)
    first = warm.act(env, frame, 0, 0)
    warm.act(env, frame, 1, 0)
    assert starts[0] is None  # the default: every step starts at mean 0, as the paper
    assert torch.equal(starts[1], torch.tensor([[0.0, 0.0, 0.0, -5.0]]))  # the pick's closing command
    assert starts[2][0, 3].item() == pytest.approx(float(first[3])) and starts[2][0, :3].abs().max() == 0
    # The script's option reaches the planner and every planner record names it.
    args = eval_planning.parse_args(["--out", str(tmp_path), "--warm-start", "hold_gripper"])
    assert eval_planning.planner_config(args)[0].warm_start == "hold_gripper"
    assert eval_planning.planner_config(eval_planning.parse_args(["--out", str(tmp_path)]))[0].warm_start == "none"


def test_the_distance_curves_legend_fits_long_method_names(tmp_path):
    from PIL import Image

    rows = [{"task": "reach", "variant": "default", "error": None, "method": m, "distances": [0.2, 0.1 + i / 100]}
            for i, m in enumerate(("bc", "vjepa2_ac_3000_oblique_cem200x5_hold_gripper"))]
    short, long = tmp_path / "short.png", tmp_path / "long.png"
    assert eval_planning.write_distance_curves(rows[:1], "reach", "default", short)
    assert eval_planning.write_distance_curves(rows, "reach", "default", long)
    assert Image.open(short).size == (640, 400)  # short names: the size asked for
    # The long name (about 300 px at the default font) widens the canvas instead of running off its edge: the last
    # legend pixel column still has background to its right.
    image = np.asarray(Image.open(long).convert("L"))
    assert image.shape[1] > 640 + 100 and (image[:, -5:] == 255).all()
    assert not eval_planning.write_distance_curves(rows, "push", "default", tmp_path / "none.png")
    renamed = tmp_path / "renamed.png"
    eval_planning.write_distance_curves(rows, "reach", "default", renamed,
                                        labels={"vjepa2_ac_3000_oblique_cem200x5_hold_gripper": "V-JEPA 2-AC"})
    assert Image.open(renamed).size == (640, 400)


def test_failed_episodes_are_told_apart_by_where_their_distance_went():
    def record(distances, success=False, error=None):
        return {"method": "m", "variant": "default", "task": "reach", "success": success, "error": error,
                "distances": distances, "final_distance": distances[-1] if distances else float("nan"),
                "start_distance": distances[0] if distances else float("nan"), "act_seconds_per_step": 0.1}

    cases = {
        None: record([0.2, 0.1, 0.03], success=True),
        "error": record([], error="RuntimeError: no goal"),
        "left_the_goal": record([0.2, 0.04, 0.07]),
        "moved_away": record([0.2, 0.15, 0.3]),
        "stopped_short": record([0.2, 0.12, 0.09, 0.1]),
        "turned_back": record([0.2, 0.08, 0.15]),
    }
    assert {mode: eval_planning.failure_mode(r) for mode, r in cases.items()} == {m: m for m in cases}
    cell = eval_planning.summarize(list(cases.values()))["m/default/reach"]
    assert (cell["n"], cell["successes"]) == (6, 1)
    assert cell["failure_modes"] == dict.fromkeys(eval_planning.FAILURE_MODES, 1)


def test_a_model_is_evaluated_through_the_camera_it_was_trained_on(env, tmp_path):
    config = VJEPA2WorldModelConfig.from_preset("vjepa2-ac-tiny")
    assert model_camera(VJEPA2WorldModel(config), "m") == "front"  # saved before cameras were named
    config.camera = "top"
    with pytest.raises(ValueError, match="m: the world model's config.json names camera 'top'"):
        model_camera(VJEPA2WorldModel(config), "m")
    assert resolve_camera(None, {"a": "oblique", "b": "oblique"}) == "oblique"
    assert resolve_camera(None, {}) == "front" and resolve_camera("oblique", {}) == "oblique"
    with pytest.raises(ValueError, match="trained on different cameras"):
        resolve_camera(None, {"a": "oblique", "b": "front"})
    with pytest.raises(ValueError, match="camera 'front' was asked for, but the models were trained on 'oblique'"):
        resolve_camera("front", {"a": "oblique"})

    config.camera = "oblique"
    model_dir = tmp_path / "wm"
    randomize_(VJEPA2WorldModel(config), seed=0).save_pretrained(model_dir)
    out = tmp_path / "eval"
    argv = ["--model", f"tiny={model_dir}", "--tasks", "reach", "--episodes", "1", "--samples", "8", "--top-k", "2",
            "--iterations", "1", "--out", str(out), "--no-progress"]
    with pytest.raises(ValueError, match="camera 'front' was asked for"):
        eval_planning.main([*argv, "--camera", "front"])
    assert not out.exists()
    result = eval_planning.main(argv)
    records = {r["method"]: r for r in map(json.loads, (out / "episodes.jsonl").read_text().splitlines())}
    assert result["camera"] == "oblique" and {r["camera"] for r in records.values()} == {"oblique"}
    assert records["oracle"]["success"] and records["tiny"]["settings"]["camera"] == "oblique"
    # The goal image was rendered through the oblique camera: the front view of the same scene differs.
    oblique = simulator(64, "default", "oblique")
    setup = make_setup(oblique, TASKS["reach"], seed=0, index=0)
    oblique.set_state(setup.start_state)
    env.set_state(setup.start_state)
    assert np.abs(oblique.render().astype(int) - env.render()).mean() > 10
    with pytest.raises(ValueError, match=r"holds episodes rendered through camera \['oblique'\], this run renders"):
        eval_planning.main(["--methods", "oracle", "--tasks", "reach", "--episodes", "1", "--out", str(out),
                            "--no-progress"])
