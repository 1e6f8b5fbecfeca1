"""Issue 18's comparison tables from finished SmolLM2 VLM runs' files (no model runs here).

    python research/report_smollm2_runs.py --curves lora=runs/s18d/main/pretrained/stage3 \
        full=runs/s18e/full60/pretrained/stage3 --window 60
    python research/report_smollm2_runs.py --pairs runs/s18e/pair_s0/results.json runs/s18e/pair_s1/results.json

`--curves NAME=RUN ...`: stage runs (a stage's `checkpoint.dir`, with the trainer's `metrics.jsonl`) compared per CPU
minute: seconds per step (median, leaving out the first 3 steps, which fill the feature cache and allocate the
optimizer state), peak RSS, and the training loss averaged over windows of `--window` wall seconds (the loss of
one step swings with its mix of captions, letters and option texts; a window averages 10-15 steps).

`--pairs RESULTS ...`: `scripts/vlm_pipeline.py` results (one per seed, each with `--variants pretrained,random`):
every accuracy of the two VLMs per seed, and the difference pretrained - random pooled over the seeds' questions,
± its standard error over questions (each question answered by both VLMs of a seed: a paired difference).
"""

import argparse
import itertools
import json
import math
import statistics
from pathlib import Path

WAYS = {"option likelihood": "option", "option letter": "letter"}
COLUMNS = ("all", "appearance", "counting", "motion", "compositional", "in-distribution")


def read_metrics(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: --curves expects a stage run directory (its checkpoint.dir)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def curves(named_runs: list[str], window: float) -> str:
    runs = {}
    for item in named_runs:
        name, _, path = item.partition("=")
        if not path:
            raise SystemExit(f"--curves expects NAME=RUN_DIR, got {item!r}")
        runs[name] = read_metrics(Path(path))
    lines = ["| run | steps | wall s | s per step (median, steps 4+) | peak RSS GiB | last-window loss |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, rows in runs.items():
        seconds = [b["elapsed_s"] - a["elapsed_s"] for a, b in itertools.pairwise(rows[2:])]
        lines.append(f"| {name} | {rows[-1]['step']} | {rows[-1]['elapsed_s']:.0f} | {statistics.median(seconds):.2f} | "
                     f"{max(r['peak_rss_mib'] for r in rows) / 1024:.2f} | {windowed(rows, window)[-1][1]:.3f} |")
    end = max(rows[-1]["elapsed_s"] for rows in runs.values())
    lines += ["", "| wall seconds | " + " | ".join(f"{name}: mean loss (steps)" for name in runs) + " |",
              "| --- |" + " --- |" * len(runs)]
    per_run = {name: {start: (loss, steps) for start, loss, steps in windowed(rows, window)}
               for name, rows in runs.items()}
    for start in range(math.ceil(end / window)):
        cells = [f"{v[0]:.3f} ({v[1]})" if (v := per_run[name].get(start * window)) else "" for name in runs]
        lines.append(f"| {start * window:.0f}-{(start + 1) * window:.0f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def windowed(rows: list[dict], window: float) -> list[tuple[float, float, int]]:
    """(window start, mean loss, steps) of the steps that ended in each `window`-second slice of wall time."""
    bins: dict[float, list[float]] = {}
    for row in rows:
        bins.setdefault(window * math.floor(row["elapsed_s"] / window), []).append(row["loss"])
    return [(start, statistics.mean(losses), len(losses)) for start, losses in sorted(bins.items())]


def correct(result: dict, vlm: str, way: str) -> list[bool]:
    """Per question, whether `vlm` (e.g. "VLM, pretrained encoder") answered right by `way`."""
    answers = result["answers"][vlm][WAYS[way]]
    key = "answer_letter" if way == "option letter" else "answer"
    return [answer == question[key] for answer, question in zip(answers, result["questions"])]


def pairs(paths: list[str]) -> str:
    results = [json.loads(Path(p).read_text()) for p in paths]
    for path, result in zip(paths, results):
        if "answers" not in result or not {"pretrained encoder", "random encoder"} <= set(result["models"]):
            raise SystemExit(f"{path}: expected a pipeline result with per-question answers of both encoders "
                             "(--variants pretrained,random, current scripts/vlm_pipeline.py)")
    lines = ["| metric | group | " + " | ".join(f"pretrained / random, seed {r['seed']}" for r in results)
             + " | pretrained - random, pooled (± s.e.) | pretrained better / worse (questions) |",
             "| --- | --- |" + " --- |" * (len(results) + 2)]
    for video in ("", ", another clip's video"):
        for way in WAYS:
            for group in COLUMNS:
                cells, differences = [], []
                for result in results:
                    keep = [group == "all" or group in (q["question_type"], q["clips"]) for q in result["questions"]]
                    if not any(keep):
                        cells.append("")
                        continue
                    a, b = (correct(result, f"VLM, {encoder} encoder{video}", way) for encoder in ("pretrained", "random"))
                    a, b = [x for x, k in zip(a, keep) if k], [x for x, k in zip(b, keep) if k]
                    cells.append(f"{100 * sum(a) / len(a):.1f} / {100 * sum(b) / len(b):.1f}")
                    differences += [int(x) - int(y) for x, y in zip(a, b)]
                if not differences:
                    continue
                mean = statistics.mean(differences)
                error = statistics.stdev(differences) / math.sqrt(len(differences))
                better, worse = differences.count(1), differences.count(-1)
                lines.append(f"| {way}{video} | {group} ({len(differences)}) | " + " | ".join(cells)
                             + f" | {100 * mean:+.1f} ± {100 * error:.1f} | {better} / {worse} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--curves", nargs="+", metavar="NAME=RUN_DIR")
    parser.add_argument("--window", type=float, default=60.0, help="seconds of wall time per loss average")
    parser.add_argument("--pairs", nargs="+", metavar="RESULTS_JSON")
    args = parser.parse_args()
    if not (args.curves or args.pairs):
        parser.error("give --curves and/or --pairs")
    if args.curves:
        print(curves(args.curves, args.window))
    if args.pairs:
        print(pairs(args.pairs))


if __name__ == "__main__":
    main()
