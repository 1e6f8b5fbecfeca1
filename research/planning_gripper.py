"""Does the world model's energy react to the gripper command where the gripper matters? (Fetch, issue 20)

    python research/planning_gripper.py --model WM_DIR --episodes 20 --play runs/play_oblique --out gripper.json

The object tasks need the planner to close the fingers on the block (grasp, pick-and-place) or to keep them closed
(reach-with-object starts holding the block, and the planner drops it in every episode). This study asks the model
directly, in the two situations where it matters, with the published episodes' seeded scenes and goal images:

    around_block   a grasp episode's start, the oracle has brought the open fingers down around the block; goal: the
                   grasp goal image (block lifted in the closed fingers)
    holding        a reach-with-object episode's start (block held, lifted); goal: its goal image (block carried)
    closing_stage  the same open fingers around the block; goal: `grasp_subgoal3`'s middle goal image (the fingers
                   closed on the block, still on the table), the stage in which that task's planner has to squeeze

For each, candidate actions are every gripper command of `GRIPPERS` (closing, none, opening; summed over the agent
step, as the planner's) with the arm still and with the arm moving towards the goal (lift 10 cm, or the offset to
the carried goal clipped to the planner's box), each repeated for `STEPS` agent steps. The model's energy (L1 to the
goal features, as the planner scores) of its rollout is set against the same energy of the frames the simulator
renders after executing the same actions: the control that says whether the gripper's effect is visible in the
pictures at all at this resolution and camera. Reported per situation and step: mean energy per candidate, how
often closing scores below opening (model vs simulator; also with the arm moving alone, where closing means the
block comes along), the energy gap between opening and closing next to the gap the arm motion makes, and how far
apart the features of closing and opening are (model vs simulator).

`--play` adds how often the play data the model learned from shows the gripper closing on the block, holding it
lifted, and opening while holding it (agent steps of 5 recorded steps, as the model sees them).
Nothing here plans or trains; about 1 s per episode.
"""

from __future__ import annotations

import argparse
import glob
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
    LIFT_M,
    OPEN,
    TASKS,
    check_world_model,
    execute,
    frames_to_model,
    make_setup,
    model_camera,
    pick_waypoints,
    run_waypoints,
)
from vjepa_vlm.scripts.eval_planning import simulator
from vjepa_vlm.vision.planner import l1_energy

from vjepa_vlm import VJEPA2WorldModel

# Summed gripper commands of one agent step: squeeze, none, open (the planner's range is +-FRAME_SKIP).
GRIPPERS = (CLOSE * FRAME_SKIP, 0.0, OPEN * FRAME_SKIP)
MOTIONS = ("still", "towards_goal")
STEPS = 3
SITUATIONS = ("around_block", "holding", "closing_stage")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a saved VJEPA2WorldModel folder")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--first-episode", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0, help="episode draws, as eval_planning --seed")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--play", default=None, help="a play recording (record_play.py) to count gripper events in")
    parser.add_argument("--out", required=True, help="output JSON")
    return parser.parse_args(argv)


def situation(env, name: str, seed: int, index: int):
    """Put the simulator in the situation; returns (goal frame, arm motion towards the goal in action units)."""
    if name == "around_block":
        setup = make_setup(env, TASKS["grasp"], seed, index)
        env.set_state(setup.start_state)
        run_waypoints(env, pick_waypoints(env.block_pose()[:3].astype(np.float64))[:2])
        lift = np.array([0.0, 0.0, 0.1]) / ACTION_SCALE_M
        return setup.goal_frames[-1], lift
    if name == "closing_stage":
        setup = make_setup(env, TASKS["grasp_subgoal3"], seed, index)
        env.set_state(setup.start_state)
        run_waypoints(env, setup.phases[0].waypoints)
        return setup.goal_frames[1], (setup.goal_gripper[1] - env.state()[:3]) / ACTION_SCALE_M
    setup = make_setup(env, TASKS["reach_with_object"], seed, index)
    env.set_state(setup.start_state)
    return setup.goal_frames[-1], (setup.goal_gripper[-1] - env.state()[:3]) / ACTION_SCALE_M


def candidates(towards: np.ndarray) -> list[tuple[float, str, np.ndarray]]:
    """(gripper, motion, summed action) for every gripper command and motion; motion in the planner's box."""
    box = FETCH_CEM.max_norm
    moves = {"still": np.zeros(3), "towards_goal": np.clip(towards, -box, box)}
    return [(g, m, np.r_[moves[m], g].astype(np.float32)) for g in GRIPPERS for m in MOTIONS]


@torch.no_grad()
def imagined(model, features: torch.Tensor, state: np.ndarray, actions: np.ndarray) -> torch.Tensor:
    """`(K, STEPS, N, D)` the model's rollout of each action `(K, 4)` repeated STEPS times from one frame, as the
    planner imagines it."""
    repeated = torch.from_numpy(actions).float().unsqueeze(1).expand(-1, STEPS, -1)
    states = torch.from_numpy(state).float().unsqueeze(0)
    return model.imagine(features, states, repeated, torch.tensor(FETCH_STATE_SCALE))


def simulated(env, model, crop: int, actions: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """`(K, STEPS, N, D)` the encoded frames the simulator renders after each step of each repeated action, and
    `(K, STEPS)` the block's height above the table then; the simulator is back at the start afterwards."""
    start, frames, lifts = env.get_state(), [], []
    for action in actions:
        env.set_state(start)
        for _ in range(STEPS):
            execute(env, action)
            frames.append(env.render())
            lifts.append(float(env.block_pose()[2] - env.table_height))
    env.set_state(start)
    features = model.encode_frames(frames_to_model(np.stack(frames), crop))[0]
    return features.view(len(actions), STEPS, *features.shape[1:]), np.array(lifts).reshape(len(actions), STEPS)


def summarize(rows: list[dict]) -> dict:
    """Per situation and step: mean energy per candidate (model, simulator), share of episodes where closing scores
    below opening, mean energy gaps (opening - closing; arm still - arm moving), feature distances."""
    summary = {}
    for name in SITUATIONS:
        mine = [row for row in rows if row["situation"] == name]
        if not mine:
            continue
        per_step = []
        for step in range(STEPS):
            cell = {}
            for source in ("model", "simulator"):
                energy = np.array([[row[source]["energy"][k][step] for k in range(len(row["candidates"]))] for row in mine])
                table = {f"{c['gripper']:+g}/{c['motion']}": float(energy[:, k].mean())
                         for k, c in enumerate(mine[0]["candidates"])}
                index = {(c["gripper"], c["motion"]): k for k, c in enumerate(mine[0]["candidates"])}
                close, open_ = GRIPPERS[0], GRIPPERS[-1]
                gripper_gap = np.stack([energy[:, index[open_, m]] - energy[:, index[close, m]] for m in MOTIONS], 1)
                motion_gap = np.stack([energy[:, index[g, "still"]] - energy[:, index[g, "towards_goal"]] for g in GRIPPERS], 1)
                cell[source] = {
                    "mean_energy": table,
                    "share_closing_below_opening": float((gripper_gap > 0).mean()),
                    "mean_gap_open_minus_close": float(gripper_gap.mean()),
                    # With the arm moving: the block carried (or lifted) in closed fingers against left behind.
                    "share_closing_below_opening_moving": float((gripper_gap[:, 1] > 0).mean()),
                    "mean_gap_open_minus_close_moving": float(gripper_gap[:, 1].mean()),
                    "mean_gap_still_minus_moving": float(motion_gap.mean()),
                    "mean_feature_distance_open_vs_close": float(np.mean([row[source]["open_vs_close"][step] for row in mine])),
                }
            cell["block_lift_m"] = {f"{c['gripper']:+g}/{c['motion']}": float(np.mean([row["lift"][k][step] for row in mine]))
                                    for k, c in enumerate(mine[0]["candidates"])}
            per_step.append(cell)
        summary[name] = {"episodes": len(mine), "steps": per_step}
    return summary


def play_gripper_events(root: str) -> dict:
    """Agent steps (5 recorded steps, summed commands) of a play recording in which the gripper closes near the
    block (summed command <= -2.5, fingers within 3 cm of the block), holds it lifted (block >= LIFT_M above its
    resting height at both ends), or opens (>= +2.5) while holding it."""
    import pandas as pd

    files = sorted(glob.glob(str(Path(root, "data", "*", "*.parquet"))))
    if not files:
        raise FileNotFoundError(f"--play {root}: no data/*/*.parquet (a record_play.py recording)")
    data = pd.concat(map(pd.read_parquet, files))
    counts = dict.fromkeys(("agent_steps", "closing_near_block", "holding_lifted", "opening_while_holding"), 0)
    for _, episode in data.groupby("episode_index"):
        action, state = np.stack(episode["action"]), np.stack(episode["observation.state"])
        block = np.stack(episode["eval.block_pose"])[:, :3]
        rest = block[0, 2]
        for start in range(0, len(episode) - FRAME_SKIP, FRAME_SKIP):
            end = start + FRAME_SKIP
            gripper = action[start:end, 3].sum()
            near = np.linalg.norm(state[start, :3] - block[start]) < 0.03
            lifted = block[start, 2] - rest >= LIFT_M and block[end, 2] - rest >= LIFT_M
            counts["agent_steps"] += 1
            counts["closing_near_block"] += int(gripper <= -2.5 and near)
            counts["holding_lifted"] += int(lifted)
            counts["opening_while_holding"] += int(gripper >= 2.5 and block[start, 2] - rest >= LIFT_M)
    return {**counts, "episodes": int(data["episode_index"].nunique()),
            "share": {k: v / counts["agent_steps"] for k, v in counts.items() if k != "agent_steps"}}


def main(argv=None) -> dict:
    args = parse_args(argv)
    model = VJEPA2WorldModel.from_pretrained(args.model).eval()
    check_world_model(model, args.size, "--model")
    camera = model_camera(model, "--model")
    crop = model.config.predictor_config.crop_size
    env = simulator(args.size, "default", camera)
    rows = []
    for name in SITUATIONS:
        for index in range(args.first_episode, args.first_episode + args.episodes):
            goal_frame, towards = situation(env, name, args.seed, index)
            tried = candidates(towards)
            actions = np.stack([a for _, _, a in tried])
            with torch.no_grad():
                goal = model.encode_frames(frames_to_model(goal_frame[None], crop))[0, 0]
                now = model.encode_frames(frames_to_model(env.render()[None], crop))[0]
                sources = {"model": imagined(model, now.unsqueeze(0), env.state(), actions)}
                sources["simulator"], lift = simulated(env, model, crop, actions)
            close = [k for k, (g, m, _) in enumerate(tried) if g == GRIPPERS[0]]
            open_ = [k for k, (g, m, _) in enumerate(tried) if g == GRIPPERS[-1]]
            row = {"situation": name, "episode": index,
                   "candidates": [{"gripper": g, "motion": m, "action": a.round(3).tolist()} for g, m, a in tried],
                   "lift": lift.round(4).tolist()}
            for source, features in sources.items():
                energy = torch.stack([l1_energy(features[:, step], goal) for step in range(STEPS)], 1)
                distance = [(features[open_, step] - features[close, step]).abs().mean().item() for step in range(STEPS)]
                row[source] = {"energy": energy.tolist(), "open_vs_close": distance}
            rows.append(row)
    result = {"model": args.model, "camera": camera, "grippers": GRIPPERS, "steps": STEPS,
              "settings": {k: v for k, v in vars(args).items() if k not in ("model", "out")},
              "summary": summarize(rows), "episodes": rows}
    if args.play:
        result["play"] = play_gripper_events(args.play)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    for name, cell in result["summary"].items():
        for step, numbers in enumerate(cell["steps"], 1):
            for source in ("model", "simulator"):
                n = numbers[source]
                print(f"{name} step {step} {source:9s}: closing below opening in {n['share_closing_below_opening']:.0%} "
                      f"(arm moving: {n['share_closing_below_opening_moving']:.0%}), "
                      f"gap open-close {n['mean_gap_open_minus_close']:+.4f} vs still-moving "
                      f"{n['mean_gap_still_minus_moving']:+.4f}, features open vs close {n['mean_feature_distance_open_vs_close']:.4f}")
    if args.play:
        print("play:", json.dumps(result["play"]))
    return result


if __name__ == "__main__":
    os.environ.setdefault("MUJOCO_GL", "egl")
    main()
