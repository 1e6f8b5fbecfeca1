"""Record robot play in the Fetch simulator into a new LeRobot v3.0 dataset folder.

    python scripts/record_play.py --out data/play --episodes 200 --seed 0 [--size 64] [--steps 100] [--workers 2] \\
        [--camera oblique] [--behaviour-mix grasp]

Needs the `robot` extra (pip install "vjepa-vlm[robot]") and offscreen rendering (MUJOCO_GL=egl by default).
"""

from __future__ import annotations

import argparse
import sys

from vjepa_vlm.data.manifests import OutputExistsError
from vjepa_vlm.data.robot_play import BEHAVIOUR_MIXES, POLICIES, record_play
from vjepa_vlm.data.robot_sim import CAMERAS, SimulatorUnavailableError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--out", required=True, help="output dataset folder (must not exist unless --overwrite)")
    parser.add_argument("--episodes", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True, help="episode i depends on (seed, i) only")
    parser.add_argument("--size", type=int, default=64, help="frame side in pixels, even")
    parser.add_argument("--steps", type=int, default=100, help="steps per episode (25 Hz: 100 steps = 4 s)")
    parser.add_argument("--workers", type=int, default=1, help="simulator processes (the output does not depend on it)")
    parser.add_argument("--policy", choices=POLICIES, default="play", help="scripted play, or uniform random actions")
    parser.add_argument("--episodes-per-file", type=int, default=50, help="episodes per data parquet / video file")
    parser.add_argument("--camera", choices=sorted(CAMERAS), default="front",
                        help="named camera (vjepa_vlm.data.robot_sim.CAMERAS); frames go into observation.images.NAME")
    parser.add_argument("--behaviour-mix", choices=sorted(BEHAVIOUR_MIXES), default="default",
                        help="how often play picks each behaviour (robot_play.BEHAVIOUR_MIXES); grasp: mostly pick / poke")
    parser.add_argument("--overwrite", action="store_true", help="atomically replace an existing --out")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict | int:
    args = parse_args(argv)
    try:
        summary = record_play(
            args.out, episodes=args.episodes, seed=args.seed, size=args.size, steps=args.steps, workers=args.workers,
            policy=args.policy, episodes_per_file=args.episodes_per_file, overwrite=args.overwrite,
            camera=args.camera, mix=args.behaviour_mix,
        )
    except OutputExistsError as error:
        print(f"error: output directory {error.path} already exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    except (ValueError, SimulatorUnavailableError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    result = {
        "out": str(summary.out_dir), "episodes": summary.episodes, "frames": summary.frames,
        "block_moved_episodes": summary.moved, "block_lifted_episodes": summary.lifted,
        "seconds": round(summary.seconds, 2), "episodes_per_minute": round(summary.episodes_per_minute, 2),
        "steps_per_second": round(summary.steps_per_second, 1),
    }
    print(
        f"wrote {summary.episodes} episodes ({summary.frames} frames) to {summary.out_dir} in {summary.seconds:.1f} s "
        f"({summary.episodes_per_minute:.1f} episodes/min, {summary.steps_per_second:.1f} steps/s); block moved > 1 cm "
        f"in {summary.moved}, lifted > 3 cm in {summary.lifted}"
    )
    return result


if __name__ == "__main__":
    status = main()
    sys.exit(status if isinstance(status, int) else 0)
