"""What a SmolLM2 VLM training step costs with and without the two sample-cost cuts of issue 18.

    python research/benchmark_smollm2_step.py --init runs/smol_main/out/pretrained/init --world runs/smol_main/world \
        --batches 6 --out runs/s18c/bench_step.json

The stage-3 recipe of the SmolLM2 preset (`train/recipes/stage3_tiny_smollm2.yaml`: LoRA r 8 on the LLM, pooler in
full, frozen encoder with the trainer's feature cache) is built exactly as the stage trainer builds it; the same
`--batches` batches of 8 training samples are then run forward + backward in four settings, interleaved batch by
batch so that a change of machine load hits all four alike:

- LM head at every position (the model's plain path) vs only at supervised positions (`supervised_logits_only`,
  what the trainer now does);
- SmolLM2's own template with its default system turn vs the prepared folder's template without it
  (`SMOLLM2_CHAT_TEMPLATE`).

Reported per setting: median seconds per forward + backward of a batch, mean padded tokens per sample, and the loss of
the first batch (the two head paths must agree; the templates differ by the prompt the LLM reads). The encoder's
features are cached by a warm-up pass first, as from the trainer's second epoch on; the optimizer step (LoRA
and pooler, 2.6 M parameters) is left out: it does not change with either cut.

`--compare INIT [INIT ...]` instead times the trainer's own step (supervised positions, the prepared template) of
several assembled VLMs that differ in their projector (e.g. the pipeline's `<out>/pretrained/init` of runs with
`--set 3:embedded.projector_type=mlp --set 3:embedded.pooling_ratio=4`), on the same training samples,
interleaved batch by batch; reported per VLM: its projector, visual tokens per clip, median seconds per batch and
the ratio to the first VLM's.
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from vjepa_vlm.scripts.vlm_pipeline import world_sources
from vjepa_vlm.train.run_stage import RECIPES, build_stage, load_stage_config

from vjepa_vlm.pretrained_llm import SMOLLM2_CHAT_TEMPLATE

RECIPE = "stage3_tiny_smollm2.yaml"
# SmolLM2-135M-Instruct's template as its GGUF ships it (default system turn), with the generation marks.
SYSTEM_TURN = ("{% if loop.first and messages[0]['role'] != 'system' %}"
               "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}"
               "{% endif %}")
WITH_SYSTEM_TURN = SMOLLM2_CHAT_TEMPLATE.replace("{% for message in messages %}",
                                                 "{% for message in messages %}" + SYSTEM_TURN, 1)


def build_trainer(init: str, world: str, run_dir: str):
    """The stage-3 trainer of the SmolLM2 recipe around the assembled VLM `init`, model prepared."""
    overrides = [f"model.init_from={init}", f"embedded.world_dir={world}", "logging.tracker=none",
                 f"data.sources={world_sources('3', Path(world), RECIPE)}", f"checkpoint.dir={run_dir}"]
    trainer = build_stage(load_stage_config(str(RECIPES / RECIPE), overrides))
    trainer._prepare_model()
    return trainer


def sample_batches(num_samples: int, args) -> list[list[int]]:
    generator = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(num_samples, generator=generator)[: args.batches * args.batch_size].tolist()
    return [order[i:i + args.batch_size] for i in range(0, len(order), args.batch_size)]


def compare_projectors(args) -> None:
    """Seconds per forward + backward of the same batches through VLMs that differ in their projector."""
    trainers = [build_trainer(init, args.world, f"{args.out}.run{i}") for i, init in enumerate(args.compare)]
    sizes = {len(t.dataset) for t in trainers}
    if len(sizes) != 1:
        raise ValueError(f"the VLMs read different training sets ({sorted(sizes)} samples): same world expected")
    index_batches = sample_batches(sizes.pop(), args)
    batches = [[t.collate_fn([t.dataset[i] for i in indices]) for indices in index_batches] for t in trainers]
    for per_model in batches:
        for collated in per_model:
            collated.pop("skipped", None)
    models = [t.model.train() for t in trainers]
    with torch.no_grad():  # fills each feature cache, as from the trainer's second epoch on
        for model, per_model in zip(models, batches):
            for inputs in per_model:
                model(**inputs, supervised_logits_only=True)
    seconds = [[] for _ in models]
    for number in range(len(index_batches)):
        for model, per_model, timings in zip(models, batches, seconds):
            model.zero_grad(set_to_none=True)
            started = time.perf_counter()
            model(**per_model[number], supervised_logits_only=True).loss.backward()
            timings.append(time.perf_counter() - started)
        print(f"batch {number + 1}/{len(index_batches)}", flush=True)
    base = statistics.median(seconds[0])
    rows = []
    for init, trainer, per_model, timings in zip(args.compare, trainers, batches, seconds):
        config = trainer.model.config
        processor = trainer.dataset.processor
        row = {"init": init, "projector_type": config.projector_type, "pooling_ratio": config.pooling_ratio,
               "visual_tokens_per_clip": processor.num_video_tokens(processor.num_frames),
               "padded_tokens_per_sample": statistics.mean(b["input_ids"].numel() / len(b["input_ids"]) for b in per_model),
               "median_s": statistics.median(timings), "ratio": statistics.median(timings) / base, "seconds": timings}
        rows.append(row)
        print(f"| {row['projector_type']} {row['pooling_ratio']}:1 | {row['visual_tokens_per_clip']} | "
              f"{row['padded_tokens_per_sample']:.1f} | {row['median_s']:.2f} | {row['ratio']:.2f}x |", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"batches": len(index_batches), "batch_size": args.batch_size,
                                          "threads": torch.get_num_threads(), "vlms": rows}, indent=1))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--init", help="an assembled SmolLM2 VLM (the pipeline's <out>/pretrained/init)")
    parser.add_argument("--world", required=True)
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compare", nargs="+", default=None, metavar="INIT",
                        help="time the trainer's step of these assembled VLMs (other projectors) instead")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.compare:
        compare_projectors(args)
        return
    if not args.init:
        parser.error("--init (or --compare) is required")
    if WITH_SYSTEM_TURN == SMOLLM2_CHAT_TEMPLATE:
        raise RuntimeError("could not rebuild the template with the default system turn")
    trainer = build_trainer(args.init, args.world, f"{args.out}.run")
    model, dataset, processor = trainer.model.train(), trainer.dataset, trainer.dataset.processor
    index_batches = sample_batches(len(dataset), args)

    def batch(indices, template):
        processor.chat_template = template
        collated = trainer.collate_fn([dataset[i] for i in indices])
        collated.pop("skipped", None)
        return collated

    settings = {(system, head): [] for system in ("with system turn", "without") for head in ("all", "supervised")}
    tokens, first_loss = {}, {}
    with torch.no_grad():  # fills the feature cache: every setting then reads the encoder's tokens from memory
        for indices in index_batches:
            model(**batch(indices, SMOLLM2_CHAT_TEMPLATE), supervised_logits_only=True)
    for number, indices in enumerate(index_batches):
        for (system, head), seconds in settings.items():
            inputs = batch(indices, WITH_SYSTEM_TURN if system == "with system turn" else SMOLLM2_CHAT_TEMPLATE)
            tokens.setdefault(system, []).append(inputs["input_ids"].numel() / len(indices))
            model.zero_grad(set_to_none=True)
            started = time.perf_counter()
            loss = model(**inputs, supervised_logits_only=head == "supervised").loss
            loss.backward()
            seconds.append(time.perf_counter() - started)
            if number == 0:
                first_loss[f"{system}, head {head}"] = loss.item()
        print(f"batch {number + 1}/{len(index_batches)}", flush=True)
    base = statistics.median(settings["with system turn", "all"])
    rows = []
    for (system, head), seconds in settings.items():
        median = statistics.median(seconds)
        rows.append({"template": system, "lm_head": head, "median_s": median, "speedup": base / median,
                     "padded_tokens_per_sample": statistics.mean(tokens[system]), "seconds": seconds})
        print(f"| {system} | {head} | {median:.2f} | {base / median:.2f}x | {statistics.mean(tokens[system]):.1f} |")
    result = {"batches": len(index_batches), "batch_size": args.batch_size, "threads": torch.get_num_threads(),
              "first_batch_loss": first_loss, "settings": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(first_loss))


if __name__ == "__main__":
    main()
