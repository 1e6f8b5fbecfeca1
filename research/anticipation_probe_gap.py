"""Why does the attentive anticipation probe read less of the context than the linear read-out: the probe, or the
contexts it trains on?

    python research/anticipation_probe_gap.py --world runs/ant/world_shared \
        --encoder runs/ant/pt_fastpred_shared/checkpoints/step_00001600 --seeds 0 1 2 --output runs/gap.json

The two measurements differ twice. The slice diagnostic's linear read-out (`anticipation_future_slice.py`) trains
on one context per clip at the test anticipation time (t = 1 s, point 0); the probe of `run_anticipation` trains on
`--train-draws` contexts per clip at the protocol's t ~ U(0.25, 1.75) s and point U(0, 0.25). And one is a logistic
regression on hand-made numbers (slices pooled to 4 x 4, absolute differences of consecutive slices, the last
slice), the other an attentive pooler on the raw tokens. Here both readers train on both kinds of context, on the
same clips: the training videos left after `run_anticipation`'s validation split (same `--val-fraction` and
`--val-seed`, so the draws are that command's), tested on the test split at 1 s. The probe is `run_anticipation`'s
(`train_probe_sweep` with `AnticipationTask`, its head chosen on the validation split at 1 s); its row trained on
the protocol's draws is that command's encoder row.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
from pathlib import Path

import numpy as np
import torch
from vjepa_vlm.eval.anticipation import (
    AnticipationSampling,
    AnticipationTask,
    extract_anticipation_tokens,
    segment_labels,
)
from vjepa_vlm.eval.probe import ProbeArgs, stratified_split, train_probe_sweep
from vjepa_vlm.scripts.run_anticipation import load_data, resolve_encoder_dir
from vjepa_vlm.scripts.run_probe import load_encoder

from vjepa_vlm.modeling_vjepa2_anticipation import (
    VJEPA2ForActionAnticipation,
    anticipation_grid,
)

METRICS = ("verb_recall@1", "noun_recall@5", "action_recall@5")


def sibling(name: str):
    """`research/<name>.py`: research is a folder of scripts, so its read-out is loaded from the file."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--world", type=Path, required=True)
    parser.add_argument("--encoder", type=Path, required=True,
                        help="VJEPA2Model directory or pretraining checkpoint folder (its online/)")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--val-seed", type=int, default=0)
    parser.add_argument("--train-draws", type=int, default=2)
    parser.add_argument("--time", type=float, default=1.0, help="test (and validation) anticipation time (s)")
    parser.add_argument("--context-frames", type=int, default=8)
    parser.add_argument("--fps", type=float, default=4.0)
    parser.add_argument("--max-frames", type=int, default=16)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--C", type=float, default=0.1, help="inverse L2 strength of the logistic regressions")
    parser.add_argument("--max-iter", type=int, default=300)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="probe seeds")
    parser.add_argument("--learning-rates", type=float, nargs="+", default=[3e-3])
    parser.add_argument("--weight-decays", type=float, nargs="+", default=[0.01])
    parser.add_argument("--epochs", type=int, default=30,
                        help="probe epochs on the protocol's draws; the one-context-per-clip probe gets as many "
                             "optimizer steps (epochs x train-draws)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-heads", type=int, default=16)
    parser.add_argument("--num-blocks", type=int, default=1)
    parser.add_argument("--output", type=Path, required=True)
    cli = parser.parse_args(argv)
    torch.set_num_threads(1)
    future_slice = sibling("anticipation_future_slice")
    train, test, (verbs, nouns, actions) = load_data(argparse.Namespace(world=cli.world))
    model = VJEPA2ForActionAnticipation.from_vjepa2(
        load_encoder(resolve_encoder_dir(cli.encoder, "online"), False, 0), num_verbs=verbs, num_nouns=nouns,
        num_actions=actions, frames_per_second=cli.fps, context_frames=cli.context_frames, max_frames=cli.max_frames,
        pooler_num_attention_heads=cli.num_heads, num_pooler_layers=cli.num_blocks - 1,
        probe_position_embedding="sincos")
    kept, held = stratified_split(segment_labels(train)[:, 2], cli.val_fraction, cli.val_seed)
    fit, val = [train[i] for i in kept.tolist()], [train[i] for i in held.tolist()]
    sampling = AnticipationSampling(train_draws=cli.train_draws)
    at = lambda segments: np.tile([cli.time, 0.0], (len(segments), 1, 1))
    contexts = {"draws": (fit, sampling.draws(len(fit), cli.val_seed)), "at_time": (fit, at(fit)),
                "val": (val, at(val)), "test": (test, at(test))}
    tokens = {name: extract_anticipation_tokens(model, segments, draws, cli.resolution)[0]
              for name, (segments, draws) in contexts.items()}
    labels = {name: segment_labels(segments) for name, (segments, _) in contexts.items()}
    side = cli.resolution // model.config.patch_size
    per_slice = side * side

    def readout(x: torch.Tensor) -> np.ndarray:  # (items, draws, N, D) -> (items * draws, features)
        return future_slice.readout(x.flatten(0, 1).unflatten(1, (-1, per_slice)), side)

    results = {"world": str(cli.world), "encoder": str(cli.encoder), "time": cli.time,
               "num_items": {name: len(segments) for name, (segments, _) in contexts.items()},
               "linear": {}, "probe": {}}
    for name in ("at_time", "draws"):
        repeated = labels[name].repeat_interleave(tokens[name].shape[1], dim=0)
        scores = future_slice.recall(readout(tokens[name]), readout(tokens["test"]), repeated, labels["test"], cli.C,
                                     cli.max_iter)
        results["linear"][name] = {m: scores[m] for m in METRICS}
        print(f"linear read-out trained on {name}: " + " ".join(f"{m} {100 * scores[m]:.1f}" for m in METRICS),
              flush=True)
    task = AnticipationTask(model.config)
    grid = anticipation_grid(tokens["test"].shape[-2], side, side)
    for name in ("at_time", "draws"):
        runs = []
        for seed in cli.seeds:
            epochs = cli.epochs * (cli.train_draws if name == "at_time" else 1)
            args = ProbeArgs(num_frames=cli.context_frames, resolution=cli.resolution,
                             learning_rates=tuple(cli.learning_rates), weight_decays=tuple(cli.weight_decays),
                             epochs=epochs, batch_size=cli.batch_size, num_heads=cli.num_heads,
                             num_blocks=cli.num_blocks, position_embedding="sincos", seed=seed)
            eval_sets = {split: (tokens[split], labels[split]) for split in ("val", "test")}
            best = train_probe_sweep(model.config, tokens[name], labels[name], eval_sets, task, args, "val", grid)["best"]
            runs.append({"seed": seed, "lr": best["lr"], "weight_decay": best["weight_decay"],
                         **{m: best[f"test_{m}"] for m in METRICS}})
            print(f"probe trained on {name}, seed {seed}, lr {best['lr']:g} wd {best['weight_decay']:g}: "
                  + " ".join(f"{m} {100 * best[f'test_{m}']:.1f}" for m in METRICS), flush=True)
        results["probe"][name] = {
            "seeds": runs,
            "mean": {m: statistics.mean(run[m] for run in runs) for m in METRICS},
        }
    cli.output.parent.mkdir(parents=True, exist_ok=True)
    cli.output.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
