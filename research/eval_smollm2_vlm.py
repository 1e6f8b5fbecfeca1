"""Held-out MC accuracy of a VLM directory next to the blind baselines, on the first N test clips of a world.

    python research/eval_smollm2_vlm.py --model runs/smol/s3_lora/output --world runs/vlm_world --clips 64

The pipeline's own scoring (`vjepa_vlm.scripts.vlm_pipeline.multiple_choice_accuracy`: option letter and option
likelihood, with the question's video and with another clip's), restricted to the questions of the first
`--clips` test clips (64: the default world's test split), so a quick measurement reads the same questions as
`scripts/vlm_pipeline.py`. `--captions N` also prints the VLM's greedy free-text caption of the first N test clips
next to the world's caption (and writes them to the JSON file).
"""

import argparse
import json
import time
from pathlib import Path

import torch

from vjepa_vlm.data.manifests import read_jsonl
from vjepa_vlm.data.synthetic_baselines import blind_accuracy, blind_option_accuracy, chance_accuracy, majority_accuracy
from vjepa_vlm.scripts.vlm_pipeline import multiple_choice_accuracy, other_clip_videos, results_table


@torch.no_grad()
def free_text_captions(model_dir: Path, world: Path, rows: list[dict], max_new_tokens: int = 32) -> list[dict]:
    """The VLM's greedy answer to each caption row's own prompt, next to the world's caption."""
    from vjepa_vlm.modeling_vjepa2_vlm import VJEPA2VLMForConditionalGeneration
    from vjepa_vlm.processing_vjepa2_vlm import VJEPA2VLMProcessor
    from vjepa_vlm.scripts.vlm_pipeline import multiple_choice_prompt
    from vjepa_vlm.train.handoff import load_stage_model
    from vjepa_vlm.video_processing_vjepa2_vlm import load_video_frames

    model = load_stage_model(model_dir, VJEPA2VLMForConditionalGeneration).eval()
    processor = VJEPA2VLMProcessor.from_pretrained(model_dir)
    answers = []
    for row in rows:
        frames = load_video_frames(world / row["video"], processor.num_frames, processor.frame_sampling, processor.target_fps)
        inputs = processor(text=[multiple_choice_prompt(processor, row)], videos=[frames])
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        text = processor.tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        answers.append({"video": row["video"], "prompt": row["conversations"][0]["value"], "truth": row["conversations"][1]["value"],
                        "vlm": text.strip()})
    return answers


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--world", default="runs/vlm_world")
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--captions", type=int, default=0, help="free-text captions of the first N test clips")
    parser.add_argument("--out", default=None, help="JSON file for the rows (default: <model>/mc_eval.json)")
    args = parser.parse_args()
    world = Path(args.world)
    train = [r for r in read_jsonl(world / "train" / "video_qa.jsonl") if r["format"] == "mc"]
    test_all = [r for r in read_jsonl(world / "test" / "video_qa.jsonl") if r["format"] == "mc"]
    cloze_all = {c["id"]: c for c in read_jsonl(world / "test" / "video_qa_cloze.jsonl")}
    clips = list(dict.fromkeys(r["video"] for r in test_all))[: args.clips]
    test = [r for r in test_all if r["video"] in set(clips)]
    cloze = [cloze_all[f"{r['id']}-cloze"] for r in test]
    rows = {"baseline: chance": chance_accuracy(test), "baseline: majority": majority_accuracy(train, test),
            "baseline: blind text-only": blind_accuracy(train, test),
            "baseline: blind option scorer": blind_option_accuracy(train, test)}
    rows = {k: {g: v for g, v in values.items() if "=" not in g} for k, values in rows.items()}
    for label, videos in (("own video", [r["video"] for r in test]), ("another clip's video", other_clip_videos(test))):
        started = time.monotonic()
        accuracy = multiple_choice_accuracy(Path(args.model), world, test, cloze, videos)
        rows[f"VLM, {label}: option letter"] = accuracy["letter"]
        rows[f"VLM, {label}: option likelihood"] = accuracy["cloze"]
        print(f"{label}: {time.monotonic() - started:.0f} s", flush=True)
    table = results_table(rows)
    print(f"{len(test)} questions of {len(clips)} test clips\n{table}")
    captions_rows = read_jsonl(world / "test" / "video_captions.jsonl")[: args.captions]
    captions = free_text_captions(Path(args.model), world, captions_rows) if captions_rows else []
    for caption in captions:
        print(f"{caption['video']}\n  truth: {caption['truth']}\n  VLM:   {caption['vlm']}")
    out = Path(args.out) if args.out else Path(args.model) / "mc_eval.json"
    out.write_text(json.dumps({"questions": len(test), "accuracy": rows, "table": table, "captions": captions}, indent=1))


if __name__ == "__main__":
    main()
