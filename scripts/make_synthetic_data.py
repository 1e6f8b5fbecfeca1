"""Generate the synthetic video world (videos, images, manifests) into a new directory.

    python scripts/make_synthetic_data.py --out data/synth --train 1000 --test 200 --seed 0 [--frames 16 --size 64]
"""

from __future__ import annotations

import argparse
import sys

from vjepa_vlm.data.manifests import OutputExistsError
from vjepa_vlm.data.synthetic_motion import MOTION_NAMES
from vjepa_vlm.data.synthetic_world import WorldConfig, generate_world


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = WorldConfig()
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--out", required=True, help="output directory (must not exist unless --overwrite)")
    parser.add_argument("--train", type=int, required=True, help="number of train clips")
    parser.add_argument("--test", type=int, required=True, help="number of test clips")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--frames", type=int, default=defaults.frames, help="frames per clip, 16-64")
    parser.add_argument("--size", type=int, default=defaults.size, help="frame side in pixels, 64-256, even")
    parser.add_argument("--fps", type=float, default=defaults.fps)
    parser.add_argument("--max-objects", type=int, default=defaults.max_objects, help="objects per scene, 1-3")
    parser.add_argument("--motions", nargs="+", default=None, metavar="NAME", help=f"subset of: {' '.join(MOTION_NAMES)}")
    parser.add_argument("--anticipation-s", type=float, default=defaults.anticipation_s)
    parser.add_argument("--compositional-fraction", type=float, default=defaults.compositional_fraction)
    parser.add_argument("--shared-event-motion", action="store_true",
                        help="bounce, stop and push movers share one speed range and 8 directions: only what lies ahead tells the event")
    parser.add_argument("--workers", type=int, default=1, help="processes (the project machine has 2 cores)")
    parser.add_argument("--overwrite", action="store_true", help="atomically replace an existing --out")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        summary = generate_world(
            args.out, n_train=args.train, n_test=args.test, seed=args.seed, frames=args.frames, size=args.size,
            fps=args.fps, max_objects=args.max_objects, motions=args.motions, anticipation_s=args.anticipation_s,
            compositional_fraction=args.compositional_fraction, shared_event_motion=args.shared_event_motion,
            workers=args.workers, overwrite=args.overwrite,
        )
    except OutputExistsError as error:
        print(f"error: output directory {error.path} already exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"wrote {summary.num_clips} clips, {summary.num_video_qa} video QA rows, {summary.num_anticipation} "
        f"anticipation rows to {summary.out_dir} in {summary.seconds:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
