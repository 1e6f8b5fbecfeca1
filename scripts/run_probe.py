"""Train and evaluate frozen attentive probes (a multi-head lr x wd sweep) for an encoder directory.

    python scripts/run_probe.py --encoder runs/pretrain_tiny/checkpoints/step_00000600/target \
        --world runs/synthetic_world --tasks motion appearance --seeds 0 1 2 --output runs/probes/tiny.json

Each task reads `<world>/train/<task>_classification.jsonl` for training and `<world>/test/...` for
testing (or give `--train-manifest/--eval-manifest`, reported as task "custom"). `--val-fraction` of every
class of the training manifest (drawn with `--val-seed`, the same for every probe seed) is held out as a
validation split; each probe seed's head (one per lr x wd pair) is chosen on it, and that head's validation
and test accuracies are reported. `--select-on test --val-fraction 0` chooses the head on the test split it
reports, as the reference evaluation does (facebookresearch/vjepa2 reports the max over heads of the
evaluation-split accuracy); such numbers are optimistic and the JSON says `"selected_on": "test"`.

The encoder runs once per file and protocol; motion and appearance share their videos. `--random-init`
probes the same architecture with random weights (drawn once with `--init-seed`); `--single-frame` feeds
every clip's middle frame repeated in time. The JSON output lists every head's accuracies per probe seed,
the chosen head's, and their mean and sample standard deviation (n - 1) over seeds; `--save-model` writes
the encoder with the chosen head of the first task and seed as a `VJEPA2ForVideoClassification` directory.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch

from vjepa_vlm import VJEPA2Config, VJEPA2Model
from vjepa_vlm.data.pretrain_dataset import read_manifest
from vjepa_vlm.eval.probe import ProbeArgs, extract_features, probe_config, stratified_split, train_probe_sweep
from vjepa_vlm.modeling_vjepa2_probe import VJEPA2ForVideoClassification


def labelled_items(manifest: Path, root: Path | None) -> tuple[list[tuple[str, Path]], torch.Tensor]:
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    missing = [i for i, row in enumerate(rows, start=1) if "label" not in row]
    if missing:
        raise ValueError(f"{manifest}: rows {missing[:5]} have no 'label'")
    return read_manifest(manifest, root), torch.tensor([int(row["label"]) for row in rows])


def load_encoder(encoder_dir: Path, random_init: bool, seed: int) -> VJEPA2Model:
    if not (encoder_dir / "config.json").is_file():
        raise FileNotFoundError(f"--encoder {encoder_dir} is not a VJEPA2Model directory (no config.json)")
    if random_init:
        torch.manual_seed(seed)
        return VJEPA2Model(VJEPA2Config.from_pretrained(encoder_dir))
    return VJEPA2Model.from_pretrained(encoder_dir)


def save_best_model(model: VJEPA2Model, head, args: ProbeArgs, num_labels: int, out_dir: Path) -> None:
    classifier = VJEPA2ForVideoClassification(probe_config(model.config, num_labels, args))
    classifier.vjepa2.load_state_dict(model.state_dict())
    classifier.load_probe_head(head)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{out_dir.name}-", dir=out_dir.parent))
    classifier.save_pretrained(staging)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(staging, out_dir)


def add_probe_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    """The frozen-encoder probe sweep's options, shared by every command that trains probes on cached features."""
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--learning-rates", type=float, nargs="+", default=list(ProbeArgs.learning_rates))
    parser.add_argument("--weight-decays", type=float, nargs="+", default=list(ProbeArgs.weight_decays))
    parser.add_argument("--num-heads", type=int, default=16)
    parser.add_argument("--num-blocks", type=int, default=4, help="probe depth; 1 = a single cross-attention block")
    parser.add_argument("--position-embedding", choices=("none", "sincos"), default="none",
                        help="'sincos': add a fixed 3D (t, h, w) sin/cos embedding to the probe's input tokens "
                             "(the reference probe sees no positions)")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", type=Path, required=True, help="VJEPA2Model directory (e.g. a checkpoint's target/)")
    parser.add_argument("--world", type=Path, help="synthetic world directory")
    parser.add_argument("--tasks", nargs="+", choices=("motion", "appearance", "image"), default=["motion"])
    parser.add_argument("--train-manifest", type=Path)
    parser.add_argument("--eval-manifest", type=Path)
    parser.add_argument("--root", type=Path, help="directory manifest paths are relative to (default: --world)")
    parser.add_argument("--num-labels", type=int, help="classes (default: 1 + the largest label seen)")
    parser.add_argument("--random-init", action="store_true", help="probe the same architecture, randomly initialized")
    parser.add_argument("--init-seed", type=int, default=0, help="seed of the --random-init weights")
    parser.add_argument("--single-frame", action="store_true", help="single-frame baseline: middle frame repeated")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="probe seeds (init and shuffling)")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="share of every class of the training manifest held out to choose the head on")
    parser.add_argument("--val-seed", type=int, default=0, help="seed of the validation draw (same for every probe seed)")
    parser.add_argument("--select-on", choices=("val", "test"), default="val",
                        help="split whose accuracy chooses each seed's head; 'test' is the reference evaluation's "
                             "choice and overstates the test accuracy")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--frame-step", type=int, default=4)
    parser.add_argument("--segments", type=int, default=2)
    parser.add_argument("--views", type=int, default=3)
    add_probe_sweep_arguments(parser)
    parser.add_argument("--output-layers", type=int, nargs="+", help="encoder blocks the probe attends to (Table 16)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (more threads thrash on a shared machine)")
    parser.add_argument("--output", type=Path, required=True, help="result JSON")
    parser.add_argument("--save-model", type=Path, help="write encoder + best head (first task, first seed) here")
    args = parser.parse_args(argv)
    if not 0 <= args.val_fraction < 1:
        parser.error(f"--val-fraction must lie in [0, 1), got {args.val_fraction}")
    if args.select_on == "val" and args.val_fraction == 0:
        parser.error("--select-on val needs a validation split: give --val-fraction > 0 (or --select-on test)")
    if (args.train_manifest is None) != (args.eval_manifest is None):
        parser.error("give both --train-manifest and --eval-manifest, or neither")
    if args.train_manifest is not None:
        args.manifests = {"custom": (args.train_manifest, args.eval_manifest)}
    elif args.world is not None:
        args.manifests = {
            task: tuple(args.world / split / f"{task}_classification.jsonl" for split in ("train", "test"))
            for task in args.tasks
        }
        args.root = args.root or args.world
    else:
        parser.error("give --world (with --tasks) or both --train-manifest and --eval-manifest")
    return args


def split_items(items: list, labels: torch.Tensor, fraction: float, seed: int) -> dict[str, tuple]:
    """{"train": (items, labels), "val": (items, labels)}, `fraction` of every class held out (`stratified_split`)."""
    kept, held = stratified_split(labels, fraction, seed)
    return {
        "train": ([items[i] for i in kept.tolist()], labels[kept]),
        "val": ([items[i] for i in held.tolist()], labels[held]),
    }


def mean_and_std(values: list[float]) -> dict:
    """Mean and sample standard deviation (n - 1; None for one value) of per-seed accuracies."""
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else None}


def probe_task(cli, model, train_manifest: Path, eval_manifest: Path, cache: dict, save_to: Path | None) -> dict:
    train_items, train_labels = labelled_items(train_manifest, cli.root)
    test_items, test_labels = labelled_items(eval_manifest, cli.root)
    num_labels = cli.num_labels or int(max(train_labels.max(), test_labels.max())) + 1
    parts = {"train": (train_items, train_labels)}
    if cli.val_fraction > 0:
        parts = split_items(train_items, train_labels, cli.val_fraction, cli.val_seed)
    parts["test"] = (test_items, test_labels)
    runs = []
    for seed in cli.seeds:
        args = ProbeArgs(
            num_frames=cli.frames, frame_step=cli.frame_step, num_segments=cli.segments, num_views=cli.views,
            resolution=cli.resolution, single_frame=cli.single_frame, learning_rates=tuple(cli.learning_rates),
            weight_decays=tuple(cli.weight_decays), epochs=cli.epochs, batch_size=cli.batch_size,
            num_heads=cli.num_heads, num_blocks=cli.num_blocks,
            output_layers=tuple(cli.output_layers) if cli.output_layers else None,
            position_embedding=None if cli.position_embedding == "none" else cli.position_embedding, seed=seed,
        )
        features = {
            name: extract_features(model.encoder, items, args, training=name == "train", cache=cache)
            for name, (items, _) in parts.items()
        }
        eval_sets = {name: (features[name], labels) for name, (_, labels) in parts.items() if name != "train"}
        result = train_probe_sweep(
            model.config, features["train"], parts["train"][1], eval_sets, num_labels, args, cli.select_on
        )
        best = result["best"]
        scores = " ".join(f"{name} {best[f'{name}_accuracy']:.4f}" for name in eval_sets)
        print(f"{train_manifest.stem} seed {seed}: head lr={best['lr']} wd={best['weight_decay']} "
              f"(chosen on {cli.select_on}): {scores}")
        if save_to is not None and seed == cli.seeds[0]:
            save_best_model(model, result["probe"].heads[best["index"]], args, num_labels, save_to)
        runs.append({"seed": seed, "best": best, "heads": result["heads"]})
    return {
        "train_manifest": str(train_manifest), "eval_manifest": str(eval_manifest), "num_labels": num_labels,
        "probe": {k: v for k, v in asdict(args).items() if k != "seed"},
        "selected_on": cli.select_on, "val_fraction": cli.val_fraction, "val_seed": cli.val_seed,
        "num_items": {name: len(items) for name, (items, _) in parts.items()},
        "val_items": [str(path) for _, path in parts["val"][0]] if "val" in parts else [],
        # Of each seed's chosen head; std is the sample standard deviation (n - 1) over probe seeds.
        "accuracy": {name: mean_and_std([run["best"][f"{name}_accuracy"] for run in runs]) for name in eval_sets},
        "seeds": runs,
    }


def main(argv=None) -> dict:
    cli = parse_args(argv)
    torch.set_num_threads(cli.threads)
    model = load_encoder(cli.encoder, cli.random_init, cli.init_seed)
    cache: dict = {}
    tasks = {}
    for index, (task, (train_manifest, eval_manifest)) in enumerate(cli.manifests.items()):
        save_to = cli.save_model if index == 0 else None
        tasks[task] = probe_task(cli, model, train_manifest, eval_manifest, cache, save_to)
        for name, stats in tasks[task]["accuracy"].items():
            spread = "" if stats["std"] is None else f" ± {stats['std']:.4f} (sample std)"
            print(f"{task}: {name} accuracy of the {cli.select_on}-chosen head over seeds {cli.seeds}: "
                  f"{stats['mean']:.4f}{spread}")
    summary = {"encoder": str(cli.encoder), "random_init": cli.random_init, "init_seed": cli.init_seed,
               "single_frame": cli.single_frame, "selected_on": cli.select_on, "tasks": tasks}
    cli.output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=cli.output.parent, suffix=".tmp", delete=False) as handle:
        json.dump(summary, handle, indent=2)
    os.replace(handle.name, cli.output)
    return summary


if __name__ == "__main__":
    main()
