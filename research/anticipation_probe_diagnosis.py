"""Why the anticipation probe stays at chance where a linear read-out of the same frozen tokens does not.

    python research/anticipation_probe_diagnosis.py --world runs/ant/world \
        --encoder runs/ant/pt/checkpoints/step_00000800/target --train 200 --val 100 \
        --runs focal:tokens:sincos:20 ce:tokens:sincos:20 ce:readout:sincos:20 --output runs/ant/diagnosis.json

The first `--train` + `--val` training clips of the world, one context each at t = 1 s (8 frames at 4 fps, 64 px,
as the published protocol), encoder tokens cached once (`--cache`). Then:
- can a token's own features say where it is? A logistic regression reads each token's slice and row from its 96
  numbers (held-out tokens; chance 1/4 and 1/8): RoPE encoders put positions in attention, not in the tokens;
- `readout-linear`: the linear read-out of `anticipation_pixel_baseline.py --encoder` (slices pooled to 4 x 4,
  absolute differences of consecutive slices, the last slice, standardized) with a logistic regression;
- every `--runs` entry `loss:input:position:epochs[:blocks]` trains the anticipation probe of `run_anticipation`
  (one cross-attention block by default, 16 heads, 3 queries, lr 3e-3, wd 0.01, batch 32, seed 0) through
  `train_probe_sweep`: loss `focal` (the paper's, `AnticipationTask`) or `ce` (softmax cross-entropy per task);
  input `tokens` (the 4 x 8 x 8 encoder tokens) or `readout` (the read-out's numbers as 64 tokens of a 4 x 4 x 4
  grid); position `none` or `sincos`. Scores: mean-class recall on the training clips themselves and on the
  held-out ones.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from vjepa_vlm.data.epic_kitchens import read_anticipation_manifest
from vjepa_vlm.eval.anticipation import (
    AnticipationTask,
    extract_anticipation_tokens,
    mean_class_recall,
    segment_labels,
)
from vjepa_vlm.eval.probe import ProbeArgs, train_probe_sweep
from vjepa_vlm.scripts.run_probe import load_encoder

from vjepa_vlm.modeling_vjepa2_anticipation import VJEPA2ForActionAnticipation


class CrossEntropyTask(AnticipationTask):
    """The anticipation task with a softmax cross-entropy per task (verb, noun, action) instead of the focal loss."""

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        parts = logits.split(self.sizes, dim=-1)
        return sum(F.cross_entropy(part.flatten(0, 1), targets[:, i].repeat(part.shape[0])) * part.shape[0]
                   for i, part in enumerate(parts))


def readout_tokens(tokens: torch.Tensor, slices: int, side: int, fit: int) -> torch.Tensor:
    """(B, 64, D) read-out numbers: 3 slice differences + the last slice, each 4 x 4 pooled, standardized on `fit`."""
    grid = tokens.unflatten(1, (slices, side, side)).permute(0, 1, 4, 2, 3)  # (B, T', D, h, w)
    pooled = F.adaptive_avg_pool2d(grid.flatten(0, 1), 4).unflatten(0, grid.shape[:2]).permute(0, 1, 3, 4, 2)
    numbers = torch.cat(((pooled[:, 1:] - pooled[:, :-1]).abs(), pooled[:, -1:]), dim=1).flatten(1, 3)
    return (numbers - numbers[:fit].mean((0, 1))) / numbers[:fit].std((0, 1))


def position_read(tokens: torch.Tensor, slices: int, side: int, fit_clips: int) -> dict[str, float]:
    """Held-out accuracy of reading a token's slice and row from its own features (logistic regression)."""
    per_clip = tokens.shape[1]
    x = tokens.flatten(0, 1).numpy()
    index = np.tile(np.arange(per_clip), len(tokens))
    fit = fit_clips * per_clip
    scores = {}
    for name, target, classes in (("slice", index // (side * side), slices), ("row", (index // side) % side, side)):
        model = LogisticRegression(max_iter=300).fit(x[:fit], target[:fit])
        scores[name] = {"accuracy": model.score(x[fit : 2 * fit], target[fit : 2 * fit]), "chance": 1 / classes}
    return scores


def linear_readout(x: torch.Tensor, labels: torch.Tensor, fit: int, classes: int) -> dict[str, float]:
    """Verb recall@1 of a logistic regression on the flattened read-out (C = 0.1, as the read-out study)."""
    model = LogisticRegression(C=0.1, max_iter=300).fit(x[:fit].flatten(1).numpy(), labels[:fit, 0].numpy())
    scores = {}
    for split, rows in (("train", slice(0, fit)), ("val", slice(fit, None))):
        logits = torch.full((len(x[rows]), classes), -torch.inf)
        logits[:, torch.as_tensor(model.classes_)] = torch.from_numpy(model.predict_log_proba(x[rows].flatten(1).numpy())).float()
        scores[f"{split}_verb_recall@1"] = mean_class_recall(logits, labels[rows, 0], 1)
    return scores


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--world", type=Path, required=True)
    parser.add_argument("--encoder", type=Path, required=True)
    parser.add_argument("--train", type=int, default=200)
    parser.add_argument("--val", type=int, default=100)
    parser.add_argument("--time", type=float, default=1.0, help="anticipation time of every context (s)")
    parser.add_argument("--runs", nargs="*", default=[], help="loss:input:position:epochs[:blocks] probe runs")
    parser.add_argument("--positions", action="store_true", help="read slice and row from single tokens")
    parser.add_argument("--readout-linear", action="store_true", help="logistic regression on the read-out")
    parser.add_argument("--cache", type=Path, help="token cache file (written if absent)")
    parser.add_argument("--output", type=Path, required=True)
    cli = parser.parse_args(argv)
    torch.set_num_threads(1)
    meta = json.loads((cli.world / "meta.json").read_text())["anticipation"]
    sizes = {"num_verbs": len(meta["verbs"]), "num_nouns": len(meta["nouns"]), "num_actions": len(meta["actions"])}
    segments = read_anticipation_manifest(cli.world / "train" / "anticipation.jsonl", cli.world)[: cli.train + cli.val]
    labels = segment_labels(segments)
    model = VJEPA2ForActionAnticipation.from_vjepa2(
        load_encoder(cli.encoder, False, 0), **sizes, frames_per_second=4.0, context_frames=8, max_frames=16)
    cached = torch.load(cli.cache, weights_only=True) if cli.cache is not None and cli.cache.exists() else None
    if cached is not None and len(cached) >= len(segments):  # the first clips of a larger run's cache
        tokens = cached[: len(segments)]
    else:
        draws = np.tile([cli.time, 0.0], (len(segments), 1, 1))
        tokens = extract_anticipation_tokens(model, segments, draws, 64)[0][:, 0]
        if cli.cache is not None:
            torch.save(tokens, cli.cache)
    slices, side = model.config.context_frames // model.config.tubelet_size, 64 // model.config.patch_size
    readout = readout_tokens(tokens, slices, side, cli.train)
    results = {"train": cli.train, "val": cli.val, "time": cli.time, "runs": {}}
    if cli.positions:
        results["position_read"] = position_read(tokens, slices, side, 100)
        print("position read from single tokens:", results["position_read"], flush=True)
    if cli.readout_linear:
        results["readout_linear"] = linear_readout(readout, labels, cli.train, sizes["num_verbs"])
        print("readout-linear:", results["readout_linear"], flush=True)
    for spec in cli.runs:
        loss, source, position, epochs, *blocks = spec.split(":")
        task = (CrossEntropyTask if loss == "ce" else AnticipationTask)(model.config)
        x, grid = (tokens, (slices, side, side)) if source == "tokens" else (readout, (slices, 4, 4))
        x = x[:, None]
        args = ProbeArgs(num_frames=8, resolution=64, learning_rates=(3e-3,), weight_decays=(0.01,), epochs=int(epochs),
                         batch_size=32, num_heads=16, num_blocks=int(blocks[0]) if blocks else 1, seed=0,
                         position_embedding=None if position == "none" else position)
        fit, held = slice(0, cli.train), slice(cli.train, None)
        sweep = train_probe_sweep(model.config, x[fit], labels[fit],
                                  {"train": (x[fit], labels[fit]), "val": (x[held], labels[held])}, task, args, "val", grid)
        head = {k: v for k, v in sweep["heads"][0].items() if "recall" in k}
        results["runs"][spec] = head
        print(spec, {k: round(100 * v, 1) for k, v in head.items()
                     if k.endswith(("verb_recall@1", "action_recall@5"))}, flush=True)
    previous = json.loads(cli.output.read_text()) if cli.output.exists() else {}
    previous.setdefault("runs", {}).update(results.pop("runs"))
    cli.output.parent.mkdir(parents=True, exist_ok=True)
    cli.output.write_text(json.dumps({**previous, **results, "runs": previous["runs"]}, indent=2))
    return results


if __name__ == "__main__":
    main()
