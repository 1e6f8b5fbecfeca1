"""Run the local lmms-eval suite (`vjepa_synth_*`) on a checkpoint and write a results table.

    python scripts/eval_vlm.py --pretrained CKPT --world synthetic_world --out runs/eval/CKPT_NAME

lmms-eval runs for real: the model resolves through the `lmms_eval.models` entry point, the tasks load from
YAMLs pointing at `--world` (see `vjepa_vlm.eval.local_tasks`). Written into `--out` (atomically, each file):
`results.json` (lmms-eval's results, per-sample logs, and under "vjepa2_vlm" the run's frame sampling, prompt
and generation settings plus every unreadable visual), `results.md` (accuracy by task and question type) and
`tasks/` (the task YAMLs used). Tasks run one after the other, a line printed as each one ends; a task that
fails is reported and the others still run, then the command exits non-zero. Needs the `eval` extra
(lmms-eval, torch 2.14.1 + torchvision).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback
from pathlib import Path

TABLE_METRICS = ("accuracy", "accuracy_motion", "accuracy_appearance", "accuracy_counting")


def evaluate_checkpoint(
    pretrained: str,
    world: str,
    out: str,
    *,
    tasks: list[str],
    model_args: str = "",
    limit: int | None = None,
    batch_size: int = 1,
    device: str | None = None,
) -> dict:
    """Evaluate `pretrained` on the local tasks over `world`, one task after the other (a line printed per
    task); returns lmms-eval's results dict merged over the tasks, plus our settings and under
    "vjepa2_vlm"/"failed_tasks" each task that raised, with its error (the other tasks still run)."""
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.models import get_model
    from lmms_eval.tasks import TaskManager

    from vjepa_vlm.eval.local_tasks import LOCAL_TASKS, TASK_TAG, write_task_configs

    out_dir = Path(out)
    include = write_task_configs(world, out_dir / "tasks", cache_dir=out_dir / "datasets_cache")
    # Only our YAMLs are indexed: lmms-eval's ~2,000 built-in task files are not needed for the local suite.
    task_manager = TaskManager("WARNING", include_path=str(include), include_defaults=False, model_name="vjepa2_vlm")
    unknown = [t for t in tasks if t not in task_manager.all_tasks]
    if unknown:
        raise ValueError(f"unknown local task(s) {unknown}; available: {task_manager.all_tasks}")
    tasks = list(dict.fromkeys(name for t in tasks for name in (LOCAL_TASKS if t == TASK_TAG else [t])))
    arg_string = ",".join(filter(None, [f"pretrained={pretrained}", model_args]))
    config = {"batch_size": batch_size, "device": device}
    merged: dict = {}
    failed: dict[str, str] = {}
    missing: list[str] = []
    for number, task in enumerate(tasks, 1):
        started = time.monotonic()
        # A model per task: lmms-eval's `lm.clean()` deletes the model's modules at the end of each evaluation.
        lm = get_model("vjepa2_vlm").create_from_arg_string(arg_string, config)
        settings = lm.run_settings
        try:
            results = simple_evaluate(
                model=lm,
                model_args=arg_string,
                tasks=[task],
                task_manager=task_manager,
                limit=limit,
                batch_size=batch_size,
                device=device,
                bootstrap_iters=0,
                log_samples=True,
                verbosity="WARNING",
            )
        except Exception as error:  # one broken task must not hide the others' results; main() exits non-zero
            traceback.print_exc()
            failed[task] = f"{type(error).__name__}: {error}"
            print(f"[{number}/{len(tasks)}] {task}: FAILED ({failed[task]})", flush=True)
            continue
        finally:
            missing += lm.missing_visuals
        for key, value in results.items():
            merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) else merged.get(key, value)
        accuracy = results["results"][task].get("accuracy,none", math.nan)
        samples = results["n-samples"][task]["effective"]
        print(f"[{number}/{len(tasks)}] {task}: accuracy {accuracy:.1f}% on {samples} samples "
              f"({time.monotonic() - started:.0f} s)", flush=True)
    merged["vjepa2_vlm"] = {"run_settings": settings, "missing_visuals": missing, "failed_tasks": failed}
    return merged


def results_table(results: dict) -> str:
    """Markdown table: one row per task, accuracy overall and by question type (percent), sample count."""
    header = "| task | samples | " + " | ".join(m.replace("accuracy_", "") if m != "accuracy" else "all" for m in TABLE_METRICS) + " |"
    lines = [header, "|" + " --- |" * (len(TABLE_METRICS) + 2)]
    for task, metrics in sorted(results.get("results", {}).items()):
        if "accuracy,none" not in metrics:
            continue
        cells = []
        for metric in TABLE_METRICS:
            value = metrics.get(f"{metric},none")
            cells.append(f"{value:.1f}" if isinstance(value, (int, float)) and not math.isnan(value) else "—")
        samples = results.get("n-samples", {}).get(task, {}).get("effective", "?")
        lines.append(f"| {task} | {samples} | " + " | ".join(cells) + " |")
    missing = len(results.get("vjepa2_vlm", {}).get("missing_visuals", []))
    lines.append("")
    lines.append(f"Unreadable visuals (scored as wrong): {missing}.")
    failed = results.get("vjepa2_vlm", {}).get("failed_tasks", {})
    if failed:
        lines.append(f"Failed tasks (no result, see results.json): {', '.join(failed)}.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrained", required=True, help="checkpoint directory (model + processor)")
    parser.add_argument("--world", required=True, help="synthetic world directory (generate_world output)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--tasks", default="vjepa_synth", help="comma-separated local tasks, or the tag vjepa_synth")
    parser.add_argument("--model_args", default="", help="extra vjepa2_vlm model args, e.g. num_frames=16,dtype=bfloat16")
    parser.add_argument("--limit", type=int, default=None, help="samples per task (smoke runs only)")
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    if not Path(args.pretrained, "config.json").is_file():
        parser.error(f"--pretrained {args.pretrained}: not a checkpoint directory (no config.json)")
    results = evaluate_checkpoint(
        args.pretrained,
        args.world,
        args.out,
        tasks=args.tasks.split(","),
        model_args=args.model_args,
        limit=args.limit,
        batch_size=args.batch_size,
        device=args.device,
    )
    from vjepa_vlm.eval.local_tasks import write_text_atomically

    out = Path(args.out)
    write_text_atomically(out / "results.json", json.dumps(results, indent=1, default=str))
    table = results_table(results)
    write_text_atomically(out / "results.md", table)
    sys.stdout.write(table)
    failed = results["vjepa2_vlm"]["failed_tasks"]
    if failed:
        raise SystemExit(f"eval_vlm: {len(failed)} task(s) failed: " + "; ".join(f"{t}: {e}" for t, e in failed.items()))
    return results


if __name__ == "__main__":
    main()
