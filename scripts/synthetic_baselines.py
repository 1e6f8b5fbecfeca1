"""Baselines of a generated synthetic world: QA chance / majority / blind text-only, motion from pixels.

    python scripts/make_synthetic_data.py --out runs/world_baselines --train 2000 --test 500 --seed 0
    python scripts/synthetic_baselines.py --data runs/world_baselines
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vjepa_vlm.data.synthetic_baselines import motion_pixel_baselines, qa_baselines


def _table(title: str, results: dict[str, dict[str, float]]) -> str:
    columns = list(dict.fromkeys(key for row in results.values() for key in row))
    lines = [f"| {title} | " + " | ".join(columns) + " |", "| --- " * (len(columns) + 1) + "|"]
    for name, row in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * row[c]:.1f}" if c in row else "" for c in columns) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--data", required=True, help="a directory written by make_synthetic_data.py")
    parser.add_argument("--frames", type=int, default=8, help="frames of the multi-frame pixel classifier")
    args = parser.parse_args(argv)
    data = Path(args.data)
    if not (data / "meta.json").is_file():
        print(f"error: {data} is not a synthetic world (no meta.json); generate one with make_synthetic_data.py", file=sys.stderr)
        return 2
    for manifest in ("video_qa", "image_qa"):
        results = qa_baselines(data / "train" / f"{manifest}.jsonl", data / "test" / f"{manifest}.jsonl")
        print(_table(f"{manifest} test accuracy (%)", results), end="\n\n")
    motion = motion_pixel_baselines(data / "train" / "motion_classification.jsonl", data / "test" / "motion_classification.jsonl", frame_counts=(1, args.frames))
    print(_table("motion class test accuracy (%)", motion))
    return 0


if __name__ == "__main__":
    sys.exit(main())
