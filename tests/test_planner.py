"""The CEM planner and MPC loop (`vjepa_vlm.vision.planner`) on a toy linear world whose optimal actions are known,
and `VJEPA2WorldModel.plan` on the tiny preset: one batched predictor call per iteration and step, checked inputs."""

import pytest
import torch
from vjepa2_oracle import randomize_
from vjepa_vlm.vision.planner import (
    CEMConfig,
    SubgoalSchedule,
    cem_plan,
    constrain,
    l1_energy,
    project_l1_ball,
    run_mpc,
    warm_start_mean,
)

from vjepa_vlm import VJEPA2WorldModel, VJEPA2WorldModelConfig


class LinearWorld:
    """Features after actions = start features + (sum of the actions) @ W on every token: the goal reached by a
    known action sum is a known optimum of the energy (its value there is 0)."""

    def __init__(self, action_dim: int = 4, tokens: int = 4, dim: int = 16, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.weight = torch.randn(action_dim, dim, generator=generator)
        self.start = torch.randn(tokens, dim, generator=generator)
        self.calls = []

    def features(self, start: torch.Tensor, action_sum: torch.Tensor) -> torch.Tensor:
        return start + (action_sum @ self.weight).unsqueeze(-2)

    def imagine_from(self, start: torch.Tensor):
        def imagine(candidates: torch.Tensor) -> torch.Tensor:
            self.calls.append(candidates.shape)
            return self.features(start, candidates.sum(1))

        return imagine


def test_cem_finds_the_known_optimal_action_in_one_batched_call_per_iteration():
    world = LinearWorld()
    target = torch.tensor([0.3, -0.5, 0.2, 0.7])
    goal = world.features(world.start, target)
    config = CEMConfig(samples=200, top_k=10, iterations=8, max_norm=1.0, init_std=0.5, seed=1)
    result = cem_plan(world.imagine_from(world.start), goal, 4, config)
    assert result.actions.shape == (1, 4)
    assert (result.actions[0] - target).abs().max().item() < 0.05
    assert world.calls == [torch.Size([200, 1, 4])] * 8 and result.imagine_calls == 8
    assert result.best_energy[-1] < 0.1 * result.best_energy[0]
    assert l1_energy(goal.unsqueeze(0), goal).item() == pytest.approx(0.0, abs=1e-6)


def test_a_longer_horizon_plans_a_sequence_whose_last_step_reaches_the_goal():
    world = LinearWorld(seed=3)
    target = torch.tensor([0.8, -0.6, 0.4, 0.0])  # beyond one step's box of 0.5: needs both steps
    goal = world.features(world.start, target)
    config = CEMConfig(samples=300, top_k=15, iterations=10, horizon=2, max_norm=0.5, init_std=0.5, seed=0)
    result = cem_plan(world.imagine_from(world.start), goal, 4, config)
    assert result.actions.shape == (2, 4)
    assert (result.actions.sum(0) - target).abs().max().item() < 0.08
    assert result.actions.abs().max().item() <= 0.5


def test_same_seed_same_plan_other_seed_other_plan():
    world = LinearWorld()
    goal = world.features(world.start, torch.tensor([0.1, 0.2, -0.3, 0.0]))
    plans = [cem_plan(world.imagine_from(world.start), goal, 4, CEMConfig(samples=20, iterations=2, seed=s)).actions
             for s in (5, 5, 6)]
    assert torch.equal(plans[0], plans[1]) and not torch.equal(plans[0], plans[2])


def test_constraints_box_l1_ball_and_the_gripper_on_its_own():
    box = CEMConfig(max_norm=0.05, gripper_dim=3)
    actions = torch.tensor([[0.2, -0.01, -0.3, 5.0]])
    assert torch.equal(constrain(actions, box), torch.tensor([[0.05, -0.01, -0.05, 1.0]]))
    ball = CEMConfig(constraint="l1", max_norm=0.075, gripper_dim=-1)
    projected = constrain(torch.tensor([[0.3, 0.0, 0.0, -0.4], [0.02, 0.01, 0.0, 0.5]]), ball)
    assert torch.allclose(projected[0], torch.tensor([0.075, 0.0, 0.0, -0.4]))
    assert torch.equal(projected[1], torch.tensor([0.02, 0.01, 0.0, 0.5]))  # inside the ball: unchanged
    assert torch.allclose(project_l1_ball(torch.tensor([1.0, 1.0]), 1.0), torch.tensor([0.5, 0.5]))
    # The projection is the nearest point of the ball: no random point of the ball is closer.
    point = torch.tensor([0.9, -0.4, 0.1])
    nearest = project_l1_ball(point, 0.5)
    assert nearest.abs().sum().item() == pytest.approx(0.5, abs=1e-6)
    others = torch.randn(2000, 3)
    others = others / others.abs().sum(1, keepdim=True) * 0.5 * torch.rand(2000, 1)
    assert (others - point).norm(dim=1).min().item() >= (nearest - point).norm().item() - 1e-6


def test_a_goal_outside_the_constraint_gives_the_nearest_allowed_action():
    world = LinearWorld(seed=2)
    goal = world.features(world.start, torch.tensor([0.4, 0.0, 0.0, 0.0]))
    config = CEMConfig(samples=200, iterations=8, constraint="l1", max_norm=0.1, init_std=0.3, seed=0)
    plan = cem_plan(world.imagine_from(world.start), goal, 4, config).actions[0]
    assert plan.abs().sum().item() <= 0.1 + 1e-6
    assert plan[0].item() > 0.07


def test_bad_settings_are_refused_with_the_field_named():
    with pytest.raises(ValueError, match="top_k=20 must not exceed samples=10"):
        CEMConfig(samples=10, top_k=20)
    with pytest.raises(ValueError, match="constraint must be one of"):
        CEMConfig(constraint="l2")
    with pytest.raises(ValueError, match="gripper_dim=5 is outside an action of 4 dims"):
        cem_plan(lambda a: torch.zeros(a.shape[0], 2, 3), torch.zeros(2, 3), 4, CEMConfig(samples=10, gripper_dim=5))
    with pytest.raises(ValueError, match=r"imagine must return \(10, 2, 3\)"):
        cem_plan(lambda a: torch.zeros(a.shape[0], 2, 4), torch.zeros(2, 3), 4, CEMConfig(samples=10))


def test_hold_gripper_keeps_the_executed_grip_where_the_energy_ignores_the_gripper():
    world = LinearWorld(seed=5)
    world.weight[3] = 0.0  # the gripper command changes nothing the energy sees
    goal = world.features(world.start, torch.tensor([0.2, -0.1, 0.1, 0.0]))
    base = CEMConfig(samples=100, top_k=10, iterations=3, max_norm=0.5, gripper_dim=3, gripper_range=(-5.0, 5.0))
    closed = torch.tensor([0.0, 0.0, 0.0, -5.0])
    held, cold = [], []
    for seed in range(10):
        config = CEMConfig(**{**base.__dict__, "seed": seed, "warm_start": "hold_gripper"})
        mean = warm_start_mean(config, 4, executed=closed)
        assert torch.equal(mean, torch.tensor([[0.0, 0.0, 0.0, -5.0]]))
        held.append(cem_plan(world.imagine_from(world.start), goal, 4, config, init_mean=mean).actions[0])
        cold.append(cem_plan(world.imagine_from(world.start), goal, 4, CEMConfig(**{**base.__dict__, "seed": seed})).actions[0])
    held, cold = torch.stack(held), torch.stack(cold)
    # Held: every plan keeps squeezing (the elites of samples clipped at -5 average near it); cold: a coin flip.
    assert held[:, 3].max().item() < -3.5 and cold[:, 3].abs().max().item() < 2.0
    # The motion is planned as before: the search over dx, dy, dz does not depend on where the gripper starts.
    assert (held[:, :3] - cold[:, :3]).abs().max().item() < 0.05
    # Nothing executed yet: the gripper starts at 0 like the cold search, and the command is kept in its range.
    assert torch.equal(warm_start_mean(config, 4), torch.zeros(1, 4))
    assert warm_start_mean(config, 4, executed=torch.tensor([0.0, 0.0, 0.0, -9.0]))[0, 3].item() == -5.0


def test_gripper_candidates_pick_the_grip_the_energy_prefers_where_motion_noise_hides_it():
    world = LinearWorld(seed=5)
    # The grip shows in its own feature channels, at a hundredth of the motion's scale: a separable, faint signal.
    world.weight[:3, 8:] = 0.0
    world.weight[3, :8] = 0.0
    world.weight[3] *= 0.01
    target = torch.tensor([0.2, -0.1, 0.1, -5.0])  # the goal is reached squeezing
    goal = world.features(world.start, target)
    base = CEMConfig(samples=100, top_k=10, iterations=3, max_norm=0.5, gripper_dim=3, gripper_range=(-5.0, 5.0))
    plain, searched = [], []
    for seed in range(10):
        plain.append(cem_plan(world.imagine_from(world.start), goal, 4, CEMConfig(**{**base.__dict__, "seed": seed})))
        world.calls.clear()
        config = CEMConfig(**{**base.__dict__, "seed": seed, "gripper_candidates": (-5.0, 5.0)})
        searched.append(cem_plan(world.imagine_from(world.start), goal, 4, config))
        # One more batched call: the plan's own grip and the two candidates, after the three iterations.
        assert world.calls == [torch.Size([100, 1, 4])] * 3 + [torch.Size([3, 1, 4])] and searched[-1].imagine_calls == 4
    plain_grip = torch.stack([r.actions[0, 3] for r in plain])
    # Without the search the grip is where the elites happen to average (they are chosen on motion); with it, the
    # squeeze, and the motion is the same plan's.
    assert plain_grip.min().item() > -4.0 and all(r.actions[0, 3].item() == -5.0 for r in searched)
    assert all(torch.equal(a.actions[0, :3], b.actions[0, :3]) for a, b in zip(plain, searched))
    # Where the grip changes nothing, the plan keeps its own (ties go to it).
    world.weight[3] = 0.0
    kept = cem_plan(world.imagine_from(world.start), goal, 4, CEMConfig(**{**base.__dict__, "gripper_candidates": (5.0,)}))
    assert torch.equal(kept.actions, cem_plan(world.imagine_from(world.start), goal, 4, base).actions)
    with pytest.raises(ValueError, match="gripper_candidates need gripper_dim"):
        CEMConfig(gripper_candidates=(1.0,))
    with pytest.raises(ValueError, match=r"gripper_candidates \[9.0\] are outside gripper_range \(-5.0, 5.0\)"):
        CEMConfig(gripper_dim=3, gripper_range=(-5.0, 5.0), gripper_candidates=(9.0, 5.0))


def test_shift_starts_from_the_previous_plan_one_step_on_and_none_is_the_cold_start():
    config = CEMConfig(samples=20, top_k=5, iterations=2, horizon=3, gripper_dim=3, warm_start="shift")
    previous = torch.arange(12.0).reshape(3, 4)
    expected = torch.tensor([[4.0, 5.0, 6.0, 7.0], [8.0, 9.0, 10.0, 11.0], [0.0, 0.0, 0.0, 0.0]])
    assert torch.equal(warm_start_mean(config, 4, previous_plan=previous), expected)
    assert torch.equal(warm_start_mean(config, 4), torch.zeros(3, 4))  # the episode's first step
    horizon_one = CEMConfig(samples=20, top_k=5, horizon=1, warm_start="shift")
    assert torch.equal(warm_start_mean(horizon_one, 4, previous_plan=torch.ones(1, 4)), torch.zeros(1, 4))
    assert warm_start_mean(CEMConfig(samples=20, top_k=5), 4, torch.ones(1, 4), torch.ones(4)) is None
    # A zero initial mean is the cold start, bit for bit; another mean moves the search (same seed, same noise).
    world = LinearWorld(seed=6)
    goal = world.features(world.start, torch.tensor([0.3, 0.0, -0.2, 0.1]))
    cold = CEMConfig(samples=30, top_k=5, iterations=1, horizon=3, max_norm=1.0, seed=2)
    plan = cem_plan(world.imagine_from(world.start), goal, 4, cold).actions
    assert torch.equal(cem_plan(world.imagine_from(world.start), goal, 4, cold, init_mean=torch.zeros(3, 4)).actions, plan)
    shifted = cem_plan(world.imagine_from(world.start), goal, 4, cold, init_mean=expected / 20).actions
    assert not torch.equal(shifted, plan)


def test_warm_start_settings_and_means_of_the_wrong_shape_are_refused():
    with pytest.raises(ValueError, match="warm_start must be one of"):
        CEMConfig(warm_start="previous")
    with pytest.raises(ValueError, match="'hold_gripper' needs gripper_dim"):
        CEMConfig(warm_start="hold_gripper")
    world = LinearWorld()
    with pytest.raises(ValueError, match=r"init_mean must be finite and \(horizon, action_dim\) = \(1, 4\), got \(2, 4\)"):
        cem_plan(world.imagine_from(world.start), world.start, 4, CEMConfig(samples=10), init_mean=torch.zeros(2, 4))
    with pytest.raises(ValueError, match="init_mean must be finite"):
        cem_plan(world.imagine_from(world.start), world.start, 4, CEMConfig(samples=10),
                 init_mean=torch.full((1, 4), float("nan")))
    shift = CEMConfig(samples=10, horizon=2, warm_start="shift")
    with pytest.raises(ValueError, match=r"previous_plan must be \(horizon, action_dim\) = \(2, 4\)"):
        warm_start_mean(shift, 4, previous_plan=torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r"executed must be \(action_dim,\) = \(4,\)"):
        warm_start_mean(CEMConfig(samples=10, gripper_dim=3, warm_start="hold_gripper"), 4, executed=torch.zeros(3))


def test_subgoal_schedule_and_mpc_reach_each_goal_in_turn():
    schedule = SubgoalSchedule(["grasp", "carry", "place"], [4, 10, 4])
    assert [schedule.index_at(s) for s in (0, 3, 4, 13, 14, 17, 30)] == [0, 0, 1, 1, 2, 2, 2]
    with pytest.raises(ValueError, match="one step count per goal"):
        SubgoalSchedule(["a"], [1, 2])

    world = LinearWorld(seed=4)
    goals = [torch.tensor([0.3, 0.3, 0.0, 0.0]), torch.tensor([-0.2, 0.4, 0.3, 0.0])]
    schedule = SubgoalSchedule([world.features(world.start, g) for g in goals], [4, 4])
    config = CEMConfig(samples=100, iterations=5, max_norm=0.15, init_std=0.3)
    position = {"sum": torch.zeros(4)}
    visited = []

    def plan(observation, goal, step):
        return cem_plan(world.imagine_from(observation), goal, 4, CEMConfig(**{**config.__dict__, "seed": step})).actions

    def execute(action):
        position["sum"] = position["sum"] + action
        return world.features(world.start, position["sum"])

    actions = run_mpc(plan, execute, world.start, schedule, on_step=lambda step, a, obs: visited.append(position["sum"]))
    assert len(actions) == 8 and all(a.abs().max() <= 0.15 + 1e-6 for a in actions)
    assert (visited[3] - goals[0]).abs().max().item() < 0.05  # first goal reached within its 4 steps
    assert (visited[7] - goals[1]).abs().max().item() < 0.05


@pytest.fixture(scope="module")
def model() -> VJEPA2WorldModel:
    return randomize_(VJEPA2WorldModel(VJEPA2WorldModelConfig.from_preset("vjepa2-ac-tiny")), seed=1).eval()


def test_world_model_plan_batches_every_candidate_and_integrates_imagined_states(model):
    seen = []
    hook = model.predictor.register_forward_hook(lambda module, args, out: seen.append((args[0].shape, args[2].clone())))
    features = model.encode_frames(torch.randn(1, 2, 3, 64, 64))[0]
    goal = model.encode_frames(torch.randn(1, 1, 3, 64, 64))[0, 0]
    states = torch.tensor([[1.0, 0.5, 0.4, 0.05], [1.1, 0.5, 0.4, 0.05]])
    config = CEMConfig(samples=12, top_k=3, iterations=2, horizon=2, gripper_dim=3, max_norm=1.0, seed=0)
    scale = torch.tensor([0.05, 0.05, 0.05, 0.0])
    try:
        result = model.plan(features, states, goal, config, state_scale=scale, past_actions=torch.zeros(1, 4))
    finally:
        hook.remove()
    assert result.actions.shape == (2, 4) and result.imagine_calls == 2
    # Two iterations x two imagined steps, each one call on all 12 candidates; the second step sees 3 frames.
    assert [shape[:2] for shape, _ in seen] == [(12, 2), (12, 3)] * 2
    rollout_states = seen[1][1]
    assert torch.equal(rollout_states[:, :2], states.expand(12, -1, -1))
    moved = rollout_states[:, 2] - states[-1]
    assert moved[:, 3].abs().max() == 0 and moved[:, :3].abs().max() > 0
    assert moved[:, :3].abs().max() <= 0.05 + 1e-6  # at most one box-limited action x 0.05 m per unit


def test_imagine_is_the_rollout_with_states_integrated_from_the_actions(model):
    features = model.encode_frames(torch.randn(1, 1, 3, 64, 64))[0]
    states = torch.tensor([[1.0, 0.5, 0.4, 0.05]])
    candidates = torch.randn(5, 3, 4)
    scale = torch.tensor([0.05, 0.05, 0.05, 0.0])
    with torch.no_grad():
        imagined = model.imagine(features, states, candidates, scale)
        # Written out: the state before step k is the observed one plus the scaled moves of the steps before it.
        by_hand_states = torch.cat((states.expand(5, 1, -1), states + (candidates[:, :2] * scale).cumsum(1)), dim=1)
        by_hand = model.rollout(features.expand(5, -1, -1, -1), candidates, by_hand_states, steps=3)
        held = model.imagine(features, states, candidates)
        held_by_hand = model.rollout(features.expand(5, -1, -1, -1), candidates, states.expand(5, 3, -1), steps=3)
    assert imagined.shape == (5, 3, 16, 96)
    torch.testing.assert_close(imagined, by_hand, rtol=0, atol=0)
    torch.testing.assert_close(held, held_by_hand, rtol=0, atol=0)


def test_world_model_plan_refuses_mismatched_inputs_before_planning(model):
    features = torch.zeros(1, 16, 96)  # the preset's 16-pixel patches: 4 x 4 tokens of a 64-pixel frame
    goal = torch.zeros(16, 96)
    config = CEMConfig(samples=4, top_k=2, iterations=1)
    with pytest.raises(ValueError, match=r"goal_features must be \(16, 96\) \(one frame at the world model's crop_size 64\)"):
        model.plan(features, torch.zeros(1, 4), torch.zeros(64, 96), config)
    with pytest.raises(ValueError, match=r"states must be \(1, state_dim=4\)"):
        model.plan(features, torch.zeros(1, 7), goal, config)
    with pytest.raises(ValueError, match=r"past_actions must be \(0, action_dim=4\)"):
        model.plan(features, torch.zeros(1, 4), goal, config, past_actions=torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r"features must be \(C, 16, 96\)"):
        model.plan(torch.zeros(1, 64, 96), torch.zeros(1, 4), goal, config)
