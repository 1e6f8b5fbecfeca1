"""Two VLM variants compared seed by seed from `research/diagnose_vlm_mc.py` logs: is A better than B?

    python research/compare_vlm_seeds.py --a 'runs/h/pre_s*.log' --b 'runs/h/rand_s*.log' --names pretrained,random

At one seed the harness draws the same LLM and projector init and the same batch order whatever the encoder (the
pretrained weights are loaded over a tower drawn from the same random stream), so runs of two variants at one
seed are paired, and the seed-to-seed spread of the LLM's init, which is larger than the gap being looked for,
cancels in the difference. For each metric (the MC questions scored by option likelihood, the harness's
"MC cloze acc" lines: overall, per question type, and overall with another clip's video; and the held-out
caption loss with the right video and with another clip's, a per-token measure with less sampling noise than
accuracy) this prints both variants at every seed both have, the mean paired difference A - B with its standard
error, how many seeds A wins (a higher accuracy, a lower loss), and a two-sided paired t-test.

Only each log's last finished evaluation is read (one that got as far as its closing `EVAL step` line); a log
that has not finished one is reported and left out.
"""

from __future__ import annotations

import argparse
import ast
import glob
import math
import re
import statistics
import sys
from pathlib import Path

from scipy import stats

CLOZE_LINE = re.compile(r"^\s*MC cloze acc \((right|swapped) video\): (.*)$")
CAPTION_LINE = re.compile(r"^\s*caption loss right (\S+) swapped (\S+)$")
EVAL_END = re.compile(r"^EVAL step \d+:")
LOSS_PREFIX = "caption_loss/"


def read_log(path: Path) -> tuple[int, dict[str, float]] | None:
    """(seed, metrics) of a harness log's last finished evaluation, or None if it has none. Accuracies are named
    `right/<group>` and `swapped/<group>`, in %; caption losses `caption_loss/right` and `caption_loss/swapped`."""
    lines = path.read_text().splitlines()
    if not lines:
        return None
    try:
        seed = ast.literal_eval(lines[0])["seed"]
    except (ValueError, SyntaxError, KeyError, TypeError) as err:
        raise SystemExit(f"{path}: the first line is not the harness's argument dict ({err})") from None
    metrics: dict[str, float] = {}
    finished: dict[str, float] = {}
    for line in lines:
        if EVAL_END.match(line):
            finished, metrics = metrics, {}
            continue
        match = CLOZE_LINE.match(line)
        if match:
            video, fields = match.groups()
            words = fields.split()
            for name, value in zip(words[0::2], words[1::2]):
                metrics[f"{video}/{name}"] = float(value)
        match = CAPTION_LINE.match(line)
        if match:
            metrics[f"{LOSS_PREFIX}right"], metrics[f"{LOSS_PREFIX}swapped"] = map(float, match.groups())
    return (seed, finished) if finished else None


def read_variant(pattern: str) -> dict[int, dict[str, float]]:
    paths = sorted(Path(p) for p in glob.glob(pattern))
    if not paths:
        raise SystemExit(f"no log matches {pattern!r}")
    runs: dict[int, dict[str, float]] = {}
    for path in paths:
        parsed = read_log(path)
        if parsed is None:
            print(f"{path}: no finished evaluation yet, left out", file=sys.stderr)
            continue
        seed, metrics = parsed
        if seed in runs:
            raise SystemExit(f"{path}: a second log of seed {seed} in {pattern!r}")
        runs[seed] = metrics
    return runs


def paired_summary(a: list[float], b: list[float], lower_is_better: bool = False) -> dict[str, float]:
    """Mean difference a - b, its standard error, wins of a, and the paired t-test's two-sided p."""
    diffs = [x - y for x, y in zip(a, b)]
    sign = -1 if lower_is_better else 1
    n = len(diffs)
    se = statistics.stdev(diffs) / math.sqrt(n) if n > 1 else math.nan
    p = stats.ttest_rel(a, b).pvalue if n > 1 and len(set(diffs)) > 1 else math.nan
    return {"mean_diff": statistics.fmean(diffs), "se": se, "wins": sum(sign * d > 0 for d in diffs),
            "ties": sum(d == 0 for d in diffs), "p": float(p)}


def seed_values(values: list[float], digits: int) -> str:
    """A table cell: the value at every seed, then their mean."""
    return f"{' / '.join(f'{x:.{digits}f}' for x in values)} (mean {statistics.fmean(values):.{digits}f})"


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--a", required=True, help="glob of variant A's harness logs (one per seed)")
    p.add_argument("--b", required=True, help="glob of variant B's harness logs (one per seed)")
    p.add_argument("--names", default="A,B", help="the two variants' names, comma-separated")
    args = p.parse_args(argv)
    name_a, name_b = args.names.split(",")
    runs_a, runs_b = read_variant(args.a), read_variant(args.b)
    seeds = sorted(set(runs_a) & set(runs_b))
    if not seeds:
        raise SystemExit(f"no seed has a finished log in both {args.a!r} and {args.b!r}")
    metrics = [m for m in runs_a[seeds[0]] if all(m in runs_a[s] and m in runs_b[s] for s in seeds)]
    print(f"seeds {seeds}; MC questions scored by option likelihood, accuracy %; caption loss in nats per token")
    print(f"| metric | {name_a} | {name_b} | {name_a} - {name_b} (mean ± s.e.) | {name_a} wins | paired t-test p |")
    print("| --- | --- | --- | --- | --- | --- |")
    summaries = {}
    for metric in metrics:
        a = [runs_a[s][metric] for s in seeds]
        b = [runs_b[s][metric] for s in seeds]
        is_loss = metric.startswith(LOSS_PREFIX)
        summary = summaries[metric] = paired_summary(a, b, lower_is_better=is_loss)
        digits = 3 if is_loss else 1
        ties = f" ({summary['ties']} tied)" if summary["ties"] else ""
        print(f"| {metric} | {seed_values(a, digits)} | {seed_values(b, digits)} "
              f"| {summary['mean_diff']:+.{digits}f} ± {summary['se']:.{digits}f} | {summary['wins']} of {len(seeds)}"
              f"{ties} | {summary['p']:.2f} |")
    return summaries


if __name__ == "__main__":
    main()
