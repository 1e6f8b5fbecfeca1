"""Look at world-model rollouts through a frame decoder (paper appendix B.3, Figure 15).

    python scripts/decode_rollouts.py --model runs/ac_tiny/checkpoints/step_00000600/model \
        --decoder runs/frame_decoder/checkpoints/step_00001000/model --data runs/play --first-episode 80 --out runs/decoded

Held-out clips of `--horizon + 1` frames at `--fps` (non-overlapping, center-cropped as the world model's
evaluation takes them) are decoded three ways: the true frames' encoder features (how good the decoder is), and the
rollout imagined from the first frame alone with the recorded actions and states (what the world model believes).
The gripper ablation rolls out the same clip with the gripper command forced open and forced closed at every step.

Written to `--out`: `strips_<episode>_<start>.png` for the first `--strips` clips (rows: ground truth, decoded
features, decoded rollout, rollout gripper open, rollout gripper closed; column k is frame k, the rollout rows start
at frame 1) and `decoded_rollouts.json`: pixel MSE in [0, 1] pixel units per horizon of the decoded features, the
decoded rollout and the rollout driven by another clip's actions and state changes against the true frames, with
two more controls (the true first frame and the decoded first frame held
still, i.e. "nothing moves" seen with and without the decoder's blur), and the mean pixel difference between the
open- and closed-gripper rollouts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from vjepa_vlm.data.ac_dataset import ACClipDataset, ACDataArgs
from vjepa_vlm.eval.inspection_plots import frame_strip

from vjepa_vlm.modeling_vjepa2_ac import VJEPA2WorldModel
from vjepa_vlm.modeling_vjepa2_frame_decoder import VJEPA2FrameDecoder, to_unit_pixels

ROWS = ("ground truth", "decoded features", "decoded rollout", "rollout, open", "rollout, closed")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="folder of a VJEPA2WorldModel")
    parser.add_argument("--decoder", required=True, help="folder of a VJEPA2FrameDecoder trained on its features")
    parser.add_argument("--data", required=True, help="LeRobot v3.0 dataset folder")
    parser.add_argument("--camera-key", default=None)
    parser.add_argument("--first-episode", type=int, default=80, help="first held-out episode (by position)")
    parser.add_argument("--episodes", type=int, default=None, help="held-out episodes used (default: all from the first)")
    parser.add_argument("--horizon", type=int, default=4, help="imagined steps")
    parser.add_argument("--fps", type=float, default=5.0, help="clip frame rate (the world model's)")
    parser.add_argument("--gripper-dim", type=int, default=3, help="index of the gripper command in an action")
    parser.add_argument("--gripper-command", type=float, default=5.0,
                        help="|command| of the ablation (Fetch: +-1 per simulator step, 5 steps per agent step)")
    parser.add_argument("--strips", type=int, default=3, help="clips drawn as PNG strips")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.horizon < 1 or args.strips < 0:
        parser.error("--horizon must be >= 1 and --strips >= 0")
    return args


def to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """Normalized `(T, 3, H, W)` -> uint8 `(T, H, W, 3)`."""
    return (to_unit_pixels(pixels).permute(0, 2, 3, 1) * 255).round().byte().numpy()


def pixel_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-frame MSE in [0, 1] pixel units of normalized `(T, 3, H, W)` frames."""
    return (to_unit_pixels(a) - to_unit_pixels(b)).pow(2).flatten(1).mean(1)


@torch.no_grad()
def decode_clip(model, decoder, clip: dict, other: dict, horizon: int, gripper_dim: int, command: float) -> dict:
    """Decoded frames of one clip; `other` is another clip whose actions and state changes (added to this clip's
    first state) drive the control rollout."""
    pixels, actions, states = clip["pixel_values"], clip["actions"], clip["states"]
    features = model.encode_frames(pixels.unsqueeze(0))
    context = features[:, :1]

    def imagine(chosen: torch.Tensor, chosen_states: torch.Tensor = states) -> torch.Tensor:
        rollout = model.rollout(context, chosen[None, :horizon], chosen_states[None, :horizon], steps=horizon)[0]
        return decoder(rollout).pixel_values

    forced = {}
    for name, sign in (("open", 1.0), ("closed", -1.0)):
        changed = actions.clone()
        changed[:, gripper_dim] = sign * command
        forced[name] = imagine(changed)
    other_states = states[0] + other["states"] - other["states"][0]
    return {"truth": pixels, "decoded": decoder(features[0]).pixel_values, "rollout": imagine(actions),
            "other_actions": imagine(other["actions"], other_states), **forced}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = VJEPA2WorldModel.from_pretrained(args.model).eval()
    decoder = VJEPA2FrameDecoder.from_pretrained(args.decoder).eval()
    predictor = model.config.predictor_config
    decoded_side = (decoder.config.encoder_hidden_size, decoder.config.crop_size, decoder.config.patch_size)
    if decoded_side != (predictor.encoder_hidden_size, predictor.crop_size, predictor.patch_size):
        raise ValueError(
            f"{args.decoder} decodes (width, crop, patch) = {decoded_side} but {args.model} has "
            f"{(predictor.encoder_hidden_size, predictor.crop_size, predictor.patch_size)}: train a decoder on this model"
        )
    if not -predictor.action_dim <= args.gripper_dim < predictor.action_dim:
        raise ValueError(f"--gripper-dim {args.gripper_dim} is outside the model's {predictor.action_dim}-D actions")
    data = ACClipDataset(ACDataArgs(
        root=args.data, camera_key=args.camera_key, state_dim=predictor.state_dim, action_dim=predictor.action_dim,
        first_episode=args.first_episode, num_episodes=args.episodes, num_frames=args.horizon + 1, fps=args.fps,
        crop_size=predictor.crop_size,
    ))
    metrics = {key: [] for key in ("decoded_features", "decoded_rollout", "rollout_other_actions", "true_first_frame",
                                   "decoded_first_frame")}
    gripper_gap, drawn = [], 0
    starts = [(episode, start) for episode in data.episodes
              for start in range(0, data.reader.length(episode) - data.span + 1, data.span)]
    for index, (episode, start) in enumerate(starts):
        # The control's actions come from the next clip in the list (another part of the play, or another episode).
        other = starts[(index + 1) % len(starts)]
        result = decode_clip(model, decoder, data.clip(episode, start), data.clip(*other), args.horizon,
                             args.gripper_dim, args.gripper_command)
        truth, later = result["truth"], result["truth"][1:]
        metrics["decoded_features"].append(pixel_mse(result["decoded"][1:], later))
        metrics["decoded_rollout"].append(pixel_mse(result["rollout"], later))
        metrics["rollout_other_actions"].append(pixel_mse(result["other_actions"], later))
        metrics["true_first_frame"].append(pixel_mse(truth[:1].expand_as(later), later))
        metrics["decoded_first_frame"].append(pixel_mse(result["decoded"][:1].expand_as(later), later))
        gripper_gap.append((to_unit_pixels(result["open"]) - to_unit_pixels(result["closed"])).abs().mean())
        if drawn < args.strips:
            rows = [to_uint8(truth), to_uint8(result["decoded"])]
            # Rollout rows are shifted one column right: the first frame is given, not imagined.
            rows += [np.concatenate([np.full_like(rows[0][:1], 255), to_uint8(result[key])])
                     for key in ("rollout", "open", "closed")]
            frame_strip(rows, ROWS).save(out / f"strips_{episode}_{start}.png")
            drawn += 1
    if not gripper_gap:
        raise ValueError(f"{args.data}: no held-out clip of {data.span} recorded frames from episode position {args.first_episode}")
    summary = {
        "model": args.model, "decoder": args.decoder, "clips": len(gripper_gap), "horizon": args.horizon,
        "pixel_mse_per_horizon": {key: [round(float(v), 5) for v in torch.stack(values).mean(0)]
                                  for key, values in metrics.items()},
        "gripper_open_vs_closed_mean_abs_pixel_difference": float(torch.stack(gripper_gap).mean()),
    }
    (out / "decoded_rollouts.json").write_text(json.dumps(summary, indent=2))
    for key, values in summary["pixel_mse_per_horizon"].items():
        print(f"{key:>20}: " + " ".join(f"{v:.4f}" for v in values))
    print(f"open vs closed gripper rollouts differ by {summary['gripper_open_vs_closed_mean_abs_pixel_difference']:.4f} "
          f"per pixel; {len(gripper_gap)} clips; {out}")
    return summary


if __name__ == "__main__":
    main()
    sys.exit(0)
