"""Goal-conditioned behaviour cloning: the policy (shapes, gradients, fitting, bad input, save/load), hindsight goal
samples, training on the shared loop with exact resume, and the policy closing the loop in the simulator through
`scripts/eval_planning.py --bc`. The play dataset here is written by the test: a square moved by the actions, with
Fetch's 4-D states and actions and 64 px frames, so the tiny world model's encoder reads it."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from vjepa2_oracle import randomize_
from vjepa_vlm.data.ac_dataset import ACClipDataset, ACDataArgs
from vjepa_vlm.data.lerobot_format import LeRobotWriter, vector_feature, video_feature
from vjepa_vlm.eval.planning import TASKS, BCPolicy, make_setup, run_episode
from vjepa_vlm.scripts import eval_planning
from vjepa_vlm.scripts.eval_planning import simulator
from vjepa_vlm.train.bc_trainer import HindsightGoalDataset, load_recipe, train
from vjepa_vlm.train.checkpoint import latest_checkpoint
from vjepa_vlm.train.train_bc import TINY_RECIPE
from vjepa_vlm.vision.bc_policy import (
    BCPolicyConfig,
    GoalConditionedPolicy,
    bc_loss,
    load_policy,
    save_policy,
)

from vjepa_vlm import VJEPA2WorldModel, VJEPA2WorldModelConfig

torch.set_num_threads(1)

CAMERA = "observation.images.front"
FPS, SIZE, LENGTH, EPISODES = 10, 64, 12, 3


def _policy(**overrides) -> GoalConditionedPolicy:
    values = {"tokens": 6, "feature_dim": 5, "state_dim": 4, "action_dim": 4, "token_dim": 3, "hidden_size": 16,
                  "action_scale": (5, 5, 5, 5)}
    return GoalConditionedPolicy(BCPolicyConfig(**{**values, **overrides}))


def _inputs(batch=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 6, 5, generator=generator), torch.randn(batch, 6, 5, generator=generator),
            torch.randn(batch, 4, generator=generator), 5 * torch.rand(batch, 4, generator=generator) - 2.5)


def test_policy_shapes_gradients_and_it_fits_a_batch():
    torch.manual_seed(0)
    policy = _policy()
    features, goals, states, actions = _inputs()
    predicted = policy(features, goals, states)
    assert predicted.shape == (8, 4) and torch.isfinite(predicted).all()
    loss = bc_loss(predicted, actions, policy.action_scale)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.parameters())
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-2)
    for _ in range(150):
        optimizer.zero_grad()
        bc_loss(policy(features, goals, states), actions, policy.action_scale).backward()
        optimizer.step()
    assert bc_loss(policy(features, goals, states), actions, policy.action_scale) < 0.2 * loss.item()


def test_policy_refuses_bad_shapes_and_configs(tmp_path):
    policy = _policy()
    features, goals, states, _ = _inputs()
    with pytest.raises(ValueError, match=r"goal_features must be \(B, 6, 5\), got \(8, 7, 5\)"):
        policy(features, torch.zeros(8, 7, 5), states)
    with pytest.raises(ValueError, match=r"states must be \(B, state_dim=4\), got \(8, 7\)"):
        policy(features, goals, torch.zeros(8, 7))
    with pytest.raises(ValueError, match="action_scale must hold 4 positive numbers"):
        _policy(action_scale=(1.0, 1.0))
    with pytest.raises(FileNotFoundError, match="not a saved behaviour-cloning policy"):
        load_policy(tmp_path)


def test_policy_save_load_round_trip(tmp_path):
    policy = _policy().eval()
    save_policy(policy, tmp_path / "p", {"world_model": "wm"})
    loaded, extra = load_policy(tmp_path / "p")
    features, goals, states, _ = _inputs()
    assert extra == {"world_model": "wm"} and loaded.config == policy.config
    assert torch.equal(loaded(features, goals, states), policy(features, goals, states))


def _episode(rng):
    """A bright square moved by the first two action dims; the state holds its position."""
    actions = rng.uniform(-1, 1, size=(LENGTH, 4)).astype(np.float32)
    position, frames, states = np.array([24.0, 24.0]), [], []
    for action in actions:
        frame = np.full((SIZE, SIZE, 3), 20, dtype=np.uint8)
        top, left = np.clip(position, 0, SIZE - 12).astype(int)
        frame[top : top + 12, left : left + 12] = 220
        frames.append(frame)
        states.append(np.r_[position / SIZE, 0.0, 0.0].astype(np.float32))
        position = position + 3 * action[:2]
    return {CAMERA: np.stack(frames)}, {"observation.state": np.stack(states), "action": actions}


@pytest.fixture(scope="module")
def play(tmp_path_factory):
    root = tmp_path_factory.mktemp("play")
    features = {CAMERA: video_feature(SIZE, SIZE, fps=FPS), "observation.state": vector_feature(list("xyzg")),
                "action": vector_feature(["dx", "dy", "dz", "grip"])}
    writer = LeRobotWriter(root, fps=FPS, features=features, robot_type="fetch")
    rng = np.random.default_rng(0)
    for _ in range(EPISODES):
        writer.add_episode(*_episode(rng), task="play")
    writer.finish()
    world_model = tmp_path_factory.mktemp("wm") / "model"
    randomize_(VJEPA2WorldModel(VJEPA2WorldModelConfig.from_preset("vjepa2-ac-tiny")), seed=0).save_pretrained(world_model)
    return root, world_model


def _data_args(root) -> ACDataArgs:
    return ACDataArgs(root=str(root), camera_key=CAMERA, state_dim=4, action_dim=4, num_frames=2, fps=5.0,
                      crop_size=SIZE, cache_features=True, batch_size=4)


def test_hindsight_goals_lie_later_in_the_same_episode_with_the_summed_next_action(play):
    root, _ = play
    clips = ACClipDataset(_data_args(root))
    with pytest.raises(ValueError, match="needs cached features"):
        HindsightGoalDataset(clips, 3)
    clips.build_feature_cache(lambda frames: frames.flatten(2)[:, :, :8].unsqueeze(2).repeat(1, 1, 2, 1))
    dataset = HindsightGoalDataset(clips, max_goal_steps=3, seed=1)
    seen_steps = set()
    for position in range(40):
        sample = dataset[position]
        assert all(torch.equal(sample[k], dataset[position][k]) for k in ("features", "goal_features", "actions"))
        episode, start, steps = sample["episode"], sample["start"], sample["goal_steps"]
        frames = clips.features[episode]
        assert 1 <= steps <= 3 and start + 2 * steps < LENGTH
        assert torch.equal(frames[start], sample["features"])
        assert torch.equal(frames[start + 2 * steps], sample["goal_features"])
        rows = clips.reader.episode(episode, frames=False)
        assert np.allclose(sample["actions"].numpy(), rows.action[start : start + 2].sum(0))
        assert np.allclose(sample["states"].numpy(), rows.state[start])
        seen_steps.add(steps)
    assert seen_steps == {1, 2, 3}


def _config(root, world_model, run_dir, **overrides):
    values = [f"bc.world_model={world_model}", f"data.root={root}", f"checkpoint.dir={run_dir}", "data.batch_size=4",
              "data.num_episodes=null", "optim.warmup_steps=2", "optim.decay_steps=2", "steps=6",
              "checkpoint.every_steps=2", "bc.hidden_size=16", "log_every=0"]
    return load_recipe(TINY_RECIPE, values + [f"{k}={v}" for k, v in overrides.items()])


def test_training_writes_a_loadable_policy_and_resumes_exactly(play, tmp_path):
    root, world_model = play
    with pytest.raises(ValueError, match="bc.world_model .* is not a saved VJEPA2WorldModel folder"):
        train(_config(root, tmp_path / "nothing", tmp_path / "bad"))
    whole = train(_config(root, world_model, tmp_path / "whole"))
    train(_config(root, world_model, tmp_path / "split", stop_at_step=4))
    split = train(_config(root, world_model, tmp_path / "split"))
    last = [latest_checkpoint(run) / "policy" for run in (whole, split)]
    assert [p.parent.name for p in last] == ["step_00000006"] * 2
    weights = [load_file(p / "model.safetensors") for p in last]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    policy, extra = load_policy(last[0])
    assert policy.config.tokens == VJEPA2WorldModel.from_pretrained(world_model).tokens_per_frame
    assert extra["world_model"] == str(world_model) and extra["frame_stride"] == 2
    rows = [json.loads(line) for line in (whole / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 7)) and all(np.isfinite(r["loss"]) for r in rows)


def test_bc_policy_closes_the_loop_and_eval_planning_runs_it(play, tmp_path):
    root, world_model = play
    policy_dir = latest_checkpoint(train(_config(root, world_model, tmp_path / "run", steps=4))) / "policy"
    model = VJEPA2WorldModel.from_pretrained(world_model).eval()
    env = simulator(64, "default")
    setup = make_setup(env, TASKS["reach"], seed=0, index=0)
    record = run_episode(env, setup, BCPolicy(load_policy(policy_dir)[0], model))
    assert record["error"] is None and len(record["distances"]) == TASKS["reach"].steps + 1
    assert record["distances"][-1] != record["distances"][0]  # it moved the arm
    wrong = _policy(tokens=model.tokens_per_frame)
    with pytest.raises(ValueError, match="not the encoder it was trained on"):
        BCPolicy(wrong, model)
    out = tmp_path / "eval"
    eval_planning.main(["--bc", f"bc={policy_dir}", "--methods", "bc", "--tasks", "reach", "--episodes", "1",
                        "--out", str(out), "--no-progress"])
    (line,) = (out / "episodes.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert record["method"] == "bc" and record["error"] is None and record["settings"] is None
    with pytest.raises(ValueError, match=r"--bc label 'bc' is taken"):
        eval_planning.main(["--bc", f"bc={policy_dir}", "--bc", f"bc={policy_dir}", "--out", str(out)])


def test_the_oblique_recipe_is_the_tiny_recipe_seen_through_the_oblique_camera():
    # BENCHMARKS planning round 4: BC on the play and the frozen encoder the oblique world model was trained on.
    tiny = load_recipe(TINY_RECIPE, ["bc.world_model=WM"])
    oblique = load_recipe(TINY_RECIPE.with_name("bc_tiny_oblique.yaml"))
    assert oblique.bc.world_model == "runs/ac_tiny_residual_3000_oblique/checkpoints/step_00003000/model"
    assert (oblique.data.root, oblique.data.camera_key) == ("runs/play_oblique", "observation.images.oblique")
    assert oblique.checkpoint.dir == "runs/bc_tiny_oblique"
    same = replace(oblique, bc=replace(oblique.bc, world_model="WM"), checkpoint=replace(oblique.checkpoint, dir=tiny.checkpoint.dir),
                   data=replace(oblique.data, root=tiny.data.root, camera_key=tiny.data.camera_key))
    assert same == tiny
