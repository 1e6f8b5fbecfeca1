"""Energy landscape of a world model over planar actions (paper Figure 9).

    python scripts/energy_landscape.py --model runs/ac_tiny/checkpoints/step_00000600/model --out runs/energy

For each of `--pairs` start/goal frame pairs (adjacent frames of a random planar trajectory recorded in the Fetch
simulator, one agent step apart, so the goal is reached by one known action), the one-step prediction from the
start frame is scored against the goal frame on a `--grid` x `--grid` grid of (dx, dy) in [-extent, extent]
(dz = 0, gripper command as recorded). Units are agent-step action units (1 = 5 cm).

The trajectory is rendered through the camera the model was trained on (its config.json's `camera`).
`--variant` renders the same trajectory in one of the planning evaluation's zero-shot scenes (e.g. `camera_shift`).
`--goal-offset K` takes the goal K steps after the start: the one-step minimum cannot reach it, and what counts is
its direction (`cosine` against the summed actions: what a planner's first move needs).

Written to `--out`: `energy_landscape.png` (heatmaps of the first pairs, dark = low energy, dx to the right and dy
up, the true action a white cross and the argmin a red circle) and `energy_landscape.json` (per pair: true action,
argmin, their distance and cosine, and the distance a random grid point has on average, the no-knowledge control).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from vjepa_vlm.data.robot_sim import VARIANTS, make_fetch_env
from vjepa_vlm.eval.inspection_plots import heatmap_panel, hstack
from vjepa_vlm.eval.planning import FRAME_SKIP, model_camera
from vjepa_vlm.eval.world_model_inspection import (
    action_grid,
    direction_cosine,
    encode_rendered,
    energy_landscape,
    random_guess_distance,
    random_planar_trajectory,
)

from vjepa_vlm.modeling_vjepa2_ac import VJEPA2WorldModel


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="folder of a VJEPA2WorldModel (a checkpoint's model/)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--pairs", type=int, default=8, help="start/goal pairs (landscapes averaged over them)")
    parser.add_argument("--grid", type=int, default=21, help="grid points per axis")
    parser.add_argument("--extent", type=float, default=2.0, help="grid half-width in action units (1 = 5 cm)")
    parser.add_argument("--magnitude", type=float, default=1.5, help="true actions: each of dx, dy uniform in +-this")
    parser.add_argument("--plots", type=int, default=4, help="pairs drawn in the PNG")
    parser.add_argument("--variant", default="default", choices=VARIANTS,
                        help="scene variant the pairs are rendered in (the planning evaluation's zero-shot scenes)")
    parser.add_argument("--goal-offset", type=int, default=1,
                        help="the goal is this many agent steps after the start; > 1 asks whether the one-step "
                             "minimum heads toward a goal it cannot reach in one step (the 'true' action is then "
                             "the sum of the steps' actions)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.pairs < 1 or args.plots < 0 or args.goal_offset < 1:
        parser.error("--pairs and --goal-offset must be >= 1 and --plots >= 0")
    if args.magnitude > args.extent:
        parser.error(f"--magnitude {args.magnitude} exceeds --extent {args.extent}: true actions would fall off the grid")
    return args


def plot_landscapes(path: Path, axis: torch.Tensor, landscapes: list[torch.Tensor], rows: list[dict]) -> None:
    extent, points = float(axis[-1]), len(axis)
    panels = [
        heatmap_panel(energy.view(points, points).numpy(), extent, row["true_xy"], row["argmin_xy"],
                      f"pair {row['pair']}: distance {row['distance']:.2f}")
        for energy, row in zip(landscapes, rows)
    ]
    hstack(panels).save(path)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = VJEPA2WorldModel.from_pretrained(args.model).eval()
    size = model.config.predictor_config.crop_size
    steps = args.pairs + args.goal_offset - 1
    camera = model_camera(model, "--model")
    env = make_fetch_env(size=size, max_steps=(steps + 2) * FRAME_SKIP, camera=camera, variant=args.variant)
    env.reset(seed=args.seed)
    trajectory = random_planar_trajectory(env, steps, np.random.default_rng(args.seed), args.magnitude)
    env.close()
    features = encode_rendered(model, trajectory.frames)
    states = torch.from_numpy(trajectory.states)
    actions = torch.from_numpy(trajectory.actions)
    axis, planar = action_grid(args.extent, args.grid)
    rows, landscapes = [], []
    for pair in range(args.pairs):
        goal = pair + args.goal_offset
        energy = energy_landscape(model, features[pair], states[pair], features[goal], planar, actions[pair])
        true_xy = actions[pair:goal, :2].sum(0)
        best = planar[int(energy.argmin())]
        rows.append({
            "pair": pair,
            "true_xy": [round(float(v), 4) for v in true_xy],
            "argmin_xy": [round(float(v), 4) for v in best],
            "distance": float((best - true_xy).norm()),
            "abs_error_xy": [round(float(v), 4) for v in (best - true_xy).abs()],
            "random_guess_abs_error_xy": [round(float(v), 4) for v in (planar - true_xy).abs().mean(0)],
            "random_guess_distance": random_guess_distance(planar, true_xy),
            "zero_action_distance": float(true_xy.norm()),
            "cosine": float(direction_cosine(best[None], true_xy)),
            "energy_min": float(energy.min()),
            "energy_max": float(energy.max()),
        })
        landscapes.append(energy)
    summary = {
        "model": args.model,
        "variant": args.variant,
        "camera": camera,
        "pairs": args.pairs,
        "grid": args.grid,
        "extent": args.extent,
        "grid_spacing": 2 * args.extent / (args.grid - 1),
        "goal_offset": args.goal_offset,
        "seed": args.seed,
        # The no-knowledge control of the direction: a uniformly drawn grid point's mean cosine is about 0.
        "mean_cosine": float(np.mean([row["cosine"] for row in rows])),
        "argmin_heads_toward_goal": int(sum(row["cosine"] > 0 for row in rows)),
        **{f"mean_{key}": float(np.mean([row[key] for row in rows]))
           for key in ("distance", "random_guess_distance", "zero_action_distance")},
        # Per axis: a model may have learned one direction of motion and not the other.
        **{f"mean_{key}": [float(v) for v in np.mean([row[key] for row in rows], axis=0)]
           for key in ("abs_error_xy", "random_guess_abs_error_xy")},
        # How much the energy moves with the action at all, relative to its level: near 0, the model ignores actions.
        "mean_relative_energy_range": float(np.mean([(r["energy_max"] - r["energy_min"]) / r["energy_min"] for r in rows])),
        "rows": rows,
    }
    (out / "energy_landscape.json").write_text(json.dumps(summary, indent=2))
    if args.plots:
        plot_landscapes(out / "energy_landscape.png", axis, landscapes[: args.plots], rows[: args.plots])
    print(f"argmin-to-true distance {summary['mean_distance']:.3f} (random grid point {summary['mean_random_guess_distance']:.3f}, "
          f"zero action {summary['mean_zero_action_distance']:.3f}), direction cosine {summary['mean_cosine']:.2f} "
          f"over {args.pairs} pairs; {out}")
    return summary


if __name__ == "__main__":
    main()
    sys.exit(0)
