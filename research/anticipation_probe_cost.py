"""Where does a `vjepa-anticipation` run spend its time? Context encoding against probe training, per probe depth.

    python research/anticipation_probe_cost.py --world runs/ant/world --encoder ENC --output runs/ant/cost.json

Times, on the threads given, (1) `extract_anticipation_tokens` (encoder + predictor) on `--contexts` training
contexts, scaled to the run's context count, and (2) training steps of one probe head (forward, focal loss,
backward, AdamW) on random tokens of the encoder (4 slices), predictor (1 slice) and both (5 slices) inputs, for
each `--blocks` depth, scaled to the run's steps (epochs x samples / batch). A run costs about (1) once, plus
(2) x heads x seeds for every features row.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from vjepa_vlm.data.epic_kitchens import read_anticipation_manifest
from vjepa_vlm.eval.anticipation import AnticipationSampling, AnticipationTask, extract_anticipation_tokens
from vjepa_vlm.eval.probe import MultiHeadProbe, ProbeArgs
from vjepa_vlm.modeling_vjepa2_anticipation import VJEPA2ForActionAnticipation, anticipation_grid
from vjepa_vlm.scripts.run_probe import load_encoder


def step_seconds(model, task, blocks: int, num_tokens: int, batch: int, steps: int, num_heads: int) -> float:
    """Mean wall time of one training step of one head, after 3 warm-up steps."""
    args = ProbeArgs(num_blocks=blocks, learning_rates=(3e-3,), weight_decays=(0.01,), num_heads=num_heads,
                     position_embedding="sincos")
    probe = MultiHeadProbe(model.config, task, args)
    optimizer = torch.optim.AdamW(probe.parameters())
    side = model.config.crop_size // model.config.patch_size
    tokens = torch.randn(batch, num_tokens, model.config.hidden_size)
    labels = torch.stack([torch.randint(0, size, (batch,)) for size in task.sizes], dim=1)
    grid = anticipation_grid(num_tokens, side, side)
    for step in range(steps + 3):
        if step == 3:
            start = time.perf_counter()
        loss = task.loss(probe(tokens, grid), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / steps


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--world", type=Path, required=True)
    parser.add_argument("--encoder", type=Path, required=True)
    parser.add_argument("--contexts", type=int, default=64, help="training contexts to time the encoding on")
    parser.add_argument("--run-contexts", type=int, default=5400, help="contexts of the run to scale to")
    parser.add_argument("--run-samples", type=int, default=1800, help="probe training samples of the run")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--blocks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per setting")
    parser.add_argument("--context-frames", type=int, default=8)
    parser.add_argument("--fps", type=float, default=4.0)
    parser.add_argument("--max-frames", type=int, default=16)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--num-heads", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, required=True)
    cli = parser.parse_args(argv)
    torch.set_num_threads(cli.threads)

    meta = json.loads((cli.world / "meta.json").read_text())["anticipation"]
    segments = read_anticipation_manifest(cli.world / "train" / "anticipation.jsonl", cli.world)[: cli.contexts]
    model = VJEPA2ForActionAnticipation.from_vjepa2(
        load_encoder(cli.encoder, False, 0), num_verbs=len(meta["verbs"]), num_nouns=len(meta["nouns"]),
        num_actions=len(meta["actions"]), frames_per_second=cli.fps, context_frames=cli.context_frames,
        max_frames=cli.max_frames, pooler_num_attention_heads=cli.num_heads,
    )
    draws = AnticipationSampling(train_draws=1).draws(len(segments), 0)
    start = time.perf_counter()
    encoded, predicted = extract_anticipation_tokens(model, segments, draws, cli.resolution)
    encode = (time.perf_counter() - start) / len(segments)
    rows = {"encoder": encoded.shape[-2], "predictor": predicted.shape[-2]}
    rows["both"] = rows["encoder"] + rows["predictor"]
    run_steps = cli.epochs * math.ceil(cli.run_samples / cli.batch_size)
    task = AnticipationTask(model.config)
    heads = []
    for blocks in cli.blocks:
        for features, num_tokens in rows.items():
            seconds = step_seconds(model, task, blocks, num_tokens, cli.batch_size, cli.steps, cli.num_heads)
            heads.append({"blocks": blocks, "features": features, "tokens": num_tokens, "step_s": seconds,
                          "head_s": seconds * run_steps})
    summary = {"threads": cli.threads, "encode_s_per_context": encode, "run_encode_s": encode * cli.run_contexts,
               "run_steps": run_steps, "heads": heads}
    print(f"encoding: {encode * 1000:.0f} ms per context, {encode * cli.run_contexts:.0f} s for {cli.run_contexts}")
    print("| probe blocks | features | tokens | ms per step | s per head (" + f"{run_steps} steps) |")
    print("| --- | --- | --- | --- | --- |")
    for head in heads:
        print(f"| {head['blocks']} | {head['features']} | {head['tokens']} | {1000 * head['step_s']:.0f} | "
              f"{head['head_s']:.0f} |")
    cli.output.parent.mkdir(parents=True, exist_ok=True)
    cli.output.write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
