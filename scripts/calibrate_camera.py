"""Camera sensitivity of a world model's inferred actions, and the 2x2 calibration map (paper appendix B.4).

    python scripts/calibrate_camera.py --model runs/ac_tiny/checkpoints/step_00000600/model --out runs/camera

For every camera azimuth offset in `--azimuths` (degrees added to the default camera's), the same random planar
trajectory of `--steps` agent steps (`--steps + 1` frames; the paper: 201) is recorded in the Fetch simulator (same
seed: the robot does the same thing, only the view changes). For each adjacent frame pair, the action the world
model infers is the lowest-energy (dx, dy) of a `--grid` x `--grid` grid (dz and gripper as executed). The 2x2 map M
from inferred to true actions is fitted by least squares; its rotation (from U V^T of its SVD), condition number,
and the mean error before (|inferred - true|) and after (|M inferred - true|) calibration are reported per camera.

Written to `--out`: `calibration.json` (per azimuth: map, rotation, condition number, errors, and the control of
a random grid point's error) and `rotation_vs_azimuth.png` (with the line a model
whose action axes are fixed in the camera frame would follow). A fitted map plans with `CEMConfig(action_map=...)`
(`vjepa_vlm.vision.planner`): the planned (dx, dy) is multiplied by it before it is executed;
`scripts/eval_planning.py --action-map calibration.json --action-map-azimuth DEG` does that in the simulator. The map
for the planning evaluation's shifted camera: `--variant camera_shift --azimuths 0`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from vjepa_vlm.data.robot_sim import DEFAULT_CAMERA, VARIANTS, make_fetch_env
from vjepa_vlm.eval.inspection_plots import line_plot
from vjepa_vlm.eval.planning import FRAME_SKIP
from vjepa_vlm.eval.world_model_inspection import (
    action_grid,
    encode_rendered,
    fit_action_map,
    infer_planar_actions,
    random_guess_distance,
    random_planar_trajectory,
    summarize_map,
)

from vjepa_vlm.modeling_vjepa2_ac import VJEPA2WorldModel


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="folder of a VJEPA2WorldModel (a checkpoint's model/)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--azimuths", default="-30,-15,0,15,30", help="comma-separated offsets from the default camera (deg)")
    parser.add_argument("--steps", type=int, default=200, help="agent steps of the trajectory (frames: steps + 1)")
    parser.add_argument("--grid", type=int, default=21, help="grid points per axis of the action search")
    parser.add_argument("--extent", type=float, default=2.0, help="grid half-width in action units (1 = 5 cm)")
    parser.add_argument("--magnitude", type=float, default=1.5, help="true actions: each of dx, dy uniform in +-this")
    parser.add_argument("--variant", default="default", choices=VARIANTS,
                        help="scene variant; camera_shift's turn is added before the --azimuths offsets")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        args.azimuths = [float(value) for value in args.azimuths.split(",") if value.strip()]
    except ValueError:
        parser.error(f"--azimuths must be comma-separated numbers, got {args.azimuths!r}")
    if not args.azimuths or args.steps < 2:
        parser.error("give at least one azimuth and --steps >= 2 (a map needs two pairs)")
    if args.magnitude > args.extent:
        parser.error(f"--magnitude {args.magnitude} exceeds --extent {args.extent}: true actions would fall off the grid")
    return args


def calibrate_at(model, azimuth: float, args, planar: torch.Tensor) -> dict:
    camera = {**DEFAULT_CAMERA, "azimuth": DEFAULT_CAMERA["azimuth"] + azimuth}
    env = make_fetch_env(size=model.config.predictor_config.crop_size, max_steps=(args.steps + 2) * FRAME_SKIP,
                         camera=camera, variant=args.variant)
    env.reset(seed=args.seed)
    trajectory = random_planar_trajectory(env, args.steps, np.random.default_rng(args.seed), args.magnitude)
    env.close()
    features = encode_rendered(model, trajectory.frames)
    actions = torch.from_numpy(trajectory.actions)
    inferred = infer_planar_actions(model, features, torch.from_numpy(trajectory.states), actions, planar)
    true = actions[:, :2]
    matrix = fit_action_map(inferred, true)
    summary = summarize_map(matrix)
    return {
        "azimuth_offset_deg": azimuth,
        "map": [[round(float(v), 5) for v in row] for row in matrix],
        "rotation_deg": summary.rotation_deg,
        "reflection": summary.reflection,
        "condition_number": summary.condition_number,
        "singular_values": summary.singular_values,
        "error_before": float((inferred - true).norm(dim=1).mean()),
        "error_after": float((inferred @ matrix.T - true).norm(dim=1).mean()),
        "error_zero_action": float(true.norm(dim=1).mean()),
        "error_random_grid_point": float(np.mean([random_guess_distance(planar, t) for t in true])),
        # A map fitted to anything shrinks the error towards the mean; compare against predicting the mean action.
        "error_mean_action": float((true - true.mean(0)).norm(dim=1).mean()),
        "distinct_inferred_actions": len({tuple(row.tolist()) for row in inferred}),
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = VJEPA2WorldModel.from_pretrained(args.model).eval()
    _, planar = action_grid(args.extent, args.grid)
    rows = []
    for azimuth in args.azimuths:
        rows.append(calibrate_at(model, azimuth, args, planar))
        row = rows[-1]
        print(f"azimuth {azimuth:+g}: rotation {row['rotation_deg']:+.1f} deg, condition {row['condition_number']:.2f}, "
              f"error {row['error_before']:.3f} -> {row['error_after']:.3f} (mean action {row['error_mean_action']:.3f})",
              flush=True)
    result = {"model": args.model, "variant": args.variant, "steps": args.steps, "grid": args.grid, "extent": args.extent,
              "magnitude": args.magnitude, "seed": args.seed, "cameras": rows}
    (out / "calibration.json").write_text(json.dumps(result, indent=2))
    if len(rows) > 1:
        offsets = [row["azimuth_offset_deg"] for row in rows]
        # Axes fixed in the camera frame turn with the camera by the offset (the sign depends on conventions).
        anchor = min(rows, key=lambda row: abs(row["azimuth_offset_deg"]))
        plot = line_plot(
            offsets,
            {"rotation of the fitted map (deg)": [row["rotation_deg"] for row in rows],
             **{f"camera-fixed axes, slope {sign:+d}": [anchor["rotation_deg"] + sign * (o - anchor["azimuth_offset_deg"])
                                                         for o in offsets] for sign in (1, -1)}},
            "camera azimuth offset (deg)", "deg", "inferred-action rotation vs camera position",
        )
        plot.save(out / "rotation_vs_azimuth.png")
    return result


if __name__ == "__main__":
    main()
    sys.exit(0)
