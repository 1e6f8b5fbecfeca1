"""Table 20 from `run_anticipation` result JSONs, and one features row minus another paired by probe seed.

    python research/anticipation_paired_table.py runs/t20_s0_5.json runs/t20_s6_11.json --times 0.25 1 1.75

Files of one setting that ran different probe seeds are merged (a seed in two files is refused). Per anticipation
time: every features row's test recall (%, mean ± sample std over seeds), then `--minus`'s paired differences (e.g.
both - encoder) per seed, their mean ± std, the standard error of the mean (std / sqrt(seeds)), the paired t
statistic (mean / standard error) and how many seeds are above zero; `--base-results` takes the base row from
other files (a second setting run on the same split, draws and seeds). Differences of one seed's two rows share the
seed's split, draws and test clips, so their spread is the probe's, not the data's. `--heads` prints instead every
head of a multi-head sweep (one per learning rate and weight decay): its validation and test recall over seeds, the
numbers a setting is chosen by (validation) and what it then reads (test).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

METRICS = ("verb_recall@1", "noun_recall@5", "action_recall@5")


def merge_seeds(paths: list[Path]) -> dict[str, dict[int, dict]]:
    """{features row: {seed: that seed's best head}} over every file."""
    rows: dict[str, dict[int, dict]] = {}
    for path in paths:
        summary = json.loads(path.read_text())
        if not summary.get("complete", False):
            print(f"note: {path} is not complete (a run stopped part-way); its finished seeds are used")
        for name, result in summary["features"].items():
            for run in result["seeds"]:
                seeds = rows.setdefault(name, {})
                if run["seed"] in seeds:
                    raise ValueError(f"{path}: probe seed {run['seed']} of the {name} row is also in an earlier file")
                seeds[run["seed"]] = run["best"]
    return rows


def head_table(paths: list[Path], times: list[float]) -> str:
    """Every sweep head's recall (%, mean ± std over the seeds of every file and features row)."""
    lines = ["| features | lr | wd | seeds | val " + " / ".join(METRICS) + " | "
             + " | ".join(f"test {t:g} s" for t in times) + " |", "| --- " * (5 + len(times)) + "|"]
    for path in paths:
        for name, result in json.loads(path.read_text())["features"].items():
            runs = result["seeds"]
            for index, head in enumerate(runs[0]["heads"]):
                heads = [run["heads"][index] for run in runs]
                splits = ["val"] + [f"test@{t:g}s" for t in times]
                cells = [" / ".join(cell([h[f"{split}_{m}"] for h in heads]) for m in METRICS) for split in splits]
                lines.append(f"| {name} | {head['lr']:g} | {head['weight_decay']:g} | {len(runs)} | "
                             + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired(first: dict[int, dict], second: dict[int, dict], key: str) -> dict:
    """`first - second` over their common seeds: per seed, mean, std, standard error, t, positives."""
    seeds = sorted(set(first) & set(second))
    if len(seeds) < 2:
        raise ValueError(f"a paired difference needs two or more common seeds, got {seeds}")
    diffs = [100 * (first[s][key] - second[s][key]) for s in seeds]
    mean, std = statistics.mean(diffs), statistics.stdev(diffs)
    error = std / math.sqrt(len(diffs))
    return {"seeds": seeds, "diffs": diffs, "mean": mean, "std": std, "sem": error,
            "t": mean / error if error > 0 else math.inf, "positive": sum(d > 0 for d in diffs)}


def cell(values: list[float]) -> str:
    values = [100 * v for v in values]
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}" if len(values) > 1 else f"{values[0]:.1f}"


def tables(rows: dict[str, dict[int, dict]], times: list[float], minus: tuple[str, str],
           base_rows: dict[str, dict[int, dict]] | None = None) -> str:
    """Every row's recall, then `minus`'s paired differences; the base row from `base_rows` when given."""
    lines = ["| features | seeds | t (s) | " + " / ".join(METRICS) + " |", "| --- | --- | --- | --- |"]
    for name, seeds in rows.items():
        for t in times:
            cells = [cell([best[f"test@{t:g}s_{m}"] for best in seeds.values()]) for m in METRICS]
            lines.append(f"| {name} | {len(seeds)} | {t:g} | " + " / ".join(cells) + " |")
    first, second = minus
    base = rows if base_rows is None else base_rows
    label = second if base_rows is None else f"{second} (base files)"
    if first in rows and second in base:
        lines += ["", f"| {first} - {label} | t (s) | per seed | mean ± std | s.e. | t | seeds > 0 |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for m in METRICS:
            for t in times:
                d = paired(rows[first], base[second], f"test@{t:g}s_{m}")
                lines.append(f"| {m} | {t:g} | " + ", ".join(f"{x:+.1f}" for x in d["diffs"])
                             + f" | {d['mean']:+.1f} ± {d['std']:.1f} | {d['sem']:.1f} | {d['t']:.1f} | "
                             f"{d['positive']} of {len(d['diffs'])} |")
    return "\n".join(lines)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("results", type=Path, nargs="+", help="run_anticipation result JSONs of one setting")
    parser.add_argument("--times", type=float, nargs="+", default=[1.0], help="test anticipation times (s)")
    parser.add_argument("--minus", nargs=2, default=["both", "encoder"], metavar=("ROW", "BASE"))
    parser.add_argument("--heads", action="store_true", help="every sweep head's validation and test recall")
    parser.add_argument("--base-results", type=Path, nargs="+",
                        help="take --minus's BASE row from these JSONs (another setting of the same split, draws and "
                             "seeds, e.g. early against late fusion)")
    cli = parser.parse_args(argv)
    if cli.heads:
        text = head_table(cli.results, cli.times)
    else:
        base = merge_seeds(cli.base_results) if cli.base_results else None
        text = tables(merge_seeds(cli.results), cli.times, tuple(cli.minus), base)
    print(text)
    return text


if __name__ == "__main__":
    main()
