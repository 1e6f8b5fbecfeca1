"""Why does push fail? The world model's energy against the simulator's in two push situations (Fetch, issue 20)

    python research/planning_push.py --model WM_DIR --episodes 20 --out push.json

Push is 0/40 for the planner in every configuration. This study asks the model, with the published push episodes'
seeded scenes and goal images (block on the table where the oracle pushed it, closed fingers just behind it), two
questions the closed loop mixes up:

    start          the episode's start. Does the goal image's energy prefer moving the arm straight towards where
                   it ends in the goal image (`to_arm_goal`: the greedy way, past the block) over the way a push
                   begins (`to_behind`: towards the oracle's first waypoint, above the far side of the block)?
                   A horizon-1 planner takes whichever scores lower after one step.
    behind_block   the oracle has brought the closed fingers down behind the block. Does the model predict the
                   block moving when the arm pushes it (`push`: along the push line to the oracle's end point),
                   and does the goal prefer that over bringing the arm to the same end point over the block
                   (`over`: up 10 cm, across, down; the block stays) or moving the arm away (`away`)?

Each candidate is a sequence of `STEPS` agent actions (closed fingers, as the oracle pushes; motions split evenly
over the steps, each clipped to the planner's box). The model's rollout energy (L1 to the goal features, as the
planner scores) is set against the energy of the frames the simulator renders after the same actions, and the
simulator's block displacement says what each candidate really did. Reported per situation and step: mean energy
per candidate, how often one candidate scores below another (model vs simulator), and how far apart the features
of `push` and `over` are (model vs simulator: the part of the block's motion the model predicts).
Nothing here plans or trains; about 1 s per episode.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch
from vjepa_vlm.data.robot_sim import ACTION_SCALE_M
from vjepa_vlm.eval.planning import (
    CLOSE,
    FETCH_CEM,
    FETCH_STATE_SCALE,
    FRAME_SKIP,
    TASKS,
    check_world_model,
    execute,
    frames_to_model,
    make_setup,
    model_camera,
    run_waypoints,
)
from vjepa_vlm.scripts.eval_planning import simulator
from vjepa_vlm.vision.planner import l1_energy

from vjepa_vlm import VJEPA2WorldModel

STEPS = 3
LIFT_UNITS = 2.0  # 10 cm: the fingers clear the block
SITUATIONS = {"start": ("still", "to_arm_goal", "to_behind"), "behind_block": ("still", "push", "over", "away")}
# (situation, better, worse): the comparisons reported, "better" being what a push needs.
COMPARISONS = (("start", "to_behind", "to_arm_goal"), ("behind_block", "push", "over"),
               ("behind_block", "push", "still"), ("behind_block", "push", "away"))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a saved VJEPA2WorldModel folder")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--first-episode", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0, help="episode draws, as eval_planning --seed")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--out", required=True, help="output JSON")
    return parser.parse_args(argv)


def straight(offset_m: np.ndarray) -> np.ndarray:
    """`(STEPS, 3)` motions covering `offset_m` in equal steps, each clipped to the planner's box (action units)."""
    box = FETCH_CEM.max_norm
    return np.repeat(np.clip(offset_m / ACTION_SCALE_M / STEPS, -box, box)[None], STEPS, 0)


def sequences(names, motions: dict[str, np.ndarray]) -> np.ndarray:
    """`(K, STEPS, 4)` the candidates' actions with the fingers squeezed, in the order of `names`."""
    grip = np.full((STEPS, 1), CLOSE * FRAME_SKIP)
    return np.stack([np.c_[motions[name], grip] for name in names]).astype(np.float32)


def situation(env, name: str, seed: int, index: int):
    """Put the simulator in the situation; returns (goal frame, `(K, STEPS, 4)` candidate actions, goal block)."""
    setup = make_setup(env, TASKS["push"], seed, index)
    env.set_state(setup.start_state)
    waypoints = setup.phases[0].waypoints
    arm = env.state()[:3].astype(np.float64)
    still = np.zeros((STEPS, 3))
    if name == "start":
        motions = {"still": still, "to_arm_goal": straight(setup.goal_gripper[-1] - arm),
                   "to_behind": straight(waypoints[0].target - arm)}
    else:
        run_waypoints(env, waypoints[:2])
        arm = env.state()[:3].astype(np.float64)
        push = straight(waypoints[2].target - arm)
        over = push.copy()
        over[0, 2] += LIFT_UNITS
        over[-1, 2] -= LIFT_UNITS
        motions = {"still": still, "push": push, "over": over, "away": -push}
    return setup.goal_frames[-1], sequences(SITUATIONS[name], motions), setup.goal_block[-1]


@torch.no_grad()
def imagined(model, features: torch.Tensor, state: np.ndarray, actions: np.ndarray) -> torch.Tensor:
    """`(K, STEPS, N, D)` the model's rollout of each action sequence `(K, STEPS, 4)` from one frame, as the planner
    imagines it."""
    states = torch.from_numpy(state).float().unsqueeze(0)
    return model.imagine(features, states, torch.from_numpy(actions).float(), torch.tensor(FETCH_STATE_SCALE))


@torch.no_grad()
def simulated(env, model, crop: int, actions: np.ndarray, goal_block: np.ndarray):
    """`(K, STEPS, N, D)` the encoded frames the simulator renders after each step of each sequence, and `(K, STEPS)`
    how far the block has moved from where it was and how far it is from its goal then; the simulator is back at
    the start afterwards."""
    start, frames, moved, to_goal = env.get_state(), [], [], []
    block = env.block_pose()[:3].copy()
    for sequence in actions:
        env.set_state(start)
        for action in sequence:
            execute(env, action)
            frames.append(env.render())
            moved.append(float(np.linalg.norm(env.block_pose()[:3] - block)))
            to_goal.append(float(np.linalg.norm(env.block_pose()[:3] - goal_block)))
    env.set_state(start)
    features = model.encode_frames(frames_to_model(np.stack(frames), crop))[0]
    shape = (len(actions), STEPS)
    return (features.view(*shape, *features.shape[1:]), np.array(moved).reshape(shape),
            np.array(to_goal).reshape(shape))


def summarize(rows: list[dict]) -> dict:
    """Per situation and step: mean energy per candidate (model, simulator), how often each comparison's better
    candidate scores lower, the push - over feature distance, and the simulator's block displacement."""
    summary = {}
    for name, names in SITUATIONS.items():
        mine = [row for row in rows if row["situation"] == name]
        if not mine:
            continue
        per_step = []
        for step in range(STEPS):
            cell = {}
            for source in ("model", "simulator"):
                energy = np.array([[row[source]["energy"][k][step] for k in range(len(names))] for row in mine])
                cell[source] = {"mean_energy": dict(zip(names, energy.mean(0).tolist()))}
                for situation_name, better, worse in COMPARISONS:
                    if situation_name == name:
                        gap = energy[:, names.index(worse)] - energy[:, names.index(better)]
                        cell[source][f"share_{better}_below_{worse}"] = float((gap > 0).mean())
                        cell[source][f"mean_gap_{worse}_minus_{better}"] = float(gap.mean())
                if name == "behind_block":
                    cell[source]["feature_distance_push_vs_over"] = float(np.mean([row[source]["push_vs_over"][step]
                                                                                   for row in mine]))
            cell["block_moved_m"] = {n: float(np.mean([row["block_moved"][k][step] for row in mine]))
                                     for k, n in enumerate(names)}
            cell["block_to_goal_m"] = {n: float(np.mean([row["block_to_goal"][k][step] for row in mine]))
                                       for k, n in enumerate(names)}
            per_step.append(cell)
        summary[name] = {"episodes": len(mine), "steps": per_step}
    return summary


def main(argv=None) -> dict:
    args = parse_args(argv)
    model = VJEPA2WorldModel.from_pretrained(args.model).eval()
    check_world_model(model, args.size, "--model")
    camera = model_camera(model, "--model")
    crop = model.config.predictor_config.crop_size
    env = simulator(args.size, "default", camera)
    rows = []
    for name, names in SITUATIONS.items():
        for index in range(args.first_episode, args.first_episode + args.episodes):
            goal_frame, actions, goal_block = situation(env, name, args.seed, index)
            with torch.no_grad():
                goal = model.encode_frames(frames_to_model(goal_frame[None], crop))[0, 0]
                now = model.encode_frames(frames_to_model(env.render()[None], crop))[0]
            sources = {"model": imagined(model, now.unsqueeze(0), env.state(), actions)}
            sources["simulator"], moved, to_goal = simulated(env, model, crop, actions, goal_block)
            row = {"situation": name, "episode": index, "candidates": list(names), "actions": actions.round(3).tolist(),
                   "block_moved": moved.round(4).tolist(), "block_to_goal": to_goal.round(4).tolist()}
            for source, features in sources.items():
                energy = torch.stack([l1_energy(features[:, step], goal) for step in range(STEPS)], 1)
                row[source] = {"energy": energy.tolist()}
                if name == "behind_block":
                    push, over = names.index("push"), names.index("over")
                    row[source]["push_vs_over"] = [(features[push, step] - features[over, step]).abs().mean().item()
                                                   for step in range(STEPS)]
            rows.append(row)
    result = {"model": args.model, "camera": camera, "steps": STEPS,
              "settings": {k: v for k, v in vars(args).items() if k not in ("model", "out")},
              "summary": summarize(rows), "episodes": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    for name, cell in result["summary"].items():
        for step, numbers in enumerate(cell["steps"], 1):
            moved = ", ".join(f"{k} {v * 100:.1f}" for k, v in numbers["block_moved_m"].items())
            print(f"{name} step {step}: block moved (cm, simulator) {moved}")
            for source in ("model", "simulator"):
                shares = ", ".join(f"{k} {v:.0%}" for k, v in numbers[source].items() if k.startswith("share_"))
                extra = numbers[source].get("feature_distance_push_vs_over")
                extra = "" if extra is None else f", features push vs over {extra:.4f}"
                print(f"    {source:9s}: {shares}{extra}")
    return result


if __name__ == "__main__":
    os.environ.setdefault("MUJOCO_GL", "egl")
    main()
