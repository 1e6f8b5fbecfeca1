"""Does the anticipation world carry the signal? A pixel baseline of anticipation against anticipation time.

    python research/anticipation_pixel_baseline.py --world runs/ant/world --limit-train 600 \
        --times 0.25 0.5 0.75 1.0 1.25 1.5 1.75 --output runs/ant/pixel_baseline.json

The same contexts as `vjepa-anticipation --context-frames 8 --fps 4 --resolution 64` (8 frames at 4 fps ending t
seconds before the event), but no encoder: each frame box-downsampled to 16 x 16, the absolute differences of
consecutive frames (what moved) concatenated with the last frame (where things are), standardized, and one
multinomial logistic regression per task (verb, noun, action) trained and tested at the same t. Scores are the
probe's: mean-class recall@1 and @5 on the test split. A baseline the frozen features should beat, and a check
that what the world lets one foresee shrinks as the context ends earlier.
"""

from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from vjepa_vlm.data.epic_kitchens import read_anticipation_manifest
from vjepa_vlm.eval.anticipation import (
    context_indices,
    extract_anticipation_tokens,
    load_context,
    mean_class_recall,
    segment_labels,
)
from vjepa_vlm.modeling_vjepa2_anticipation import ANTICIPATION_TASKS, VJEPA2ForActionAnticipation
from vjepa_vlm.scripts.run_probe import load_encoder


def pixel_features(segments, seconds: float, frames: int, fps: float, resolution: int) -> np.ndarray:
    clips = torch.stack([load_context(s, context_indices(s, seconds, 0.0, frames, fps), resolution) for s in segments])
    small = torch.nn.functional.avg_pool2d(clips.flatten(0, 1), resolution // 16).unflatten(0, clips.shape[:2])
    motion = (small[:, 1:] - small[:, :-1]).abs().flatten(1)
    return torch.cat((motion, small[:, -1].flatten(1)), dim=1).numpy()


def token_features(model, segments, seconds: float, resolution: int, tokens: str = "encoder") -> np.ndarray:
    """The same read-out of frozen tokens: tubelet slices pooled to a 4 x 4 grid, the absolute differences of
    consecutive slices and the last slice. Tells a probe that cannot find the motion from tokens without it.

    `tokens`: "encoder" reads the context's slices; "predictor" the predicted slice alone (pooled, no difference);
    "both" the context's slices followed by the predicted one, as the probe's "both" row stacks them."""
    draws = np.tile([seconds, 0.0], (len(segments), 1, 1))
    encoded, predicted = extract_anticipation_tokens(model, segments, draws, resolution)
    config = model.config
    side = resolution // config.patch_size
    slices = {"encoder": encoded[:, 0], "predictor": predicted[:, 0],
              "both": torch.cat((encoded[:, 0], predicted[:, 0]), dim=1)}[tokens]
    grid = slices.unflatten(1, (-1, side, side))  # (B, T', h, w, D)
    pooled = torch.nn.functional.adaptive_avg_pool2d(grid.permute(0, 1, 4, 2, 3).flatten(0, 1), 4)
    pooled = pooled.unflatten(0, grid.shape[:2])
    motion = (pooled[:, 1:] - pooled[:, :-1]).abs().flatten(1)
    return torch.cat((motion, pooled[:, -1].flatten(1)), dim=1).numpy()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--world", type=Path, required=True)
    parser.add_argument("--limit-train", type=int, help="first N training actions")
    parser.add_argument("--times", type=float, nargs="+", default=[0.25, 1.0, 1.75])
    parser.add_argument("--context-frames", type=int, default=8)
    parser.add_argument("--fps", type=float, default=4.0)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--C", type=float, default=0.1, help="inverse L2 strength of the logistic regressions")
    parser.add_argument("--encoder", type=Path, help="read frozen encoder tokens of this VJEPA2Model directory instead")
    parser.add_argument("--random-init", action="store_true", help="the --encoder architecture, randomly initialized")
    parser.add_argument("--tokens", choices=("encoder", "predictor", "both"), default="encoder",
                        help="with --encoder: read the context's tokens, the predicted slice, or both")
    parser.add_argument("--predictor-mask-index", type=int, default=1,
                        help="mask token of the predicted slice (0 for a recipe with one mask config)")
    parser.add_argument("--output", type=Path, required=True)
    cli = parser.parse_args(argv)
    torch.set_num_threads(1)
    train = read_anticipation_manifest(cli.world / "train" / "anticipation.jsonl", cli.world)[: cli.limit_train]
    test = read_anticipation_manifest(cli.world / "test" / "anticipation.jsonl", cli.world)
    train_labels, test_labels = segment_labels(train), segment_labels(test)
    if cli.encoder is None:
        features = partial(pixel_features, frames=cli.context_frames, fps=cli.fps, resolution=cli.resolution)
    else:
        model = VJEPA2ForActionAnticipation.from_vjepa2(
            load_encoder(cli.encoder, cli.random_init, 0), num_verbs=1, num_nouns=1, num_actions=1,
            frames_per_second=cli.fps, context_frames=cli.context_frames, max_frames=cli.context_frames + 8,
            predictor_mask_index=cli.predictor_mask_index)
        features = partial(token_features, model, resolution=cli.resolution, tokens=cli.tokens)
    results = {}
    for seconds in cli.times:
        x_train, x_test = features(train, seconds), features(test, seconds)
        mean, std = x_train.mean(0), x_train.std(0) + 1e-6
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
        scores = {}
        for i, task in enumerate(ANTICIPATION_TASKS):
            model = LogisticRegression(C=cli.C, max_iter=300).fit(x_train, train_labels[:, i].numpy())
            # Classes absent from training get -inf, so they never enter a top k.
            width = int(max(train_labels[:, i].max(), test_labels[:, i].max())) + 1
            logits = np.full((len(test), width), -np.inf)
            logits[:, model.classes_] = model.predict_log_proba(x_test)
            for k in (1, 5):
                scores[f"{task}_recall@{k}"] = mean_class_recall(torch.from_numpy(logits), test_labels[:, i], k)
        results[f"{seconds:g}"] = scores
        print(f"t={seconds:g}s " + " ".join(f"{key} {100 * value:.1f}" for key, value in scores.items()), flush=True)
    kind = "random" if cli.random_init else "pretrained"
    read = "pixels" if cli.encoder is None else f"{kind} encoder tokens" + {
        "encoder": "", "predictor": " (predicted slice)", "both": " + predicted slice"}[cli.tokens]
    summary = {"world": str(cli.world), "features": read, "encoder": str(cli.encoder), "num_train": len(train),
               "num_test": len(test), "C": cli.C, "recall": results}
    cli.output.parent.mkdir(parents=True, exist_ok=True)
    cli.output.write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
