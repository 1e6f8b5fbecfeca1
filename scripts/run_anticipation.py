"""Train and evaluate frozen action-anticipation probes (section 6, Table 20) for a pretrained V-JEPA 2 directory.

    python -m vjepa_vlm.scripts.run_anticipation --encoder runs/pretrain/checkpoints/step_00001600 \
        --world runs/anticipation_world --features encoder predictor both --seeds 0 1 2 --output runs/ant.json

`--encoder` is a `VJEPA2Model` directory holding encoder and pretraining predictor, or a pretraining checkpoint
folder, of which `--checkpoint-model` picks `online/` (default: the encoder the predictor was trained with; the
tiny recipes' EMA target encoder is still mostly its initialization, and the predictor fed its tokens is at chance)
or `target/` (the reference's pairing, the same network once the EMA has caught up). Data: a synthetic world
(`<world>/{train,test}/anticipation.jsonl`, classes from `meta.json`), or EPIC-KITCHENS-100 (`--epic-train
EPIC_100_train.csv --epic-eval EPIC_100_validation.csv --epic-root DIR`, videos or frame folders; see
`vjepa_vlm.data.epic_kitchens`).

Every training video gets `--train-draws` contexts at anticipation times U(0.25, 1.75) s and points U(0, 0.25); the
frozen encoder and predictor run once per context (`extract_anticipation_tokens`) and the probe's multi-head
lr x wd sweep (`vjepa_vlm.eval.probe.train_probe_sweep`) trains on the cached tokens, once per `--features` row of
Table 20 (encoder tokens, predicted tokens, both) and probe seed. `--fusion late` reads the "both" row with a pooler
per stream and classifiers on the two pooled features (ours; `early`, the default, is the reference's one pooler
over the concatenated tokens); `late_delta` also gives the second pooler each predicted token's change from the
context's last slice. `--val-fraction` of the training videos (drawn per
action class with `--val-seed`) is held out at 1 s; `--train-clips N` trains the probes on N of the rest (drawn per
action class with `--train-clips-seed`; the label-scarce regime), validation and test unchanged. Each seed's head is the one with the best validation action
recall@5, and its mean-class recall@1/@5 for verb, noun and action is reported on the test split at every
`--eval-times` second. `--plot` draws test recall@5 against anticipation time.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from vjepa_vlm.configuration_vjepa2_anticipation import ANTICIPATION_FUSIONS
from vjepa_vlm.data.epic_kitchens import action_vocabulary, read_anticipation_manifest, read_epic_kitchens
from vjepa_vlm.eval.anticipation import (
    AnticipationSampling,
    AnticipationTask,
    extract_anticipation_tokens,
    segment_labels,
)
from vjepa_vlm.eval.probe import ProbeArgs, stratified_split, train_probe_sweep
from vjepa_vlm.modeling_vjepa2_anticipation import (
    ANTICIPATION_TASKS,
    VJEPA2AnticipationHead,
    VJEPA2ForActionAnticipation,
    anticipation_grid,
    select_anticipation_features,
)
from vjepa_vlm.scripts.run_probe import add_probe_sweep_arguments, load_encoder, mean_and_std


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", type=Path, required=True,
                        help="VJEPA2Model directory (encoder + predictor) or a pretraining checkpoint folder")
    parser.add_argument("--checkpoint-model", choices=("online", "target"), default="online",
                        help="which model of a pretraining checkpoint folder: online/ (the encoder the predictor was "
                             "trained with) or target/ (the EMA encoder)")
    parser.add_argument("--random-init", action="store_true", help="same architecture, randomly initialized")
    parser.add_argument("--init-seed", type=int, default=0, help="seed of the --random-init weights")
    parser.add_argument("--world", type=Path, help="synthetic world directory")
    parser.add_argument("--epic-train", type=Path, help="EPIC_100_train.csv")
    parser.add_argument("--epic-eval", type=Path, help="EPIC_100_validation.csv")
    parser.add_argument("--epic-root", type=Path, help="EPIC-KITCHENS root (<participant>/videos or rgb_frames)")
    parser.add_argument("--epic-video-info", type=Path, help="EPIC_100_video_info.csv (frame rates of frame folders)")
    parser.add_argument("--frame-fps", type=float, help="frame rate of frame folders not in --epic-video-info")
    parser.add_argument("--features", nargs="+", choices=("encoder", "predictor", "both"), default=["both"],
                        help="Table 20 rows: probe the encoder tokens, the predicted tokens, or both")
    parser.add_argument("--fusion", choices=ANTICIPATION_FUSIONS, default="early",
                        help="how the probe reads the 'both' row: early (the reference: one pooler over the "
                             "concatenated tokens), late (ours: each stream pooled by its own pooler, the "
                             "classifiers read both pooled features) or late_delta (late, the second pooler also "
                             "reading each predicted token's change from the context's last slice); the "
                             "single-stream rows are unchanged")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="probe seeds (init and shuffling)")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--val-seed", type=int, default=0, help="seed of the validation split and training draws")
    parser.add_argument("--train-draws", type=int, default=4, help="contexts per training video")
    parser.add_argument("--limit-train", type=int, help="use only the first N training actions (a smaller run)")
    parser.add_argument("--limit-test", type=int, help="use only the first N test actions")
    parser.add_argument("--train-clips", type=int,
                        help="train the probes on N of the training videos left after the validation split, drawn per "
                             "action class (fewer labels; validation and test unchanged)")
    parser.add_argument("--train-clips-seed", type=int, default=0,
                        help="seed of the --train-clips draw (the draws of one seed are nested: N=250 within N=500)")
    parser.add_argument("--eval-times", type=float, nargs="+", default=[1.0], help="test anticipation times (s)")
    parser.add_argument("--context-frames", type=int, default=32)
    parser.add_argument("--fps", type=float, default=8.0, help="frame rate of the context clips")
    parser.add_argument("--max-frames", type=int, default=64, help="frame budget of the predictor")
    parser.add_argument("--predictor-mask-index", type=int, default=1,
                        help="mask token of the predicted slice: the reference's 1 is trained only by a pretraining "
                             "recipe with at least two mask configs (0 for one config)")
    add_probe_sweep_arguments(parser)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, required=True, help="result JSON")
    parser.add_argument("--plot", type=Path, help="PNG of test recall@5 against anticipation time")
    parser.add_argument("--save-model", type=Path, help="write the first features row's first-seed model here")
    args = parser.parse_args(argv)
    epic = (args.epic_train, args.epic_eval, args.epic_root)
    if (args.world is None) == all(x is None for x in epic):
        parser.error("give --world, or --epic-train, --epic-eval and --epic-root")
    if args.world is None and any(x is None for x in epic):
        parser.error("EPIC-KITCHENS needs all of --epic-train, --epic-eval and --epic-root")
    if not 0 < args.val_fraction < 1:
        parser.error(f"--val-fraction must lie in (0, 1): the head is chosen on validation, got {args.val_fraction}")
    return args


def resolve_encoder_dir(path: Path, checkpoint_model: str) -> Path:
    """`path` when it is a `VJEPA2Model` directory; its `checkpoint_model` folder when it is a pretraining
    checkpoint (`online/` and `target/`)."""
    if (path / "config.json").is_file():
        return path
    if (path / checkpoint_model / "config.json").is_file():
        return path / checkpoint_model
    raise FileNotFoundError(f"--encoder {path} is neither a VJEPA2Model directory (config.json) nor a pretraining "
                            f"checkpoint with a {checkpoint_model}/ model (--checkpoint-model)")


def mask_token_untrained(model: VJEPA2ForActionAnticipation) -> bool:
    """Whether the predictor's mask token for the predicted slice is still all zeros: mask tokens start at zero
    (`pred_zero_init_mask_tokens`) and pretraining moves only those of its mask configs (one token per config)."""
    tokens = model.vjepa2.predictor.embeddings.mask_tokens
    return not tokens[model.config.predictor_mask_index].any().item()


def load_data(cli) -> tuple[list, list, tuple[int, int, int]]:
    """(train segments, test segments, (verbs, nouns, actions))."""
    if cli.world is not None:
        meta = json.loads((cli.world / "meta.json").read_text())["anticipation"]
        train = read_anticipation_manifest(cli.world / "train" / "anticipation.jsonl", cli.world)
        test = read_anticipation_manifest(cli.world / "test" / "anticipation.jsonl", cli.world)
        return train, test, (len(meta["verbs"]), len(meta["nouns"]), len(meta["actions"]))
    actions = action_vocabulary(cli.epic_train, cli.epic_eval)
    train, test = (
        read_epic_kitchens(path, cli.epic_root, actions, cli.epic_video_info, cli.frame_fps)
        for path in (cli.epic_train, cli.epic_eval)
    )
    verbs = 1 + max(s.verb for s in train + test)
    nouns = 1 + max(s.noun for s in train + test)
    return train, test, (verbs, nouns, len(actions))


def stratified_subset(labels: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """Sorted indices of `count` items of `labels`, every class within one item of its share of the whole.

    Systematic sampling per class: each class's items get the keys (random rank + one random offset) / class size,
    and the `count` smallest keys are kept, so a class of n items gives ceil(q n - offset) of them at any key
    threshold q. The keys do not depend on `count`, so the draws of one seed are nested.
    """
    if not 0 < count <= len(labels):
        raise ValueError(f"--train-clips {count}: must lie in 1..{len(labels)}, the training videos left after the "
                         "validation split")
    generator = torch.Generator().manual_seed(seed)
    keys = torch.empty(len(labels))
    for label in labels.unique(sorted=True):
        members = (labels == label).nonzero().flatten()
        rank = torch.randperm(len(members), generator=generator).float()
        keys[members] = (rank + torch.rand(1, generator=generator)) / len(members)
    return keys.argsort()[:count].sort().values


def time_split(seconds: float) -> str:
    return f"test@{seconds:g}s"


def axis_y(value: float, top: float, height: float, low: float, high: float) -> float:
    """Pixel row of `value` on a vertical axis from `low` (bottom) to `high` (top)."""
    return top + height * (high - value) / (high - low)


def plot_recall(summary: dict, times: list[float], path: Path) -> None:
    """Test recall@1 (top row) and @5 (bottom row) against anticipation time, one panel per task, one line per
    features row: mean over seeds, with a bar of ± one std. Each panel's axis spans its own values, so small
    differences between rows and times stay visible (read the axis labels)."""
    colors = {"encoder": (31, 119, 180), "predictor": (44, 160, 44), "both": (214, 39, 40)}
    panel_w, panel_h, margin, top_margin = 280, 200, 50, 40
    image = Image.new("RGB", (margin + 3 * panel_w + 20, top_margin + 2 * (panel_h + 40) + 20), "white")
    draw = ImageDraw.Draw(image)
    draw.text((margin, 6), f"test mean-class recall vs anticipation time ({summary['encoder_kind']} encoder; "
              "mean ± std over seeds)", fill="black")
    for r, k in enumerate((1, 5)):
        for p, task in enumerate(ANTICIPATION_TASKS):
            metric = f"{task}_recall@{k}"
            series = {name: [result["recall"][time_split(t)][metric] for t in times]
                      for name, result in summary["features"].items()}
            spread = [(s["mean"] - (s["std"] or 0), s["mean"] + (s["std"] or 0)) for v in series.values() for s in v]
            low, high = min(a for a, _ in spread), max(b for _, b in spread)
            pad = max(0.01, 0.1 * (high - low))
            low, high = max(0.0, low - pad), min(1.0, high + pad)
            left, top = margin + p * panel_w, top_margin + r * (panel_h + 40)
            width, height = panel_w - 55, panel_h
            y = partial(axis_y, top=top, height=height, low=low, high=high)
            draw.rectangle([left, top, left + width, top + height], outline="black")
            draw.text((left + 4, top + 4), f"{task} recall@{k}", fill="black")
            for value in (low, (low + high) / 2, high):
                draw.text((left - 42, y(value) - 5), f"{100 * value:.1f}%", fill="black")
            for i, seconds in enumerate(times):
                draw.text((left + width * (i + 0.5) / len(times) - 10, top + height + 6), f"{seconds:g}", fill="black")
            for row, (name, values) in enumerate(series.items()):
                points = [(left + width * (i + 0.5) / len(times), y(s["mean"])) for i, s in enumerate(values)]
                draw.line(points, fill=colors[name], width=2)
                for (x, _), s in zip(points, values):
                    if s["std"]:
                        draw.line([(x, y(s["mean"] - s["std"])), (x, y(s["mean"] + s["std"]))], fill=colors[name])
                    draw.ellipse([x - 2, y(s["mean"]) - 2, x + 2, y(s["mean"]) + 2], fill=colors[name])
                if r == 0 and p == 0:
                    draw.text((margin + 420 + 70 * row, 22), name, fill=colors[name])
    draw.text((margin + panel_w, image.height - 16), "anticipation time (s)", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".png", delete=False) as handle:
        image.save(handle, format="PNG")
    os.replace(handle.name, path)


def percent(stats: dict) -> str:
    text = f"{100 * stats['mean']:.1f}"
    return text if stats["std"] is None else f"{text} ± {100 * stats['std']:.1f}"


def recall_tables(summary: dict, times: list[float], reference_time: float) -> str:
    """Markdown tables of test recall (%, mean ± std over seeds): Table 20's rows at `reference_time`, then
    noun and action recall@5 at every anticipation time (Figure 18, left)."""
    rows = summary["features"]
    split = time_split(reference_time if reference_time in times else times[0])
    columns = [f"{task}_recall@{k}" for task in ANTICIPATION_TASKS for k in (1, 5)]
    lines = [f"| features ({split}) | " + " | ".join(c.replace("_", " ") for c in columns) + " | val action recall@5 |",
             "| --- " * (len(columns) + 2) + "|"]
    for name, result in rows.items():
        cells = [percent(result["recall"][split][c]) for c in columns] + [percent(result["recall"]["val"]["action_recall@5"])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "| features: noun / action recall@5 | " + " | ".join(f"{t:g} s" for t in times) + " |",
              "| --- " * (len(times) + 1) + "|"]
    for name, result in rows.items():
        cells = [" / ".join(percent(result["recall"][time_split(t)][f"{task}_recall@5"]) for task in ("noun", "action"))
                 for t in times]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_json(data: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as handle:
        json.dump(data, handle, indent=2)
    os.replace(handle.name, path)


def main(argv=None) -> dict:
    cli = parse_args(argv)
    torch.set_num_threads(cli.threads)
    train, test, (verbs, nouns, actions) = load_data(cli)
    train, test = train[: cli.limit_train], test[: cli.limit_test]
    cli.encoder = resolve_encoder_dir(cli.encoder, cli.checkpoint_model)
    backbone = load_encoder(cli.encoder, cli.random_init, cli.init_seed)
    position_embedding = None if cli.position_embedding == "none" else cli.position_embedding
    model = VJEPA2ForActionAnticipation.from_vjepa2(
        backbone, num_verbs=verbs, num_nouns=nouns, num_actions=actions, frames_per_second=cli.fps,
        context_frames=cli.context_frames, max_frames=cli.max_frames, pooler_num_attention_heads=cli.num_heads,
        num_pooler_layers=cli.num_blocks - 1, probe_position_embedding=position_embedding,
        predictor_mask_index=cli.predictor_mask_index,
    )
    num_mask_tokens = model.vjepa2.predictor.embeddings.mask_tokens.shape[0]
    if not 0 <= cli.predictor_mask_index < num_mask_tokens:
        raise ValueError(f"--predictor-mask-index {cli.predictor_mask_index}: {cli.encoder}'s predictor has mask tokens "
                         f"0 to {num_mask_tokens - 1}")
    untrained = not cli.random_init and mask_token_untrained(model)
    if untrained and {"predictor", "both"} & set(cli.features):
        print(f"warning: mask token {cli.predictor_mask_index} of {cli.encoder}'s predictor is all zeros, so "
              "pretraining never trained it (a recipe with fewer mask configs); the predicted tokens read an "
              "input the predictor has not seen. Pass --predictor-mask-index of a trained token.", flush=True)
    task = AnticipationTask(model.config)
    sampling = AnticipationSampling(train_draws=cli.train_draws)
    for name, segments in (("train", train), ("test", test)):
        task.check_labels(name, segment_labels(segments))
    model.check_context(cli.context_frames, torch.tensor(cli.eval_times + [sampling.time_range[1]]))

    actions_of_train = segment_labels(train)[:, 2]
    kept, held = stratified_split(actions_of_train, cli.val_fraction, cli.val_seed)
    if cli.train_clips is not None:
        kept = kept[stratified_subset(actions_of_train[kept], cli.train_clips, cli.train_clips_seed)]
    train_part, val_part = [train[i] for i in kept.tolist()], [train[i] for i in held.tolist()]
    at = lambda segments, seconds: np.tile([seconds, sampling.eval_point], (len(segments), 1, 1))  # noqa: E731
    contexts = {"train": (train_part, sampling.draws(len(train_part), cli.val_seed)),
                "val": (val_part, at(val_part, sampling.eval_time))}
    contexts.update({time_split(t): (test, at(test, t)) for t in cli.eval_times})
    tokens = {name: extract_anticipation_tokens(model, segments, draws, cli.resolution)
              for name, (segments, draws) in contexts.items()}
    labels = {name: segment_labels(segments) for name, (segments, _) in contexts.items()}

    summary = {"encoder": str(cli.encoder), "encoder_kind": "random" if cli.random_init else "pretrained",
               "num_items": {name: len(segments) for name, (segments, _) in contexts.items()},
               "classes": {"verbs": verbs, "nouns": nouns, "actions": actions},
               "train_clips": cli.train_clips, "train_clips_seed": cli.train_clips_seed,
               "train_draws": cli.train_draws, "context_frames": cli.context_frames, "fps": cli.fps,
               "position_embedding": cli.position_embedding, "fusion": cli.fusion,
               "predictor_mask_index": cli.predictor_mask_index,
               "predictor_mask_token_untrained": untrained, "features": {}}
    side = cli.resolution // model.config.patch_size
    for features in cli.features:
        fusion = cli.fusion if features == "both" else "early"
        row_task = AnticipationTask(model.config, fusion)
        data = {name: select_anticipation_features(*tokens[name], features, fusion) for name in contexts}
        runs = []
        for seed in cli.seeds:
            args = ProbeArgs(
                num_frames=cli.context_frames, resolution=cli.resolution, learning_rates=tuple(cli.learning_rates),
                weight_decays=tuple(cli.weight_decays), epochs=cli.epochs, batch_size=cli.batch_size,
                num_heads=cli.num_heads, num_blocks=cli.num_blocks, position_embedding=position_embedding, seed=seed,
            )
            eval_sets = {name: (data[name], labels[name]) for name in contexts if name != "train"}
            result = train_probe_sweep(model.config, data["train"], labels["train"], eval_sets, row_task, args, "val",
                                       anticipation_grid(data["train"].shape[-2], side, side))
            best = result["best"]
            print(f"{features} seed {seed}: head lr={best['lr']} wd={best['weight_decay']}: " + " ".join(
                f"{t} {best[f'{time_split(t)}_action_recall@5']:.3f}" for t in cli.eval_times), flush=True)
            if cli.save_model is not None and features == cli.features[0] and seed == cli.seeds[0]:
                model.config.anticipation_features = features
                model.config.anticipation_fusion = fusion
                model.head = VJEPA2AnticipationHead(model.config)
                model.head.load_state_dict(result["probe"].heads[best["index"]].state_dict())
                model.save_pretrained(cli.save_model)
            runs.append({"seed": seed, "best": best, "heads": result["heads"]})
            metrics = [key.split("_", 1)[1] for key in runs[0]["best"] if key.startswith("val_")]
            summary["features"][features] = {
                "recall": {split: {m: mean_and_std([run["best"][f"{split}_{m}"] for run in runs]) for m in metrics}
                           for split in eval_sets},
                "seeds": runs,
            }
            # Written after every seed, so a run stopped part-way keeps what it finished.
            summary["complete"] = features == cli.features[-1] and seed == cli.seeds[-1]
            write_json(summary, cli.output)
        for split in eval_sets:
            stats = summary["features"][features]["recall"][split]
            print(f"{features} {split}: " + " ".join(
                f"{task_name} R@5 {stats[f'{task_name}_recall@5']['mean']:.3f}" for task_name in ANTICIPATION_TASKS))
    if cli.plot is not None:
        plot_recall(summary, cli.eval_times, cli.plot)
    print(recall_tables(summary, cli.eval_times, sampling.eval_time))
    return summary


if __name__ == "__main__":
    main()
