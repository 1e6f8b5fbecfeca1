"""Cheap diagnostics of a world model's frozen encoder on a LeRobot dataset: can a linear map read the robot's
state from its features, and how much of the frame-to-frame change sits on a few tokens?

    python research/diagnose_world_model.py --data runs/play [--encoder PRETRAINED_VJEPA2_DIR] [--fps 5] [--out f.json]
    python research/diagnose_world_model.py --data runs/play --model RUN/checkpoints/step_N/model [--out f.json]

Without `--encoder` the tiny preset's encoder (8-px patches) is built at random under `--seed`, exactly as the
tiny recipe builds its random frozen encoder (`train/recipes/ac_tiny.yaml`, seed 0). Every frame is center-cropped,
encoded alone and layer-normed (`VJEPA2WorldModel.encode_frames`).

- state probe: ridge regression from a frame's features (all tokens, flattened; and their mean) to the first
  `--probe-dims` state values (Fetch: gripper xyz), fit on episodes [0, --val-start), its penalty chosen on
  [--val-start, --test-start), R^2 reported on [--test-start, end). The same probe on the frame's pixels is the
  control: features that carry less than the pixels have lost the gripper.
- motion concentration: for consecutive clip frames (every `dataset fps / --fps`-th recorded frame), the share of
  the "nothing moves" L1 |z_{t+1} - z_t| carried by the 10% / 25% of tokens that change most in that pair.

With `--model` (a trained `VJEPA2WorldModel`; its own encoder then replaces `--encoder`), on the clips of the
held-out episodes [--test-start, end) that `scripts/eval_world_model.py` scores, teacher forcing over `--horizon` steps:

- where the model wins or loses against "nothing moves": L1 on the `--top-fraction` of tokens that truly change
  most in each step (per clip and step) and on the others. A mean L1 over all tokens is dominated by the static
  ones; a model can be right about motion and still lose there by blurring the background.
- action sensitivity: mean |P(a) - P(a')| with a' another held-out clip's actions (and its state changes), on all
  tokens and on the changing ones, next to the true change |z_{t+1} - z_t|: how much the actions move the prediction.
- the predicted change |P - z_t| next to the true one: does the model dare to predict motion at all?
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import torch
from accelerate.utils import set_seed
from vjepa_vlm.data.ac_dataset import ACClipDataset, ACDataArgs, center_crop_box
from vjepa_vlm.data.pretrain_dataset import crop_and_normalize
from vjepa_vlm.scripts.eval_world_model import held_out_clips
from vjepa_vlm.train.ac_trainer import WorldModelArgs, build_world_model

from vjepa_vlm.modeling_vjepa2_ac import VJEPA2WorldModel

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


@torch.no_grad()
def prediction_diagnostics(model, clips: list[dict], top_fraction: float = 0.1) -> dict:
    """Teacher-forcing diagnostics of a world model on clips from `eval_world_model.held_out_clips` (docstring)."""
    features = torch.stack([c["features"] for c in clips])
    actions = torch.stack([c["actions"] for c in clips])
    states = torch.stack([c["states"] for c in clips])
    other = torch.roll(torch.arange(len(clips)), len(clips) // 2)
    foreign_states = states[:, :1] + states[other] - states[other, :1]
    context, target = features[:, :-1], features[:, 1:]
    predicted = model(context, actions, states[:, :-1]).predicted_features
    foreign = model(context, actions[other], foreign_states[:, :-1]).predicted_features

    def per_token(a, b):
        return (a - b).abs().mean(-1)  # (clips, steps, tokens)

    true_change = per_token(target, context)
    count = max(1, round(top_fraction * true_change.shape[-1]))
    threshold = true_change.topk(count, dim=-1).values[..., -1:]
    changing = true_change >= threshold
    model_error, action_effect = per_token(predicted, target), per_token(predicted, foreign)
    predicted_change = per_token(predicted, context)

    def split(values):
        return {"all": float(values.mean()), "changing": float(values[changing].mean()),
                "static": float(values[~changing].mean())}

    return {
        "clips": len(clips),
        "top_fraction": top_fraction,
        "l1_model": split(model_error),
        "l1_nothing_moves": split(true_change),
        "action_sensitivity": split(action_effect),
        "predicted_change": split(predicted_change),
        "true_change": split(true_change),
    }


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
    parser.add_argument("--model", default=None, help="a trained VJEPA2WorldModel folder: also diagnose its predictions")
    parser.add_argument("--horizon", type=int, default=4, help="clip steps of the prediction diagnostics")
    parser.add_argument("--top-fraction", type=float, default=0.1, help="share of tokens counted as changing")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.model is not None and args.encoder is not None:
        parser.error("--model brings its own encoder; leave --encoder out")

    data = ACDataArgs(root=args.data, state_dim=args.state_dim, action_dim=args.action_dim, num_frames=2,
                      fps=args.fps, crop_size=args.crop_size, cache_features=True)
    set_seed(args.seed)
    model_args = WorldModelArgs(preset="vjepa2-ac-tiny", encoder=args.encoder,
                                encoder_overrides={} if args.encoder else {"patch_size": 8})
    if args.model is not None:
        model = VJEPA2WorldModel.from_pretrained(args.model).eval()
    else:
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
        states.append(torch.tensor(rows.state[chosen, : args.probe_dims], dtype=torch.float32))
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
        "encoder": args.model or args.encoder or f"random tiny (seed {args.seed})",
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
    if args.model is not None:
        held_out = ACClipDataset(replace(data, num_frames=args.horizon + 1, first_episode=args.test_start,
                                         num_episodes=None))
        held_out.features = {e: dataset.features[e] for e in dataset.features if e in held_out.episodes}
        results["prediction"] = prediction_diagnostics(model, held_out_clips(held_out), args.top_fraction)
    print(json.dumps(results, indent=1))
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
