"""Is the predictor's imagined slice a prediction of the real future slice, and what would the real one tell a probe?

    python research/anticipation_future_slice.py --world runs/ant/world --limit-train 900 --times 0.25 1.75 \
        --encoder runs/ant/pt_future/checkpoints/step_00000800/target --output runs/s22d/future_slice.json

The anticipation query (`VJEPA2ForActionAnticipation.anticipation_tokens`) encodes a context clip and lets the
predictor fill the tubelet slice `int(t * fps / tubelet)` slices after it. Here the same contexts are also extended
with the frames that follow them, and the whole clip is encoded, as the pretraining target encoder sees it: its
slice at the predicted position is the *real* future slice, the predictor's target. Two questions, per t:

1. How close is the prediction? Mean L1 distance to the real slice's layer-normed tokens (the pretraining loss),
   against two predictions that need no predictor: the context's last slice copied forward (encoded by the
   encoder that gives the real slice), and the training mean
   of the real slice (a predictor that learned only the average future).
2. What does the slice carry? The linear read-out of `anticipation_pixel_baseline.py` (each slice pooled to 4 x 4
   tokens; absolute differences of consecutive slices and the last slice; one logistic regression per task,
   test mean-class recall) on the predicted slice, the real slice, and each stacked after the context's slices.
   If the real slice alone is near chance too, a single imagined slice cannot carry the event however good the
   predictor; if the real slice stacked after the context beats the context, the predictor has room to add.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from vjepa_vlm.data.epic_kitchens import (
    FRAME_PATTERN,
    ActionSegment,
    read_anticipation_manifest,
)
from vjepa_vlm.data.video_io import video_info
from vjepa_vlm.eval.anticipation import (
    context_indices,
    load_context,
    mean_class_recall,
    segment_labels,
)
from vjepa_vlm.scripts.run_probe import load_encoder

from vjepa_vlm.modeling_vjepa2_anticipation import (
    ANTICIPATION_TASKS,
    VJEPA2ForActionAnticipation,
    anticipation_steps,
)


def future_clip_indices(segment: ActionSegment, seconds: float, point: float, config) -> np.ndarray:
    """Video frames of the context clip ending `seconds` before the anticipation point `point`, then the frames after
    it at the context's rate up to the end of the tubelet slice the predictor fills (`anticipation_steps` slices
    after the context; `config` a `VJEPA2AnticipationConfig`)."""
    fps, tubelet = config.frames_per_second, config.tubelet_size
    steps = int(anticipation_steps(torch.tensor([seconds]), fps, tubelet))
    indices = context_indices(segment, seconds, point, config.context_frames, fps)
    after = indices[-1] + int(segment.fps / fps) * np.arange(1, (steps + 1) * tubelet + 1)
    return np.concatenate((indices, after))


def check_clip_holds(segment: ActionSegment, indices: np.ndarray, seconds: float, lengths: dict) -> None:
    """Refuse a real future slice that would need frames past the clip's end (`lengths` caches frame counts)."""
    last = int(indices.max())
    if segment.source.is_dir():
        held = (segment.source / FRAME_PATTERN.format(last + 1)).is_file()
        length = "no frame there"
    else:
        if segment.source not in lengths:
            lengths[segment.source] = video_info(segment.source).num_frames
        held = last < lengths[segment.source]
        length = f"{lengths[segment.source]} frames"
    if not held:
        raise ValueError(f"{segment.key}: the real future slice at t = {seconds:g} s needs frame {last} (0-based) of "
                         f"{segment.source} ({length}): the clip ends before the slice the predictor fills")


@torch.no_grad()
def real_future_slices(target_encoder, config, segments: list[ActionSegment], draws: np.ndarray, resolution: int,
                       batch_size: int = 16) -> torch.Tensor:
    """(items, draws, h*w, D) real future slices: `target_encoder` (a `VJEPA2Model.encoder`) run on each context of
    `draws` ((items, draws, 2) anticipation time and point, as `extract_anticipation_tokens` takes them) extended
    with the frames after it (`future_clip_indices`), its last tubelet slice: the slice the predictor fills, as the
    pretraining target encoder sees it (not normalized). Checks first that every clip holds those frames."""
    jobs = [(i, j) for i in range(len(segments)) for j in range(draws.shape[1])]
    frames, lengths = {}, {}
    for i, j in jobs:
        frames[i, j] = future_clip_indices(segments[i], draws[i, j, 0], draws[i, j, 1], config)
        check_clip_holds(segments[i], frames[i, j], draws[i, j, 0], lengths)
    by_length = {}
    for job in jobs:  # clips of one length per batch (times that skip different numbers of slices)
        by_length.setdefault(len(frames[job]), []).append(job)
    real = {}
    for length, group in sorted(by_length.items()):
        for start in range(0, len(group), batch_size):
            batch = group[start : start + batch_size]
            clips = torch.stack([load_context(segments[i], frames[i, j], resolution) for i, j in batch])
            tokens = target_encoder(clips).last_hidden_state
            per_slice = tokens.shape[1] // (length // config.tubelet_size)
            real.update(zip(batch, tokens[:, -per_slice:]))
    return torch.stack([real[job] for job in jobs]).unflatten(0, draws.shape[:2])


@torch.no_grad()
def slices_at(model, segments, seconds: float, resolution: int, target=None, batch_size: int = 16) -> dict[str, torch.Tensor]:
    """(items, slices, h*w, D) token slices: the context's encoder slices, the predicted slice, the real slice (from
    the `target` VJEPA2Model's encoder, `model`'s when None)."""
    config = model.config
    target_encoder = (model.vjepa2 if target is None else target).encoder
    draws = np.tile([seconds, 0.0], (len(segments), 1, 1))
    out = {"context": [], "predicted": [], "last": []}
    for start in range(0, len(segments), batch_size):
        batch = segments[start : start + batch_size]
        context = torch.stack([
            load_context(s, context_indices(s, seconds, 0.0, config.context_frames, config.frames_per_second),
                         resolution) for s in batch
        ])
        encoded, predicted = model.anticipation_tokens(context, torch.full((len(batch),), seconds))
        last = encoded if target is None else target_encoder(context).last_hidden_state
        per_slice = encoded.shape[1] // (config.context_frames // config.tubelet_size)
        out["context"].append(encoded.unflatten(1, (-1, per_slice)))
        out["predicted"].append(predicted.unflatten(1, (-1, per_slice)))
        out["last"].append(last.unflatten(1, (-1, per_slice))[:, -1:])
    out = {name: torch.cat(parts) for name, parts in out.items()}
    out["real"] = real_future_slices(target_encoder, config, segments, draws, resolution, batch_size)
    return out


def readout(slices: torch.Tensor, side: int) -> np.ndarray:
    """The pixel baseline's features of (items, slices, h*w, D) tokens."""
    grid = slices.unflatten(2, (side, side)).permute(0, 1, 4, 2, 3)  # (B, T', D, h, w)
    pooled = F.adaptive_avg_pool2d(grid.flatten(0, 1), 4).unflatten(0, grid.shape[:2])
    motion = (pooled[:, 1:] - pooled[:, :-1]).abs().flatten(1)
    return torch.cat((motion, pooled[:, -1].flatten(1)), dim=1).numpy()


def recall(x_train, x_test, train_labels, test_labels, c: float, max_iter: int = 300) -> dict[str, float]:
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    scores = {}
    for i, task in enumerate(ANTICIPATION_TASKS):
        fit = LogisticRegression(C=c, max_iter=max_iter).fit(x_train, train_labels[:, i].numpy())
        width = int(max(train_labels[:, i].max(), test_labels[:, i].max())) + 1
        logits = np.full((len(x_test), width), -np.inf)
        logits[:, fit.classes_] = fit.predict_log_proba(x_test)
        for k in (1, 5):
            scores[f"{task}_recall@{k}"] = mean_class_recall(torch.from_numpy(logits), test_labels[:, i], k)
    return scores


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--world", type=Path, required=True)
    parser.add_argument("--encoder", type=Path, required=True, help="VJEPA2Model directory (encoder + predictor)")
    parser.add_argument("--target-encoder", type=Path,
                        help="VJEPA2Model directory whose encoder gives the real slice (default: --encoder's); a "
                             "checkpoint's target/ when --encoder is its online/, as the pretraining loss compares")
    parser.add_argument("--predictor-mask-index", type=int, default=1)
    parser.add_argument("--limit-train", type=int, help="first N training actions")
    parser.add_argument("--times", type=float, nargs="+", default=[0.25, 1.75])
    parser.add_argument("--context-frames", type=int, default=8)
    parser.add_argument("--fps", type=float, default=4.0)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--C", type=float, default=0.1, help="inverse L2 strength of the logistic regressions")
    parser.add_argument("--max-iter", type=int, default=300, help="iterations of each logistic regression")
    parser.add_argument("--output", type=Path, required=True)
    cli = parser.parse_args(argv)
    torch.set_num_threads(1)
    train = read_anticipation_manifest(cli.world / "train" / "anticipation.jsonl", cli.world)[: cli.limit_train]
    test = read_anticipation_manifest(cli.world / "test" / "anticipation.jsonl", cli.world)
    train_labels, test_labels = segment_labels(train), segment_labels(test)
    model = VJEPA2ForActionAnticipation.from_vjepa2(
        load_encoder(cli.encoder, False, 0), num_verbs=1, num_nouns=1, num_actions=1, frames_per_second=cli.fps,
        context_frames=cli.context_frames, max_frames=cli.context_frames + 8,
        predictor_mask_index=cli.predictor_mask_index).eval()
    target = None if cli.target_encoder is None else load_encoder(cli.target_encoder, False, 0).eval()
    side = cli.resolution // model.config.patch_size
    results = {}
    for seconds in cli.times:
        tr, te = (slices_at(model, part, seconds, cli.resolution, target) for part in (train, test))
        norm = lambda x: F.layer_norm(x, x.shape[-1:])
        real = norm(te["real"][:, 0])
        distance = {
            "predicted": (te["predicted"][:, 0] - real).abs().mean().item(),
            "last context slice copied": (norm(te["last"][:, 0]) - real).abs().mean().item(),
            "training mean of the real slice": (norm(tr["real"][:, 0]).mean(0) - real).abs().mean().item(),
        }
        features = {
            "context": lambda d: d["context"],
            "predicted slice": lambda d: d["predicted"],
            "real slice": lambda d: d["real"],
            "context + predicted slice": lambda d: torch.cat((d["context"], d["predicted"]), dim=1),
            "context + real slice": lambda d: torch.cat((d["context"], d["real"]), dim=1),
        }
        scores = {name: recall(readout(pick(tr), side), readout(pick(te), side), train_labels, test_labels, cli.C, cli.max_iter)
                  for name, pick in features.items()}
        results[f"{seconds:g}"] = {"l1_to_real_slice": distance, "recall": scores}
        print(f"t={seconds:g}s L1 to the real slice: " + ", ".join(f"{k} {v:.3f}" for k, v in distance.items()))
        for name, score in scores.items():
            print(f"  {name}: " + " ".join(f"{k} {100 * v:.1f}" for k, v in score.items()), flush=True)
    summary = {"world": str(cli.world), "encoder": str(cli.encoder), "target_encoder": str(cli.target_encoder),
               "predictor_mask_index": cli.predictor_mask_index,
               "num_train": len(train), "num_test": len(test), "C": cli.C, "results": results}
    cli.output.parent.mkdir(parents=True, exist_ok=True)
    cli.output.write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
