"""Cost of one planned action (BENCHMARKS.md, "Planning"): wall time of `VJEPA2WorldModel.plan` per CEM setting on
a saved world model, batched (all samples of an iteration in one predictor call) against one sample at a time, and
the FLOPs of one action of the paper's preset counted on the `meta` device (no weights, no memory).

    python scripts/benchmark_planning.py --model runs/ac_tiny_cont/checkpoints/step_00000600/model \\
        --settings 800x10,100x3,50x3 --sequential-samples 50
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch.utils.flop_counter import FlopCounterMode
from vjepa_vlm.eval.planning import FETCH_CEM, FETCH_STATE_SCALE
from vjepa_vlm.vision.planner import CEMConfig, cem_plan

from vjepa_vlm import VJEPA2WorldModel, VJEPA2WorldModelConfig


def _inputs(model, seed: int = 0):
    config = model.config.predictor_config
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(1, model.tokens_per_frame, config.encoder_hidden_size, generator=generator)
    goal = torch.randn(model.tokens_per_frame, config.encoder_hidden_size, generator=generator)
    return features, torch.zeros(1, config.state_dim), goal


def time_plan(model, cem: CEMConfig, repeats: int) -> float:
    """Median seconds of one planned action (after one warm-up)."""
    features, states, goal = _inputs(model)
    scale = torch.tensor(FETCH_STATE_SCALE)
    times = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        model.plan(features, states, goal, cem, state_scale=scale)
        times.append(time.perf_counter() - started)
    return sorted(times[1:])[len(times[1:]) // 2]


@torch.no_grad()
def time_sequential(model, samples: int) -> tuple[float, float]:
    """Seconds to score `samples` candidates of one CEM iteration in one batch, and one at a time."""
    features, states, goal = _inputs(model)
    candidates = torch.zeros(samples, 1, model.config.predictor_config.action_dim)

    def batched(actions):
        return model.rollout(features.expand(len(actions), -1, -1, -1), actions, states.expand(len(actions), -1, -1), 1)[:, -1]

    def one_by_one(actions):
        return torch.cat([batched(actions[i : i + 1]) for i in range(len(actions))])

    cem = CEMConfig(samples=samples, top_k=1, iterations=1)
    result = []
    for imagine in (batched, one_by_one):
        imagine(candidates)  # warm-up
        started = time.perf_counter()
        cem_plan(imagine, goal, candidates.shape[-1], cem)
        result.append(time.perf_counter() - started)
    return result[0], result[1]


def meta_flops(preset: str, cem: CEMConfig) -> dict:
    """FLOPs of one planned action of `preset`: encoding the current frame once, plus samples x iterations one-step
    predictions from one context frame (horizon 1, as in the paper)."""
    with torch.device("meta"):
        model = VJEPA2WorldModel(VJEPA2WorldModelConfig.from_preset(preset)).eval()
        config = model.config.predictor_config
        frame = torch.zeros(1, 3, config.crop_size, config.crop_size)
        features = torch.zeros(1, 1, model.tokens_per_frame, config.encoder_hidden_size)
        actions, states = torch.zeros(1, 1, config.action_dim), torch.zeros(1, 1, config.state_dim)
        with torch.no_grad():
            with FlopCounterMode(display=False) as encode:
                model.encoder(frame)  # as `encode_frames` calls it: one frame, repeated into one tubelet
            with FlopCounterMode(display=False) as predict:
                model(features, actions, states)
    per_prediction = predict.get_total_flops()
    return {
        "preset": preset, "encode_frame_flops": encode.get_total_flops(), "one_prediction_flops": per_prediction,
        "samples": cem.samples, "iterations": cem.iterations,
        "action_flops": encode.get_total_flops() + per_prediction * cem.samples * cem.iterations * cem.horizon,
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a saved VJEPA2WorldModel folder")
    parser.add_argument("--settings", default="800x10,100x3,50x3", help="comma-separated SAMPLESxITERATIONS")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sequential-samples", type=int, default=50)
    parser.add_argument("--flops-preset", default="vjepa2-ac-vitg")
    args = parser.parse_args(argv)
    model = VJEPA2WorldModel.from_pretrained(args.model).eval()
    results = {"threads": torch.get_num_threads(), "seconds_per_action": {}}
    for setting in args.settings.split(","):
        samples, iterations = (int(v) for v in setting.split("x"))
        cem = CEMConfig(samples=samples, top_k=min(args.top_k, samples), iterations=iterations,
                        max_norm=FETCH_CEM.max_norm, gripper_dim=FETCH_CEM.gripper_dim, gripper_range=FETCH_CEM.gripper_range)
        results["seconds_per_action"][setting] = round(time_plan(model, cem, args.repeats), 3)
        print(setting, results["seconds_per_action"][setting], flush=True)
    batched, sequential = time_sequential(model, args.sequential_samples)
    results["one_iteration"] = {"samples": args.sequential_samples, "batched_s": round(batched, 3),
                                "one_at_a_time_s": round(sequential, 3), "speedup": round(sequential / batched, 1)}
    results["paper_flops"] = meta_flops(args.flops_preset, CEMConfig(samples=800, top_k=10, iterations=10))
    print(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
