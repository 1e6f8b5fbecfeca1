"""Time synthetic-world generation (render + label + mp4/png encode + manifests) into a temporary directory.

    python scripts/benchmark_synthetic.py --clips 1000 --frames 16 --size 64 --workers 1 2
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from vjepa_vlm.data.synthetic_world import WorldConfig, generate_world, make_clip


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--clips", type=int, default=1000, help="clips in total (80% train, 20% test)")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    n_train = int(args.clips * 0.8)
    n_test = args.clips - n_train
    config = WorldConfig(frames=args.frames, size=args.size)
    probe = min(args.clips, 200)
    make_clip(config, args.seed, "train", 0, None)  # warm-up: loads scikit-learn's digit bank once
    started = time.perf_counter()
    for index in range(probe):
        make_clip(config, args.seed, "train", index, None)
    render_ms = (time.perf_counter() - started) / probe * 1000
    print(f"cpu cores visible: {os.cpu_count()}; sampling+rendering+labels only: {render_ms:.1f} ms/clip over {probe} clips")
    print("| clips | frames | size | workers | seconds | clips/s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for workers in args.workers:
        with tempfile.TemporaryDirectory() as tmp:
            summary = generate_world(
                Path(tmp) / "world", n_train=n_train, n_test=n_test, seed=args.seed,
                frames=args.frames, size=args.size, workers=workers,
            )
        print(f"| {args.clips} | {args.frames} | {args.size} | {workers} | {summary.seconds:.1f} | {args.clips / summary.seconds:.0f} |")


if __name__ == "__main__":
    main()
