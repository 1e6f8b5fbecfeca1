"""Cheap diagnostics of a world model's frozen encoder on a LeRobot dataset: can a linear map read the robot's
state from its features, and how much of the frame-to-frame change sits on a few tokens?

    python research/diagnose_world_model.py --data runs/play [--encoder PRETRAINED_VJEPA2_DIR] [--fps 5] [--out f.json]

Without `--encoder` the tiny preset's encoder (8-px patches) is built at random under `--seed`, exactly as the
tiny recipe builds its random frozen encoder (`train/recipes/ac_tiny.yaml`, seed 0). Every frame is center-cropped,
encoded alone and layer-normed (`VJEPA2WorldModel.encode_frames`).

- state probe: ridge regression from a frame's features (all tokens, flattened; and their mean) to the first
  `--probe-dims` state values (Fetch: gripper xyz), fit on episodes [0, --val-start), its penalty chosen on
  [--val-start, --test-start), R^2 reported on [--test-start, end). The same probe on the frame's pixels is the
  control: features that carry less than the pixels have lost the gripper.
- motion concentration: for consecutive clip frames (every `dataset fps / --fps`-th recorded frame), the share of
  the "nothing moves" L1 |z_{t+1} - z_t| carried by the 10% / 25% of tokens that change most in that pair.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from accelerate.utils import set_seed
from vjepa_vlm.data.ac_dataset import ACClipDataset, ACDataArgs, center_crop_box
from vjepa_vlm.data.pretrain_dataset import crop_and_normalize
from vjepa_vlm.train.ac_trainer import WorldModelArgs, build_world_model

PENALTIES = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6)


def ridge_r2(x: torch.Tensor, y: torch.Tensor, splits: tuple[slice, slice, slice]) -> dict:
    """Held-out R^2 (mean over outputs) of ridge regression, penalty chosen on the validation split."""
    fit, val, test = (x[s] for s in splits)
    y_fit, y_val, y_test = (y[s] for s in splits)
    mean_x, std_x = fit.mean(0), fit.std(0) + 1e-6
    mean_y = y_fit.mean(0)

    def solve(penalty: float) -> torch.Tensor:
        a = (fit - mean_x) / std_x
        # The dual form: fewer frames than feature dims.
        gram = a @ a.T + penalty * torch.eye(len(a), dtype=a.dtype)
        return a.T @ torch.linalg.solve(gram, y_fit - mean_y)

    def r2(weights: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor) -> float:
        predicted = ((inputs - mean_x) / std_x) @ weights + mean_y
        residual = ((predicted - targets) ** 2).sum(0)
        total = ((targets - targets.mean(0)) ** 2).sum(0)
        return float((1 - residual / total).mean())

    scores = {penalty: r2(solve(penalty), val, y_val) for penalty in PENALTIES}
    best = max(scores, key=scores.get)
    return {"r2_test": r2(solve(best), test, y_test), "r2_val": scores[best], "penalty": best}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="LeRobot v3.0 dataset folder")
    parser.add_argument("--encoder", default=None, help="a pretrained VJEPA2Model folder; default: random tiny encoder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random encoder")
    parser.add_argument("--fps", type=float, default=5.0, help="clip frame rate of the motion statistics")
    parser.add_argument("--crop-size", type=int, default=64)
    parser.add_argument("--state-dim", type=int, default=4)
    parser.add_argument("--action-dim", type=int, default=4)
    parser.add_argument("--probe-dims", type=int, default=3, help="leading state values to probe (gripper xyz)")
    parser.add_argument("--val-start", type=int, default=60)
    parser.add_argument("--test-start", type=int, default=80)
    parser.add_argument("--frame-step", type=int, default=5, help="probe every this many recorded frames")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    data = ACDataArgs(root=args.data, state_dim=args.state_dim, action_dim=args.action_dim, num_frames=2,
                      fps=args.fps, crop_size=args.crop_size, cache_features=True)
    set_seed(args.seed)
    model_args = WorldModelArgs(preset="vjepa2-ac-tiny", encoder=args.encoder,
                                encoder_overrides={} if args.encoder else {"patch_size": 8})
    model = build_world_model(model_args, data).eval()
    dataset = ACClipDataset(data)
    dataset.build_feature_cache(model.encode_frames)
    episodes = sorted(dataset.features)

    features, pixels, states, episode_of = [], [], [], []
    shares = {"top10": [], "top25": []}
    for episode in episodes:
        rows = dataset.reader.episode(episode)
        chosen = slice(None, None, args.frame_step)
        features.append(dataset.features[episode][chosen])
        frames = rows.frames[chosen]
        pixels.append(crop_and_normalize(frames, center_crop_box(*frames.shape[1:3]), args.crop_size).flatten(1))
        states.append(torch.from_numpy(rows.state[chosen, : args.probe_dims]).float())
        episode_of += [episode] * len(states[-1])
        sampled = dataset.features[episode][:: dataset.stride]
        change = (sampled[1:] - sampled[:-1]).abs().mean(-1)  # (pairs, tokens)
        ordered = change.sort(dim=1, descending=True).values
        for name, fraction in (("top10", 0.10), ("top25", 0.25)):
            count = max(1, round(fraction * change.shape[1]))
            shares[name].append(ordered[:, :count].sum(1) / ordered.sum(1))
    position = {episode: i for i, episode in enumerate(episodes)}
    index = torch.tensor([position[e] for e in episode_of])
    order = torch.argsort(index, stable=True)
    bounds = [int((index < start).sum()) for start in (args.val_start, args.test_start)]
    splits = (slice(0, bounds[0]), slice(bounds[0], bounds[1]), slice(bounds[1], None))
    tokens = torch.cat(features)[order].double()
    y = torch.cat(states)[order].double()
    results = {
        "encoder": args.encoder or f"random tiny (seed {args.seed})",
        "frames": len(y),
        "probe": {
            "features_all_tokens": ridge_r2(tokens.flatten(1), y, splits),
            "features_mean_token": ridge_r2(tokens.mean(1), y, splits),
            "pixels": ridge_r2(torch.cat(pixels)[order].double(), y, splits),
        },
        "motion_share": {name: float(torch.cat(values).mean()) for name, values in shares.items()},
        "nothing_moves_l1": float(torch.cat([(f[:: dataset.stride][1:] - f[:: dataset.stride][:-1]).abs().mean((1, 2))
                                             for f in dataset.features.values()]).mean()),
    }
    print(json.dumps(results, indent=1))
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
