"""Evaluate a trained V-JEPA 2-AC world model on held-out episodes of a LeRobot dataset, against two baselines.

    python scripts/eval_world_model.py --model RUN/checkpoints/step_N/model --data runs/play --first-episode 80 \\
        --fps 5 [--horizon 4] [--camera-key K] [--out results.json]

Every held-out episode is cut into non-overlapping clips of `horizon + 1` frames (center crops, frames encoded
alone and layer-normed, as in training). For k = 1 .. horizon it reports the mean L1 between predicted and true
layer-normed features of frame k:

    teacher forcing   frame k predicted from the true frames 0 .. k-1
    rollout           frame k imagined from frame 0 alone, each prediction fed back

for the model, for "nothing moves" (the last given frame's features: frame k-1, resp. frame 0), and for the model
given another held-out clip's actions, with that clip's state changes added to this clip's first state (what those
actions would have done from here). States are ground truth otherwise, as in training. `clip_wins` gives, per mode,
baseline and horizon, the share of clips on which the model's L1 is below the baseline's: a mean gap that a few
clips carry shows there as a share near one half.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from vjepa_vlm.data.ac_dataset import ACClipDataset, ACDataArgs
from vjepa_vlm.modeling_vjepa2_ac import VJEPA2WorldModel


def held_out_clips(dataset: ACClipDataset) -> list[dict]:
    """Non-overlapping clips of every cached episode, in order."""
    return [dataset.clip(episode, start) for episode in sorted(dataset.features)
            for start in range(0, dataset.reader.length(episode) - dataset.span + 1, dataset.span)]


@torch.no_grad()
def evaluate(model: VJEPA2WorldModel, clips: list[dict], horizon: int) -> dict:
    """Per-horizon mean L1 of the model and of both baselines; see the module docstring."""
    features = torch.stack([c["features"] for c in clips])
    actions = torch.stack([c["actions"] for c in clips])
    states = torch.stack([c["states"] for c in clips])
    # Another clip's actions, and the states they led to, moved to start from this clip's first state.
    other = torch.roll(torch.arange(len(clips)), len(clips) // 2)
    foreign_states = states[:, :1] + states[other] - states[other, :1]

    def per_clip(predicted, target):
        return (predicted - target).abs().mean(dim=(2, 3))  # (clips, horizon)

    def l1(predicted, target):
        return per_clip(predicted, target).mean(0).tolist()

    def wins(predicted, baselines, target):
        model = per_clip(predicted, target)
        return {name: (model < per_clip(b, target)).float().mean(0).tolist() for name, b in baselines.items()}

    target = features[:, 1:]
    teacher = model(features[:, :-1], actions, states[:, :-1]).predicted_features
    teacher_foreign = model(features[:, :-1], actions[other], foreign_states[:, :-1]).predicted_features
    rollout = model.rollout(features[:, :1], actions, states[:, :-1], horizon)
    rollout_foreign = model.rollout(features[:, :1], actions[other], foreign_states[:, :-1], horizon)
    still = {"teacher_forcing": features[:, :-1], "rollout": features[:, :1].expand_as(target)}
    return {
        "clips": len(clips),
        "horizons": list(range(1, horizon + 1)),
        "teacher_forcing": {"model": l1(teacher, target), "nothing_moves": l1(still["teacher_forcing"], target),
                            "other_actions": l1(teacher_foreign, target)},
        "rollout": {"model": l1(rollout, target), "nothing_moves": l1(still["rollout"], target),
                    "other_actions": l1(rollout_foreign, target)},
        "clip_wins": {
            "teacher_forcing": wins(teacher, {"nothing_moves": still["teacher_forcing"],
                                              "other_actions": teacher_foreign}, target),
            "rollout": wins(rollout, {"nothing_moves": still["rollout"], "other_actions": rollout_foreign}, target),
        },
    }


def format_table(results: dict) -> str:
    lines = ["| mode | predictor | " + " | ".join(f"k={k}" for k in results["horizons"]) + " |",
             "|---|---|" + "---|" * len(results["horizons"])]
    for mode in ("teacher_forcing", "rollout"):
        for name, values in results[mode].items():
            lines.append(f"| {mode} | {name} | " + " | ".join(f"{v:.4f}" for v in values) + " |")
    for mode in ("teacher_forcing", "rollout"):
        for name, values in results["clip_wins"][mode].items():
            lines.append(f"| {mode} | clips where the model beats {name} | "
                         + " | ".join(f"{v:.0%}" for v in values) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a VJEPA2WorldModel folder (a checkpoint's model/)")
    parser.add_argument("--data", required=True, help="LeRobot v3.0 dataset folder")
    parser.add_argument("--first-episode", type=int, required=True, help="held-out episodes start here (by position)")
    parser.add_argument("--num-episodes", type=int, default=None)
    parser.add_argument("--fps", type=float, required=True, help="clip frame rate (the training run's data.fps)")
    parser.add_argument("--horizon", type=int, default=4)
    parser.add_argument("--camera-key", default=None)
    parser.add_argument("--state-key", default="observation.state")
    parser.add_argument("--action-key", default="action")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.horizon < 1:
        parser.error(f"--horizon must be >= 1, got {args.horizon}")

    model = VJEPA2WorldModel.from_pretrained(args.model).eval()
    predictor = model.config.predictor_config
    data = ACDataArgs(
        root=args.data, camera_key=args.camera_key, state_key=args.state_key, action_key=args.action_key,
        state_dim=predictor.state_dim, action_dim=predictor.action_dim, first_episode=args.first_episode,
        num_episodes=args.num_episodes, num_frames=args.horizon + 1, fps=args.fps, crop_size=predictor.crop_size,
        cache_features=True,
    )
    dataset = ACClipDataset(data)
    dataset.build_feature_cache(model.encode_frames)
    results = evaluate(model, held_out_clips(dataset), args.horizon)
    results.update(episodes=len(dataset.features), unreadable=len(dataset.unreadable),
                   too_short=len(dataset.too_short))
    print(format_table(results))
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
