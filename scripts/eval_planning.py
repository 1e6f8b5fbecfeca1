"""Closed-loop planning evaluation in the Fetch simulator (paper Tables 2-3, Figure 8): success out of N episodes
per method, task and scene variant, final distances, distance-to-goal-vs-step curves, one JSON line per episode.

    python scripts/eval_planning.py --model vjepa2_ac=runs/ac_tiny_cont/checkpoints/step_00000600/model \\
        --methods random,oracle,vjepa2_ac --tasks reach,push --episodes 20 --samples 100 --iterations 4 \\
        --out runs/planning/tiny

Methods: `random` (uniform actions in the planner's box), `oracle` (the scripted controller reading the true state,
which made the goal images: the upper bound), one planner per `--model LABEL=PATH` (a `VJEPA2WorldModel`
folder) and one goal-conditioned behaviour-cloning policy per `--bc LABEL=PATH` (a `policy/` folder written by
`train/train_bc.py`; it reads the features of the world model named in its config.json, or of `--bc-world-model`). Tasks, goal images and success criteria:
`vjepa_vlm.eval.planning`. Variants: `vjepa_vlm.data.robot_sim.VARIANTS` (zero-shot scenes).

`--action-map FILE` calibrates every planner: its planned (dx, dy) is multiplied by the 2x2 map that
`scripts/calibrate_camera.py` fitted for one camera (`--action-map-azimuth`), e.g. the `camera_shift` variant's
(`calibrate_camera.py --variant camera_shift --azimuths 0`). Give the calibrated planner its own label: records
of one label are not told apart by settings when resuming.

Writes into `--out`: `episodes.jsonl` (appended: rerunning the command skips the episodes already there, so an
interrupted run resumes), `summary.json`, `table.md` and `distance_<task>_<variant>.png`.

The simulator renders through the named camera (`robot_sim.CAMERAS`) the world models were trained on (their
config.json's `camera`; "front" for models saved before cameras were named); models trained on different cameras
cannot share a run, and `--camera` only confirms theirs (or picks the view for a run of baselines alone).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

from PIL import Image, ImageDraw
from tqdm.auto import tqdm
from vjepa_vlm.data.robot_sim import CAMERAS, VARIANTS, make_fetch_env
from vjepa_vlm.eval.planning import (
    FETCH_CEM,
    FRAME_SKIP,
    SUCCESS_M,
    TASKS,
    BCPolicy,
    OraclePolicy,
    PlannerPolicy,
    RandomPolicy,
    check_tasks,
    check_world_model,
    load_action_map,
    make_setup,
    model_camera,
    resolve_camera,
    run_episode,
)
from vjepa_vlm.vision.planner import WARM_STARTS, CEMConfig

BASELINES = ("random", "oracle")
# A failed episode that ends within this of its closest approach was still closing in (or stalled) when time ran out.
STALL_M = 0.02
FAILURE_MODES = ("error", "left_the_goal", "moved_away", "stopped_short", "turned_back")
EPISODES_FILE = "episodes.jsonl"
COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (23, 190, 207)]


_ENVS: dict = {}


def simulator(size: int, variant: str, camera: str = "front"):
    """One simulator per (size, variant, camera) for the whole process, built once and reused by every episode (each
    holds its own GL context; `FetchCamera.render` makes it current, so envs closed elsewhere cannot blank it). At
    interpreter exit MuJoCo's EGL finalizers print ignored TypeErrors; they are harmless."""
    if (size, variant, camera) not in _ENVS:
        _ENVS[size, variant, camera] = make_fetch_env(size, max_steps=10**7, camera=camera, variant=variant)
    return _ENVS[size, variant, camera]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", default=[], metavar="LABEL=PATH",
                        help="a world model to plan with, under the method name LABEL (repeatable)")
    parser.add_argument("--bc", action="append", default=[], metavar="LABEL=PATH",
                        help="a behaviour-cloning policy folder, under the method name LABEL (repeatable)")
    parser.add_argument("--bc-world-model", default=None,
                        help="world model whose encoder the --bc policies read (default: the one in their config.json)")
    parser.add_argument("--methods", default=None,
                        help="comma-separated methods to run (default: random, oracle, every --model and --bc)")
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated, of {list(TASKS)}")
    parser.add_argument("--variants", default="default", help=f"comma-separated, of {list(VARIANTS)}")
    parser.add_argument("--episodes", type=int, default=20, help="episodes per task and variant")
    parser.add_argument("--first-episode", type=int, default=0, help="index of the first episode (seeds)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--camera", choices=sorted(CAMERAS), default=None,
                        help="named camera to render through (default: the one the world models were trained on)")
    parser.add_argument("--size", type=int, default=64, help="rendered frame side; must match the models' crop_size")
    parser.add_argument("--frame-skip", type=int, default=FRAME_SKIP,
                        help="simulator steps per agent step (25 Hz / the world model's training fps)")
    for name in ("samples", "top_k", "iterations", "horizon"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(FETCH_CEM, name))
    parser.add_argument("--momentum", type=float, default=FETCH_CEM.momentum_mean, help="on mean and std")
    parser.add_argument("--init-std", type=float, default=FETCH_CEM.init_std)
    parser.add_argument("--constraint", default=FETCH_CEM.constraint, choices=("box", "l1"))
    parser.add_argument("--max-norm", type=float, default=FETCH_CEM.max_norm,
                        help="box half-width or L1 radius of dx, dy, dz in action units (1 unit = 5 cm)")
    parser.add_argument("--warm-start", choices=WARM_STARTS, default=FETCH_CEM.warm_start,
                        help="where each MPC step's CEM search starts: none (mean 0, the paper), shift (the previous "
                             "plan one step on) or hold_gripper (the gripper at the command executed last): a planner "
                             "prior, not the model reading the gripper")
    parser.add_argument("--gripper-candidates", default="", metavar="G1,G2",
                        help="gripper commands tried after the CEM iterations with the planned motion held fixed; the "
                             "plan keeps the lowest-energy grip (CEMConfig.gripper_candidates; default: none, as the paper)")
    parser.add_argument("--action-map", default=None, metavar="FILE",
                        help="calibration.json of scripts/calibrate_camera.py: every --model planner's (dx, dy) is "
                             "multiplied by its 2x2 map before execution (camera calibration, appendix B.4)")
    parser.add_argument("--action-map-azimuth", type=float, default=None, metavar="DEG",
                        help="which camera of --action-map (its azimuth offset); needed when the file has several")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def _labelled(args) -> dict[str, tuple[str, str]]:
    """label -> (kind, path) of every --model and --bc, labels unique and not a baseline's."""
    labelled = {}
    for kind, items in (("model", args.model), ("bc", args.bc)):
        for item in items:
            label, sep, path = item.partition("=")
            if not sep or not label or not path:
                raise ValueError(f"--{kind} must be LABEL=PATH, got {item!r}")
            if label in BASELINES or label in labelled:
                raise ValueError(f"--{kind} label {label!r} is taken (baselines: {BASELINES}, given: {list(labelled)})")
            if not Path(path, "config.json").is_file():
                what = "VJEPA2WorldModel" if kind == "model" else "behaviour-cloning policy"
                raise FileNotFoundError(f"--{kind} {label}: {path} is not a saved {what} folder (no config.json)")
            labelled[label] = (kind, path)
    return labelled


def _world_model(path: str, size: int, where: str):
    from vjepa_vlm import VJEPA2WorldModel

    if not Path(path, "config.json").is_file():
        raise FileNotFoundError(f"{where}: {path} is not a saved VJEPA2WorldModel folder (no config.json)")
    model = VJEPA2WorldModel.from_pretrained(path).eval()
    check_world_model(model, size, where)
    return model


def build_policies(args, cem: CEMConfig) -> tuple[dict, dict[str, str]]:
    """Every method's policy, with models loaded and checked against the simulator before any episode runs, and
    the camera each learned method's world model was trained on."""
    from vjepa_vlm.vision.bc_policy import load_policy

    labelled = _labelled(args)
    methods = args.methods.split(",") if args.methods else ["random", "oracle", *labelled]
    unknown = [m for m in methods if m not in BASELINES and m not in labelled]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}: baselines are {BASELINES}, the others are the --model and "
                         f"--bc labels {list(labelled)}")
    policies, cameras = {}, {}
    for method in methods:
        if method == "random":
            policies[method] = RandomPolicy(cem.max_norm, cem.gripper_range, seed=args.seed)
        elif method == "oracle":
            policies[method] = OraclePolicy(args.frame_skip)
        elif labelled[method][0] == "model":
            path = labelled[method][1]
            model = _world_model(path, args.size, f"--model {method}={path}")
            cameras[method] = model_camera(model, f"--model {method}={path}")
            policies[method] = PlannerPolicy(model, cem, name=method)
        else:
            policy, saved = load_policy(labelled[method][1])
            encoder = args.bc_world_model or saved.get("world_model")
            if not encoder:
                raise ValueError(f"--bc {method}: its config.json names no world_model; give --bc-world-model")
            model = _world_model(encoder, args.size, f"--bc {method}: the encoder's world model")
            cameras[method] = model_camera(model, f"--bc {method}: the encoder's world model")
            policies[method] = BCPolicy(policy, model, name=method)
    return policies, cameras


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def failure_mode(record: dict) -> str | None:
    """Where a failed episode's distance curve went (None for a success), so failures can be told apart:

        error           it raised (or no goal could be drawn)
        left_the_goal   within SUCCESS_M at some step, not at the end
        moved_away      it ended farther from the goal than it started
        stopped_short   closer than at the start and within STALL_M of its closest approach: out of steps
        turned_back     it came closer, then ended more than STALL_M farther than its closest approach
    """
    if record["success"]:
        return None
    distances = record["distances"]
    if record["error"] is not None or not distances:
        return "error"
    if min(distances) < SUCCESS_M:
        return "left_the_goal"
    if distances[-1] > distances[0]:
        return "moved_away"
    if distances[-1] - min(distances) <= STALL_M:
        return "stopped_short"
    return "turned_back"


def summarize(records: list[dict]) -> dict:
    """Per (method, variant, task): successes, N, mean final distance, mean seconds per action, failures by mode."""
    cells = defaultdict(list)
    for record in records:
        cells[(record["method"], record["variant"], record["task"])].append(record)
    summary = {}
    for (method, variant, task), rows in sorted(cells.items()):
        summary[f"{method}/{variant}/{task}"] = {
            "method": method, "variant": variant, "task": task, "n": len(rows),
            "successes": sum(r["success"] for r in rows),
            "success_rate": sum(r["success"] for r in rows) / len(rows),
            "mean_final_distance_m": sum(r["final_distance"] for r in rows) / len(rows),
            "mean_start_distance_m": sum(r["start_distance"] for r in rows) / len(rows),
            "errors": sum(r["error"] is not None for r in rows),
            "act_seconds_per_step": sum(r["act_seconds_per_step"] for r in rows) / len(rows),
            "failure_modes": {mode: sum(failure_mode(r) == mode for r in rows) for mode in FAILURE_MODES},
        }
    return summary


def markdown_table(summary: dict) -> str:
    """Rows methods, columns task x variant; a cell is 'success % (k/N), mean final distance'."""
    methods = list(dict.fromkeys(cell["method"] for cell in summary.values()))
    columns = list(dict.fromkeys((cell["task"], cell["variant"]) for cell in summary.values()))
    lines = ["| method | " + " | ".join(f"{t} ({v})" for t, v in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for method in methods:
        cells = []
        for task, variant in columns:
            cell = summary.get(f"{method}/{variant}/{task}")
            cells.append("" if cell is None else
                         f"{100 * cell['success_rate']:.0f}% ({cell['successes']}/{cell['n']}), {cell['mean_final_distance_m']:.3f} m")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_distance_curves(records: list[dict], task: str, variant: str, path: Path, size=(640, 400),
                          labels: dict[str, str] | None = None) -> bool:
    """Mean distance to the goal before each step, one line per method (Figure 8); False when nothing to draw.

    `size` is the picture without its legend: the canvas grows to the right by what the longest legend entry needs
    beyond the default 150 pixels, so no name is cut off. `labels` renames methods in the legend (method -> text).
    """
    curves = defaultdict(list)
    for record in records:
        if record["task"] == task and record["variant"] == variant and record["error"] is None:
            curves[record["method"]].append(record["distances"])
    if not curves:
        return False
    means = {m: [sum(c[i] for c in runs) / len(runs) for i in range(min(map(len, runs)))] for m, runs in curves.items()}
    legend = {m: f"{(labels or {}).get(m, m)} (n={len(curves[m])})" for m in means}
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    right = max(150, 20 + math.ceil(max(measure.textlength(text) for text in legend.values())))
    width, height = size[0] + right - 150, size[1]
    left, top, bottom = 70, 30, 40
    high = max(max(v) for v in means.values()) or 1.0
    steps = max(len(v) for v in means.values()) - 1 or 1
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([left, top, width - right, height - bottom], outline="black")

    def to_xy(step, value):
        return (left + step / steps * (width - left - right), height - bottom - value / high * (height - top - bottom))

    success_y = to_xy(0, 0.05)[1]
    draw.line([(left, success_y), (width - right, success_y)], fill=(180, 180, 180))
    for index, (method, values) in enumerate(sorted(means.items())):
        colour = COLOURS[index % len(COLOURS)]
        if len(values) > 1:
            draw.line([to_xy(i, v) for i, v in enumerate(values)], fill=colour, width=2)
        draw.text((width - right + 10, top + 16 * index), legend[method], fill=colour)
    draw.text((left, 8), f"{task} ({variant}): mean distance to goal (m) vs agent step; grey: 5 cm", fill="black")
    draw.text((4, top), f"{high:.3f}", fill="black")
    draw.text((4, height - bottom - 10), "0", fill="black")
    draw.text((left, height - bottom + 8), "0", fill="black")
    draw.text((width - right - 20, height - bottom + 8), str(steps), fill="black")
    draw.text((width // 2 - 40, height - 18), "agent step", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return True


def _floats(text: str, option: str) -> tuple[float, ...]:
    try:
        return tuple(float(item) for item in text.split(",") if item.strip())
    except ValueError:
        raise ValueError(f"{option} must be comma-separated numbers, got {text!r}") from None


def planner_config(args) -> tuple[CEMConfig, dict | None]:
    """The planners' CEM settings from the command line, and the `--action-map` calibration (None without one)."""
    if args.action_map_azimuth is not None and args.action_map is None:
        raise ValueError("--action-map-azimuth needs --action-map")
    calibration = None if args.action_map is None else load_action_map(args.action_map, args.action_map_azimuth)
    cem = CEMConfig(
        samples=args.samples, top_k=args.top_k, iterations=args.iterations, horizon=args.horizon,
        momentum_mean=args.momentum, momentum_std=args.momentum, init_std=args.init_std, constraint=args.constraint,
        max_norm=args.max_norm, gripper_dim=FETCH_CEM.gripper_dim,
        gripper_range=(-float(args.frame_skip), float(args.frame_skip)), seed=args.seed,
        action_map=None if calibration is None else calibration["map"], warm_start=args.warm_start,
        gripper_candidates=_floats(args.gripper_candidates, "--gripper-candidates"),
    )
    return cem, calibration


def main(argv=None) -> dict:
    args = parse_args(argv)
    tasks = check_tasks(args.tasks.split(","))
    variants = args.variants.split(",")
    if any(v not in VARIANTS for v in variants):
        raise ValueError(f"--variants must be some of {VARIANTS}, got {variants}")
    if args.episodes < 1 or args.frame_skip < 1:
        raise ValueError(f"--episodes and --frame-skip must be >= 1, got {args.episodes} and {args.frame_skip}")
    cem, calibration = planner_config(args)
    policies, cameras = build_policies(args, cem)
    camera = resolve_camera(args.camera, cameras)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    episodes_path = out / EPISODES_FILE
    previous = read_records(episodes_path)
    # Records written before cameras were named were all rendered through the front camera.
    other = sorted({r.get("camera", "front") for r in previous} - {camera})
    if other:
        raise ValueError(f"{episodes_path} holds episodes rendered through camera {other}, this run renders through "
                         f"{camera!r}; give another --out")
    done = {(r["method"], r["variant"], r["task"], r["episode"]) for r in previous}
    settings = {"samples": cem.samples, "top_k": cem.top_k, "iterations": cem.iterations, "horizon": cem.horizon,
                "max_norm": cem.max_norm, "constraint": cem.constraint, "init_std": cem.init_std,
                "momentum": cem.momentum_mean, "frame_skip": args.frame_skip, "seed": args.seed, "camera": camera,
                "warm_start": cem.warm_start, "gripper_candidates": list(cem.gripper_candidates)}
    if calibration is not None:
        settings["action_map"] = calibration
    indices = range(args.first_episode, args.first_episode + args.episodes)
    total = len(variants) * len(tasks) * len(indices) * len(policies)
    bar = tqdm(total=total, desc="episodes", unit="episode", file=sys.stderr, disable=args.no_progress)
    started = time.time()
    for variant in variants:
        env = simulator(args.size, variant, camera)
        for task in tasks:
            for index in indices:
                todo = [m for m in policies if (m, variant, task.name, index) not in done]
                bar.update(len(policies) - len(todo))
                if not todo:
                    continue
                try:
                    setup, setup_error = make_setup(env, task, args.seed, index, args.frame_skip), None
                except Exception as error:  # noqa: BLE001 - no goal: every method's episode is a failure, recorded as such
                    setup, setup_error = None, f"{type(error).__name__}: {error}"
                for method in todo:
                    if setup is None:
                        record = {"task": task.name, "episode": index, "method": method, "success": False,
                                  "error": setup_error, "final_distance": float("nan"), "start_distance": float("nan"),
                                  "distances": [], "act_seconds_per_step": 0.0}
                    else:
                        record = run_episode(env, setup, policies[method], args.frame_skip)
                    record.update(variant=variant, camera=camera, settings=settings if isinstance(policies[method], PlannerPolicy) else None)
                    with open(episodes_path, "a") as handle:
                        handle.write(json.dumps(record) + "\n")
                    bar.set_postfix(method=method, task=task.name, success=record["success"], refresh=False)
                    bar.update(1)
    bar.close()
    records = read_records(episodes_path)
    summary = summarize(records)
    table = markdown_table(summary)
    pictures = [str(out / f"distance_{t.name}_{v}.png") for v in variants for t in tasks
                if write_distance_curves(records, t.name, v, out / f"distance_{t.name}_{v}.png")]
    result = {"summary": summary, "settings": settings, "camera": camera, "pictures": pictures, "seconds": round(time.time() - started, 1)}
    (out / "summary.json").write_text(json.dumps(result, indent=1))
    (out / "table.md").write_text(table)
    print(table)
    return result


if __name__ == "__main__":
    os.environ.setdefault("MUJOCO_GL", "egl")
    main()
