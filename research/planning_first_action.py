"""Does the planner's first action point at the goal, axis by axis? (Fetch reach, issue 20)

    python research/planning_first_action.py --model WM_DIR --episodes 40 --init-std 1,2,40 --out first_action.json

For each reach episode of `scripts/eval_planning.py` (the same seeded start and goal image) the world model plans
one action from the start frame with CEM (`--samples`, `--top-k`, `--iterations`, horizon 1, the Fetch box; the
seed per episode and step as `PlannerPolicy` draws it), once per initial std. The planned (dx, dy, dz) is compared
with the true offset to the goal gripper position in action units (5 cm): cosine, norm, and per axis the
correlation over episodes and how often the signs agree. A closed-loop failure that "moves away" from the start
shows here as a first action pointing the wrong way; an axis the model reads poorly shows as a low correlation.
The same comparison on the camera's own axes (`camera_axes`: the image's right and up, and the line of sight,
along which one picture shows motion only as a change of size) tells what the view hides from what the model
misreads.
Nothing is executed: one plan per episode and std, so a 40-episode sweep costs about a closed-loop episode's
planning time per std. The start and goal frames are rendered through the camera the model was trained on.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from vjepa_vlm.data.robot_sim import ACTION_SCALE_M, CAMERAS
from vjepa_vlm.eval.planning import (
    FETCH_CEM,
    TASKS,
    PlannerPolicy,
    check_world_model,
    make_setup,
    model_camera,
)
from vjepa_vlm.scripts.eval_planning import simulator

from vjepa_vlm import VJEPA2WorldModel

AXES = ("dx", "dy", "dz")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a saved VJEPA2WorldModel folder")
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--first-episode", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0, help="episode draws and CEM noise, as eval_planning --seed")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--max-norm", type=float, default=FETCH_CEM.max_norm)
    parser.add_argument("--init-std", default="1", help="comma-separated initial stds of the CEM Gaussians")
    parser.add_argument("--out", required=True, help="output JSON")
    return parser.parse_args(argv)


def axis_agreement(planned: np.ndarray, true: np.ndarray) -> dict:
    """Per motion axis, over episodes `(E, 3)`: correlation of planned and true, and the share of equal signs;
    and per episode the cosine between both, summarized."""
    norms = np.linalg.norm(planned, axis=1) * np.linalg.norm(true, axis=1)
    cosine = (planned * true).sum(1) / np.maximum(norms, 1e-9)
    result = {
        "mean_cosine": float(cosine.mean()),
        "share_cosine_below_0": float((cosine < 0).mean()),
        "mean_planned_norm": float(np.linalg.norm(planned, axis=1).mean()),
        "mean_true_norm": float(np.linalg.norm(true, axis=1).mean()),
        "mean_planned": dict(zip(AXES, planned.mean(0).round(4).tolist())),
        "mean_true": dict(zip(AXES, true.mean(0).round(4).tolist())),
    }
    for axis, name in enumerate(AXES):
        result[name] = {"correlation": float(np.corrcoef(planned[:, axis], true[:, axis])[0, 1]),
                        "sign_agreement": float((np.sign(planned[:, axis]) == np.sign(true[:, axis])).mean())}
    return result


def camera_axes(camera: str) -> dict[str, np.ndarray]:
    """World-frame unit vectors of a named camera (MuJoCo's free camera: forward from azimuth and elevation)."""
    settings = CAMERAS[camera]
    azimuth, elevation = np.radians(settings["azimuth"]), np.radians(settings["elevation"])
    forward = np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)])
    up = np.array([-np.sin(elevation) * np.cos(azimuth), -np.sin(elevation) * np.sin(azimuth), np.cos(elevation)])
    return {"image_right": np.cross(forward, up), "image_up": up, "line_of_sight": forward}


def camera_agreement(planned: np.ndarray, true: np.ndarray, camera: str) -> dict:
    """`axis_agreement`'s per-axis numbers on the camera's axes, with the spread of the true offsets along each."""
    result = {}
    for name, axis in camera_axes(camera).items():
        p, t = planned @ axis, true @ axis
        result[name] = {"correlation": float(np.corrcoef(p, t)[0, 1]), "sign_agreement": float((np.sign(p) == np.sign(t)).mean()),
                        "true_std": float(t.std())}
    return result


def main(argv=None) -> dict:
    args = parse_args(argv)
    stds = [float(value) for value in args.init_std.split(",")]
    torch.manual_seed(args.seed)
    model = VJEPA2WorldModel.from_pretrained(args.model).eval()
    check_world_model(model, args.size, "--model")
    camera = model_camera(model, "--model")
    env = simulator(args.size, "default", camera)
    rows = []
    for index in range(args.first_episode, args.first_episode + args.episodes):
        setup = make_setup(env, TASKS["reach"], args.seed, index)
        env.set_state(setup.start_state)
        frame = env.render()
        true = (setup.goal_gripper[-1] - env.state()[:3]) / ACTION_SCALE_M
        for std in stds:
            cem = replace(FETCH_CEM, samples=args.samples, top_k=args.top_k, iterations=args.iterations,
                          max_norm=args.max_norm, init_std=std, seed=args.seed)
            policy = PlannerPolicy(model, cem)
            policy.reset(setup)
            planned = policy.act(env, frame, 0, 0)[:3]
            rows.append({"episode": index, "init_std": std, "planned": planned.round(4).tolist(),
                         "true": true.round(4).tolist()})
    summary = {}
    for std in stds:
        mine = [row for row in rows if row["init_std"] == std]
        planned, true = np.array([r["planned"] for r in mine]), np.array([r["true"] for r in mine])
        summary[str(std)] = {**axis_agreement(planned, true), "camera_axes": camera_agreement(planned, true, camera)}
    result = {"model": args.model, "camera": camera, "settings": {k: v for k, v in vars(args).items() if k not in ("model", "out")},
              "summary": summary, "episodes": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    for std, cell in summary.items():
        axes = ", ".join(f"{n} r={cell[n]['correlation']:+.2f} signs {cell[n]['sign_agreement']:.0%}" for n in AXES)
        print(f"init_std {std}: cosine {cell['mean_cosine']:.2f} (below 0: {cell['share_cosine_below_0']:.0%}), "
              f"|a| {cell['mean_planned_norm']:.2f} vs {cell['mean_true_norm']:.2f} units; {axes}")
        seen = ", ".join(f"{n} r={v['correlation']:+.2f} signs {v['sign_agreement']:.0%} (true std {v['true_std']:.2f})"
                         for n, v in cell["camera_axes"].items())
        print(f"    {camera} camera's axes: {seen}")
    return result


if __name__ == "__main__":
    os.environ.setdefault("MUJOCO_GL", "egl")
    main()
