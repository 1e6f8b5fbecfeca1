"""Train and evaluate frozen attentive probes (a multi-head lr x wd sweep) for an encoder directory.

    python scripts/run_probe.py --encoder runs/pretrain_tiny/checkpoints/step_00000600/target \
        --world runs/synthetic_world --tasks motion appearance --seeds 0 1 2 --output runs/probes/tiny.json

Each task reads `<world>/train/<task>_classification.jsonl` for training and `<world>/test/...` for
evaluation (or give `--train-manifest/--eval-manifest`, reported as task "custom"). The encoder runs
once per file; motion and appearance share their videos. `--random-init` probes the same architecture
with random weights (drawn once with `--init-seed`); `--single-frame` feeds every clip's middle frame
repeated in time. The JSON output lists every head's accuracy per probe seed and the best head's mean
and std over seeds; `--save-model` writes the encoder with the best head of the first task and seed
as a `VJEPA2ForVideoClassification` directory.
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
from vjepa_vlm.eval.probe import ProbeArgs, extract_features, probe_config, train_probe_sweep
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
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--frame-step", type=int, default=4)
    parser.add_argument("--segments", type=int, default=2)
    parser.add_argument("--views", type=int, default=3)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--learning-rates", type=float, nargs="+", default=list(ProbeArgs.learning_rates))
    parser.add_argument("--weight-decays", type=float, nargs="+", default=list(ProbeArgs.weight_decays))
    parser.add_argument("--num-heads", type=int, default=16)
    parser.add_argument("--num-blocks", type=int, default=4, help="probe depth; 1 = a single cross-attention block")
    parser.add_argument("--output-layers", type=int, nargs="+", help="encoder blocks the probe attends to (Table 16)")
    parser.add_argument("--position-embedding", choices=("none", "sincos"), default="none",
                        help="'sincos': add a fixed 3D (t, h, w) embedding to the probe's input tokens")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (more threads thrash on a shared machine)")
    parser.add_argument("--output", type=Path, required=True, help="result JSON")
    parser.add_argument("--save-model", type=Path, help="write encoder + best head (first task, first seed) here")
    args = parser.parse_args(argv)
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


def probe_task(cli, model, train_manifest: Path, eval_manifest: Path, cache: dict, save_to: Path | None) -> dict:
    train_items, train_labels = labelled_items(train_manifest, cli.root)
    eval_items, eval_labels = labelled_items(eval_manifest, cli.root)
    num_labels = cli.num_labels or int(max(train_labels.max(), eval_labels.max())) + 1
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
        train_features = extract_features(model.encoder, train_items, args, training=True, cache=cache)
        eval_features = extract_features(model.encoder, eval_items, args, training=False, cache=cache)
        result = train_probe_sweep(model.config, train_features, train_labels, eval_features, eval_labels, num_labels, args)
        best = result["best"]
        print(f"{train_manifest.stem} seed {seed}: best lr={best['lr']} wd={best['weight_decay']} acc={best['accuracy']:.4f}")
        if save_to is not None and seed == cli.seeds[0]:
            save_best_model(model, result["probe"].heads[best["index"]], args, num_labels, save_to)
        runs.append({"seed": seed, "best": best, "heads": result["heads"]})
    accuracies = [run["best"]["accuracy"] for run in runs]
    return {
        "train_manifest": str(train_manifest), "eval_manifest": str(eval_manifest), "num_labels": num_labels,
        "probe": {k: v for k, v in asdict(args).items() if k != "seed"},
        "best_accuracy_mean": statistics.mean(accuracies), "best_accuracy_std": statistics.pstdev(accuracies),
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
        print(f"{task}: best accuracy over seeds {cli.seeds}: "
              f"{tasks[task]['best_accuracy_mean']:.4f} ± {tasks[task]['best_accuracy_std']:.4f}")
    summary = {"encoder": str(cli.encoder), "random_init": cli.random_init, "init_seed": cli.init_seed,
               "single_frame": cli.single_frame, "tasks": tasks}
    cli.output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=cli.output.parent, suffix=".tmp", delete=False) as handle:
        json.dump(summary, handle, indent=2)
    os.replace(handle.name, cli.output)
    return summary


if __name__ == "__main__":
    main()
