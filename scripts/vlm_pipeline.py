"""End to end on the embedded default: synthetic world -> encoder pretraining -> VLM stages 1, 1.5, 2, 3 -> evaluation.

    python scripts/vlm_pipeline.py                       # the README's main command (8.5 minutes on 2 CPU cores)
    python scripts/vlm_pipeline.py --encoder ENC --stage_steps 20,20,20,4000 --seed 0 --out runs/vlm_long_seed0
                                                         # the published result (README, "Small-scale result")
    python scripts/vlm_pipeline.py --preset vjepa2-tiny-smollm2
                                                         # around SmolLM2-135M-Instruct: LoRA stage 3 (PRESET_PLANS)

The world (`--world`, generated when absent) has 2000 training clips and `--world_test` test clips: 64 by
default, the default world's (same seed, so the same held-out questions); a clip depends only on the seed and
its index, so a larger test split (`--world_test 512`: 979 multiple-choice questions instead of 123) starts
with those same 64 clips and gives accuracies whose sampling error is a third as large. Every stage reads its
manifests from the world. The VLM is trained twice, once around the pretrained tiny encoder and once around a randomly initialized one (same
architecture, same data, same steps). Evaluation: every multiple-choice question of the world's held-out
video QA (test split), answered two ways: by option likelihood (the question asked openly, its cloze twin in
`video_qa_cloze.jsonl`; the option whose text the model finds most likely, as lmms-eval's `multiple_choice`
tasks score) and by option letter (the question with its lettered options; the letter whose token the model
scores highest right after the assistant header); each once with the question's own video and once with
another clip's (the control: what the video itself contributes). Baselines: chance, the majority answer
per template, a blind text-only classifier that reads the question and options but not the video, and a
blind option scorer that rates each option's text against the question, so it learns the answer priors an
option-likelihood scorer can use too (`vjepa_vlm.data.synthetic_baselines`). Every accuracy is also split by
question type and by test clip: compositional (a motion, shape and colour never seen together in training) or
in-distribution. Prints a table and writes it with the raw numbers and every question's answers to
`--out/results.json` (atomically), and each stage's loss curve to `--out/<encoder>/stage*/loss_curve.png`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
import yaml

from vjepa_vlm.data.manifests import read_jsonl
from vjepa_vlm.data.synthetic_baselines import (blind_accuracy, blind_option_accuracy, chance_accuracy,
                                                   majority_accuracy)
from vjepa_vlm.eval.option_scoring import continuation_log_likelihoods
from vjepa_vlm.train.checkpoint import latest_checkpoint
from vjepa_vlm.train.embedded import EmbeddedArgs, ensure_world
from vjepa_vlm.train.run_stage import RECIPES

STAGES = ("1", "1_5", "2", "3")
LETTERS = ("A", "B", "C", "D")
# What the pipeline trains per VLM preset: each stage's recipe (in train/recipes), the default steps of stages
# 1, 1.5, 2, 3 (0 skips a stage: the next one starts from the previous output) and the encoders trained around.
# The SmolLM2 plan (stage 3 only, LoRA, 100 steps of 8) is sized to the 15-minute budget on 2 CPU cores; its
# stage 2 (the option-letter mapping on hinted questions, `--stage_steps 0,0,250,100`) is not in the default:
# it teaches copying a stated answer's letter, which did not carry over to the unhinted questions
# (research/journal_vlm.md, "Issue 18", round 2026-12-07b).
PRESET_PLANS = {
    "vjepa2-tiny-qwen2": {"recipes": {stage: f"stage{stage}_tiny.yaml" for stage in STAGES},
                          "stage_steps": "20,20,20,600", "batch_size": 16, "variants": "pretrained,random"},
    "vjepa2-tiny-smollm2": {"recipes": {**{stage: f"stage{stage}_tiny.yaml" for stage in STAGES},
                                        "2": "stage2_tiny_smollm2.yaml", "3": "stage3_tiny_smollm2.yaml"},
                            "stage_steps": "0,0,0,100", "batch_size": 8, "variants": "pretrained"},
}
# The goal for the main command's table, by option letter: points over the strongest blind baseline,
# and over the same VLM shown another clip's video.
GOAL_OVER_BLIND, GOAL_OVER_OTHER_VIDEO = 0.15, 0.10
# The world's two kinds of test clip (`compositional` in its test clips.jsonl), each a column of the table.
SPLIT_GROUPS = ("compositional", "in-distribution")
# Where the tiny stage recipes read their manifests; the pipeline points them at its own world instead.
DEFAULT_WORLD = Path(EmbeddedArgs.world_dir)


def run(command: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    # Modules rather than train/*.py paths, and the caller's working directory, so that an installed
    # `vjepa-pipeline` runs outside a checkout and relative --out/--world paths mean the same to every step.
    subprocess.run([sys.executable, *command], check=True, env=env)


def pretrain_encoder(out: Path, steps: int, world: Path) -> Path:
    """Tiny V-JEPA 2 pretraining on the world's training clips with `train/recipes/pretrain_tiny_motion.yaml`
    (the recipe that beats a random encoder at this scale), its warmup and cooldown scaled to `steps` as in the
    recipe's 1600 (1/8 and 1/4); returns the EMA (target) encoder directory."""
    run_dir = out / "pretrain"
    if latest_checkpoint(run_dir) is None or not (latest_checkpoint(run_dir) / "target").is_dir():
        run(["-m", "vjepa_vlm.train.pretrain", "--config", str(RECIPES / "pretrain_tiny_motion.yaml"),
             f"steps={steps}", f"optim.warmup_steps={steps // 8}", f"optim.decay_steps={steps // 4}", f"checkpoint.dir={run_dir}",
             f"synthetic_world.dir={world}", f"checkpoint.every_steps={steps}"])
    return latest_checkpoint(run_dir) / "target"


def world_sources(stage: str, world: Path, recipe_name: str | None = None) -> str:
    """A stage recipe's `data.sources` (default: the tiny recipe of `stage`) with its manifests and media moved
    into `world` (a YAML flow list)."""
    recipe = yaml.safe_load((RECIPES / (recipe_name or f"stage{stage}_tiny.yaml")).read_text())
    sources = []
    for source in recipe["data"]["sources"]:
        manifest = Path(source["path"]).relative_to(DEFAULT_WORLD)
        sources.append({**source, "path": str(world / manifest), "media_root": str(world)})
    return json.dumps(sources)


def stage_overrides(settings: list[str]) -> dict[str, list[str]]:
    """`--set STAGE:key=value` options as the extra `key=value` overrides of each stage ("all": every stage)."""
    extra = {stage: [] for stage in STAGES}
    for setting in settings:
        stage, _, override = setting.partition(":")
        if stage not in (*STAGES, "all") or "=" not in override:
            raise SystemExit(f"--set expects STAGE:key=value with STAGE one of {', '.join(STAGES)} or all, got {setting!r}")
        for name in STAGES if stage == "all" else (stage,):
            extra[name].append(override)
    return extra


def train_stages(out: Path, encoder: Path | None, stage_steps: list[int], batch_size: int, world: Path,
                 seed: int, preset: str = EmbeddedArgs.preset, extra: dict[str, list[str]] | None = None) -> Path:
    """Stages 1 -> 1.5 -> 2 -> 3 with the tiny recipes on `world`, each starting from the previous output;
    `seed` seeds the tiny LLM's initialization and every stage's data order; `preset` is the VLM the embedded
    default builds (its LLM from scratch or SmolLM2) and names each stage's recipe (`PRESET_PLANS`); a stage with
    0 steps is skipped; `extra[stage]` are further overrides of that stage."""
    init_from = "embedded"
    recipes = PRESET_PLANS[preset]["recipes"]
    for stage, steps in zip(STAGES, stage_steps):
        if steps == 0:
            continue
        run_dir = out / f"stage{stage}"
        if not (run_dir / "output" / "stage.json").is_file():
            run(["-m", f"vjepa_vlm.train.stage{stage}", str(RECIPES / recipes[stage]), f"steps={steps}",
                 f"batch_size={batch_size}", f"data.sources={world_sources(stage, world, recipes[stage])}",
                 f"micro_batch_size={min(batch_size, 8)}", f"checkpoint.dir={run_dir}", f"model.init_from={init_from}",
                 f"embedded.init_dir={out / 'init'}", f"embedded.world_dir={world}",
                 f"embedded.encoder_from={encoder if encoder else 'null'}", f"embedded.seed={seed}", f"seed={seed}",
                 f"embedded.preset={preset}", "logging.tracker=tensorboard", *(extra or {}).get(stage, [])])
        init_from = str(run_dir / "output")  # the stage's loss_curve.png lies beside its metrics.jsonl
    return Path(init_from)


def letter_token_ids(tokenizer) -> list[int]:
    """Token ids of the option letters exactly as a training answer writes them (no leading space)."""
    ids = [tokenizer.encode(letter, add_special_tokens=False) for letter in LETTERS]
    if any(len(i) != 1 for i in ids):
        raise ValueError(f"option letters must be single tokens, got {ids}")
    return [i[0] for i in ids]


def multiple_choice_prompt(processor, row: dict) -> str:
    """The question turn plus the assistant header: the training sequence cut right before the answer (the
    letter of an MC row, the text of its cloze twin)."""
    question = processor.to_model_placeholders(row["conversations"][0]["value"])
    return processor.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True)


def other_clip_videos(rows: list[dict]) -> list[str]:
    """For each question, the video of another test clip (half the list away, skipping its own clip's rows).

    Scoring the questions with these videos measures how much of the accuracy comes from the video itself:
    a model that ignores its video scores the same with the wrong one.
    """
    if len({row["video"] for row in rows}) < 2:
        raise ValueError("another clip's video needs questions about at least two clips")
    videos = []
    for index, row in enumerate(rows):
        shift = len(rows) // 2
        while rows[(index + shift) % len(rows)]["video"] == row["video"]:
            shift += 1
        videos.append(rows[(index + shift) % len(rows)]["video"])
    return videos


def option_log_likelihoods(model, processor, row: dict, frames, options: list[str]) -> torch.Tensor:
    """Summed log-probability of each option as the answer to `row`'s question (`multiple_choice_prompt`) with
    `frames` as its video: the option scorer lmms-eval's `multiple_choice` tasks use too."""
    prompt = multiple_choice_prompt(processor, row)
    return continuation_log_likelihoods(model, processor, prompt, options, videos=[frames]).log_likelihoods


def clip_groups(world: Path, rows: list[dict]) -> list[str]:
    """Per test question, whether its clip is "compositional" (its main object's motion, shape and colour never
    occur together in training: known parts in a new combination) or "in-distribution" (`clips.jsonl` of the
    world's test split; the generator draws about half of the test clips each way)."""
    clips_file = world / "test" / "clips.jsonl"
    if not clips_file.is_file():
        raise SystemExit(f"{clips_file} is missing: the compositional split needs the world's clip metadata; "
                         "regenerate the world")
    flags = {clip["video"]: clip["compositional"] for clip in read_jsonl(clips_file)}
    missing = [row["video"] for row in rows if row["video"] not in flags]
    if missing:
        raise SystemExit(f"{clips_file} has no entry for {len(missing)} questions' videos, e.g. {missing[0]}")
    return [SPLIT_GROUPS[0] if flags[row["video"]] else SPLIT_GROUPS[1] for row in rows]


@torch.no_grad()
def multiple_choice_accuracy(model_dir: Path, world: Path, rows: list[dict], cloze_rows: list[dict],
                             videos: list[str], groups: list[str] | None = None) -> dict:
    """Accuracy by question type, two ways (`videos[i]` is the video shown with question i: its own clip's,
    or another clip's for the control); `groups[i]`, when given, is one more group question i counts in (e.g.
    `clip_groups`). Also returns `answers`: per question, the letter and the option text chosen.

    - "letter": the MC question with its options; the answer is the option letter with the highest
      next-token log-probability. Also returns `predicted <letter>`, the share of questions answered with each letter,
      which shows a constant-answer collapse (the option letters are balanced in the data).
    - "cloze": the same question asked openly (its `video_qa_cloze.jsonl` twin); the answer is the option
      whose text the model finds most likely as the answer.
    """
    from vjepa_vlm.modeling_vjepa2_vlm import VJEPA2VLMForConditionalGeneration
    from vjepa_vlm.processing_vjepa2_vlm import VJEPA2VLMProcessor
    from vjepa_vlm.train.handoff import load_stage_model
    from vjepa_vlm.video_processing_vjepa2_vlm import load_video_frames

    model = load_stage_model(model_dir, VJEPA2VLMForConditionalGeneration).eval()
    processor = VJEPA2VLMProcessor.from_pretrained(model_dir)
    letter_token_ids(processor.tokenizer)  # the letter way reads one supervised token: a split letter is an error
    correct = {"letter": defaultdict(list), "cloze": defaultdict(list)}
    predicted = defaultdict(int)
    answers = {"letter": [], "option": []}
    for row, cloze, video, extra in zip(rows, cloze_rows, videos, groups or [None] * len(rows)):
        frames = load_video_frames(world / video, processor.num_frames, processor.frame_sampling, processor.target_fps)
        answer = LETTERS[int(option_log_likelihoods(model, processor, row, frames, list(LETTERS)).argmax())]
        predicted[answer] += 1
        chosen = cloze["candidates"][int(option_log_likelihoods(model, processor, cloze, frames, cloze["candidates"]).argmax())]
        answers["letter"].append(answer)
        answers["option"].append(chosen)
        for group in ("all", row["question_type"], *([extra] if extra else [])):
            correct["letter"][group].append(answer == row["answer_letter"])
            correct["cloze"][group].append(chosen == cloze["answer"])
    accuracy = {way: {name: sum(v) / len(v) for name, v in sorted(g.items())} for way, g in correct.items()}
    accuracy["letter"] |= {f"predicted {letter}": predicted[letter] / len(rows) for letter in LETTERS}
    return accuracy | {"answers": answers}


def baseline_rows(train: list[dict], test: list[dict], groups: list[str]) -> dict[str, dict[str, float]]:
    """The blind baselines' accuracy by question type, and on each of `groups`' subsets of `test` (each baseline
    fitted on `train` as for the whole test split, then scored on the subset)."""
    baselines = {"chance": chance_accuracy,
                 "majority answer per template": lambda subset: majority_accuracy(train, subset),
                 "blind text-only (question + options, no video)": lambda subset: blind_accuracy(train, subset),
                 "blind option scorer (question + each option, no video)": lambda subset: blind_option_accuracy(train, subset)}
    rows = {}
    for name, score in baselines.items():
        rows[f"baseline: {name}"] = {g: v for g, v in score(test).items() if "=" not in g}
        for group in dict.fromkeys(groups):
            rows[f"baseline: {name}"][group] = score([r for r, g in zip(test, groups) if g == group])["all"]
    return rows


def column_order(column: str) -> tuple[int, int, str]:
    """Table columns: all, the question types, the compositional / in-distribution split, the predicted letters."""
    if column in SPLIT_GROUPS:
        return (2, SPLIT_GROUPS.index(column), column)
    return (0 if column == "all" else 3 if column.startswith("predicted ") else 1, 0, column)


def results_table(rows: dict[str, dict[str, float]]) -> str:
    columns = sorted({c for r in rows.values() for c in r}, key=column_order)
    lines = ["| model | " + " | ".join(columns) + " |", "| --- |" + " --- |" * len(columns)]
    for name, values in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * values[c]:.1f}" if c in values else "" for c in columns) + " |")
    return "\n".join(lines)


TABLE_LEGEND = """\
Rows: "baseline:" rows never see a video (chance; the training set's most frequent answer per question template;
a classifier reading the question and its options; a scorer rating each option's text against the question).
"VLM, <encoder> encoder" rows are the trained VLM scored two ways: "option letter" = the letter A-D the VLM rates
likeliest right after the question with its lettered options (what lmms-eval's generation tasks score);
"option likelihood" = the option whose text the VLM finds likeliest as the answer to the question asked openly.
", another clip's video" = the same VLM and questions shown another test clip's video: what is left without the
right video. Columns: "all" = % of the questions answered right; motion / appearance / counting = % per question
type; "compositional" = on the test clips whose main object combines a motion, shape and colour never seen
together in training, "in-distribution" = on the other test clips; "predicted X" = % of questions answered with
letter X (one letter everywhere = a collapsed VLM)."""


def verdict(rows: dict[str, dict[str, float]], variant: str) -> str:
    """One line: does the VLM around `variant` read the video, by option letter, against the issue's goal."""
    blind_name, blind = max(((name, values["all"]) for name, values in rows.items() if name.startswith("baseline:")),
                            key=lambda item: item[1])
    own = rows[f"VLM, {variant}: option letter"]["all"]
    other = rows[f"VLM, {variant}, another clip's video: option letter"]["all"]
    over_blind, over_other = own - blind, own - other
    reads = over_blind >= GOAL_OVER_BLIND and over_other >= GOAL_OVER_OTHER_VIDEO
    return (f"Verdict ({variant}, by option letter): {100 * own:.1f}%, {100 * over_blind:+.1f} points over the "
            f"strongest blind baseline ({blind_name.removeprefix('baseline: ')}, {100 * blind:.1f}%) and "
            f"{100 * over_other:+.1f} over the same VLM shown another clip's video; "
            + ("it reads the video (goal: +15 and +10 points)." if reads else
               f"goal (+{100 * GOAL_OVER_BLIND:.0f} and +{100 * GOAL_OVER_OTHER_VIDEO:.0f} points) not reached."))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/vlm_pipeline")
    parser.add_argument("--world", default="runs/vlm_world",
                        help="synthetic world, generated when absent (same seed as the default world, so its test split starts with "
                             "the default world's clips)")
    parser.add_argument("--world_train", type=int, default=2000,
                        help="training clips of a generated world (the default world's 256 are too few to learn from)")
    parser.add_argument("--world_test", type=int, default=EmbeddedArgs.world_test,
                        help="test clips of a generated world (64: the default world's; 512 for a lower-noise comparison)")
    parser.add_argument("--pretrain_steps", type=int, default=400,
                        help="steps of the pipeline's own encoder pretraining (the published encoder: 1600)")
    parser.add_argument("--encoder", default=None,
                        help="an already pretrained tiny encoder directory (e.g. <pretrain run>/checkpoints/step_*/target); "
                             "skips pretraining")
    parser.add_argument("--stage_steps", default=None,
                        help="steps of stages 1, 1.5, 2, 3, 0 skipping a stage (default per preset: "
                             + "; ".join(f"{name} {plan['stage_steps']}" for name, plan in PRESET_PLANS.items())
                             + "; the published tiny-LLM result: 20,20,20,4000)")
    parser.add_argument("--batch_size", type=int, default=None,
                        help="global batch of every stage (default per preset: "
                             + "; ".join(f"{name} {plan['batch_size']}" for name, plan in PRESET_PLANS.items()) + ")")
    parser.add_argument("--seed", type=int, default=0, help="seed of the VLMs' initialization and data order")
    parser.add_argument("--preset", default=EmbeddedArgs.preset, choices=sorted(PRESET_PLANS),
                        help="the VLM: vjepa2-tiny-qwen2 (LLM from scratch) or vjepa2-tiny-smollm2 (SmolLM2-135M-Instruct)")
    parser.add_argument("--set", action="append", default=[], metavar="STAGE:key=value",
                        help="extra override of one stage's recipe (STAGE: 1, 1_5, 2, 3 or all), e.g. 3:lora.enabled=true")
    parser.add_argument("--variants", default=None,
                        help="encoders to train VLMs around, 'pretrained' and/or 'random' (default per preset: "
                             + "; ".join(f"{name} {plan['variants']}" for name, plan in PRESET_PLANS.items())
                             + "); runs sharing --out reuse each other's finished stages")
    args = parser.parse_args(argv)
    plan = PRESET_PLANS[args.preset]
    stage_steps = [int(s) for s in (args.stage_steps or plan["stage_steps"]).split(",")]
    if len(stage_steps) != len(STAGES) or min(stage_steps) < 0 or max(stage_steps) == 0:
        raise SystemExit(f"--stage_steps needs {len(STAGES)} comma-separated step counts >= 0, at least one above 0, "
                         f"got {args.stage_steps!r}")
    batch_size = args.batch_size or plan["batch_size"]
    out, world = Path(args.out), ensure_world(EmbeddedArgs(world_dir=args.world, world_train=args.world_train,
                                                             world_test=args.world_test))
    variants = (args.variants or plan["variants"]).split(",")
    if any(variant not in ("pretrained", "random") for variant in variants):
        raise SystemExit(f"--variants: expected 'pretrained' and/or 'random', got {','.join(variants)!r}")
    encoder = Path(args.encoder) if args.encoder else None
    if "pretrained" in variants and encoder is None:
        print(f"[1/4] pretraining the tiny encoder ({args.pretrain_steps} steps)", flush=True)
        encoder = pretrain_encoder(out, args.pretrain_steps, world)
    outputs = {}
    for index, variant in enumerate(variants):
        print(f"[{2 + index}/4] VLM stages {', '.join(s for s, n in zip(STAGES, stage_steps) if n)} "
              f"({args.preset}) with the {variant} encoder", flush=True)
        outputs[f"{variant} encoder"] = train_stages(out / variant, encoder if variant == "pretrained" else None,
                                                     stage_steps, batch_size, world, args.seed, args.preset,
                                                     stage_overrides(args.set))
    print("[4/4] evaluating on the held-out multiple-choice video questions", flush=True)
    train, test = ([r for r in read_jsonl(world / split / "video_qa.jsonl") if r["format"] == "mc"]
                   for split in ("train", "test"))
    cloze = read_jsonl(world / "test" / "video_qa_cloze.jsonl")
    if [c["id"] for c in cloze] != [f"{r['id']}-cloze" for r in test]:
        raise SystemExit(f"{world}/test/video_qa_cloze.jsonl is not the cloze twin of video_qa.jsonl's MC rows: "
                         "regenerate the world")
    groups = clip_groups(world, test)
    rows = baseline_rows(train, test, groups)
    own, others = [row["video"] for row in test], other_clip_videos(test)
    answers = {}
    for name, model_dir in outputs.items():
        for label, videos in (("", own), (", another clip's video", others)):
            started = time.monotonic()
            accuracy = multiple_choice_accuracy(model_dir, world, test, cloze, videos, groups)
            rows[f"VLM, {name}{label}: option likelihood"] = accuracy["cloze"]
            rows[f"VLM, {name}{label}: option letter"] = accuracy["letter"]
            answers[f"VLM, {name}{label}"] = accuracy["answers"]
            print(f"  VLM, {name}{label}: option likelihood {100 * accuracy['cloze']['all']:.1f}%, option letter "
                  f"{100 * accuracy['letter']['all']:.1f}% ({time.monotonic() - started:.0f} s)", flush=True)
    text = results_table(rows)
    verdicts = [verdict(rows, name) for name in outputs]
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=out, suffix=".tmp", delete=False) as handle:
        json.dump({"table": text, "verdicts": verdicts, "accuracy": rows, "questions": [
                       {"id": row["id"], "question_type": row["question_type"], "clips": group, "answer_letter":
                        row["answer_letter"], "answer": row["answer"]} for row, group in zip(test, groups)],
                   "answers": answers, "stage_steps": stage_steps,
                   "batch_size": batch_size, "encoder": str(encoder), "seed": args.seed, "preset": args.preset,
                   "set": args.set, "models": {name: str(path) for name, path in outputs.items()}},
                  handle, indent=1)
    os.replace(handle.name, out / "results.json")
    print(f"\nheld-out video QA, multiple choice ({len(test)} questions of {len({r['video'] for r in test})} test "
          f"clips; " + ", ".join(f"{groups.count(g)} {g}" for g in SPLIT_GROUPS) + f"), accuracy %\n\n{text}\n\n{TABLE_LEGEND}\n\n" + "\n".join(verdicts))
    print("\nVLMs (Hugging Face directories): " + "; ".join(f"{name}: {path}" for name, path in outputs.items())
          + f"\nstage checkpoints: {out}/<encoder>/stage*/checkpoints/; table and raw numbers: {out / 'results.json'}")
    return rows


if __name__ == "__main__":
    main()
