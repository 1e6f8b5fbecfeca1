"""Training-step throughput and peak memory of the tiny stage-3 recipe: 1 process, then 2-process DDP / ZeRO-2 / ZeRO-3.

    python scripts/benchmark_training.py --steps 8 --out runs/bench_training

Each backend runs `train/stage3.py` (the embedded default: tiny encoder + tiny Qwen2 LLM on the synthetic world's
video QA and captions) under `accelerate launch` on CPU (gloo). Reported per backend: median samples/s and
supervised tokens/s over the steps after the first two (warm-up), and the peak resident memory of the largest
process. Prints a Markdown table and writes it, with the raw metrics, to `--out/results.json` (atomically).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--mixed_precision", "no",
          "--dynamo_backend", "no"]
BACKENDS = {
    "1 process": (["--num_processes", "1"], ["distributed.backend=ddp"]),
    "DDP x2": (["--num_processes", "2", "--multi_gpu"], ["distributed.backend=ddp"]),
    "ZeRO-2 x2": (["--num_processes", "2", "--multi_gpu"],
                  ["distributed.backend=deepspeed", f"distributed.deepspeed_config={REPO}/train/deepspeed_zero2.json"]),
    "ZeRO-3 x2": (["--num_processes", "2", "--multi_gpu"],
                  ["distributed.backend=deepspeed", f"distributed.deepspeed_config={REPO}/train/deepspeed_zero3.json"]),
}


def run_backend(name: str, steps: int, batch_size: int, micro_batch_size: int, run_dir: Path) -> dict:
    launch, overrides = BACKENDS[name]
    command = [*LAUNCH, *launch, str(REPO / "train" / "stage3.py"), f"steps={steps}", f"batch_size={batch_size}",
               f"micro_batch_size={micro_batch_size}", f"checkpoint.dir={run_dir}", f"checkpoint.every_steps={steps}",
               "checkpoint.resume=false", "logging.tracker=none", "logging.progress_bar=false", *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu"}
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{result.stderr[-4000:]}")
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    timed = metrics[2:] if len(metrics) > 2 else metrics
    return {
        "samples_per_s": statistics.median(m["samples_per_s"] for m in timed),
        "tokens_per_s": statistics.median(m["tokens_per_s"] for m in timed),
        "peak_rss_mib": max(m["peak_rss_mib"] for m in metrics),
        "final_loss": metrics[-1]["loss"],
        "metrics": metrics,
    }


def table(results: dict, batch_size: int, micro_batch_size: int) -> str:
    lines = [f"global batch {batch_size}, micro batch {micro_batch_size}",
             "", "| backend | samples/s | supervised tokens/s | peak RSS / process (MiB) | loss at last step |",
             "| --- | --- | --- | --- | --- |"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['samples_per_s']:.1f} | {r['tokens_per_s']:.0f} | {r['peak_rss_mib']:.0f} | "
                     f"{r['final_loss']:.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--micro_batch_size", type=int, default=8)
    parser.add_argument("--backends", default=",".join(BACKENDS), help=f"comma-separated subset of {list(BACKENDS)}")
    parser.add_argument("--out", default="runs/bench_training")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in args.backends.split(","):
        if name not in BACKENDS:
            raise SystemExit(f"--backends: unknown backend {name!r}; choose from {list(BACKENDS)}")
        run_dir = out / name.replace(" ", "_").lower()
        print(f"running {name} ...", flush=True)
        results[name] = run_backend(name, args.steps, args.batch_size, args.micro_batch_size, run_dir)
    text = table(results, args.batch_size, args.micro_batch_size)
    print(text)
    with tempfile.NamedTemporaryFile("w", dir=out, suffix=".tmp", delete=False) as handle:
        json.dump({"table": text, "results": results}, handle, indent=1)
    os.replace(handle.name, out / "results.json")
    return results


if __name__ == "__main__":
    main()
