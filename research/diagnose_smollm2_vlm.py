"""Why a SmolLM2 VLM does or does not answer by letter from the video: three quick read-outs of stage outputs.

    python research/diagnose_smollm2_vlm.py --models DIR [DIR ...] --world runs/vlm_world --clips 64 [--llm FOLDER]

For each VLM directory (a stage output or a checkpoint's `model/` folder), on the first `--clips` test clips:

- caption NLL per token with the clip's own video and with another clip's (`other_clip_videos`): a gap > 0 means
  the VLM reads the video for the densest supervision it gets (captions), whatever it does with letters; also the
  gap of each caption and their standard error;
- letter accuracy on the multiple-choice questions with the own video, and the share of the likeliest letter
  (a collapse to one letter shows here);
- letter accuracy when the prompt also states the answer ("Hint: <answer>." before the instruction): whether the
  model maps an option's content to its letter at all (the form the SmolLM2 preset's stage 2 trains on,
  `vjepa_vlm.data.letter_mapping`). Without that, no video reading can show by letter.

- visual tokens: how much the projector's output varies across clips and across the tokens of one clip, next to
  the same spread of the encoder features it reads and the norm of the LLM's text embeddings. A projector whose
  output is one large vector for every clip hands the LLM a soft prompt, not the video: the caption gap is 0.

`--llm` adds the text-only LLM (e.g. the prepared SmolLM2 folder, untrained) on the same questions without the
video, with and without the hint: what the pretrained LLM brings before any VLM training.
"""

import argparse
import json
import statistics
import time
from collections import Counter
from pathlib import Path

import torch
from vjepa_vlm.data.letter_mapping import hint_line
from vjepa_vlm.data.manifests import read_jsonl
from vjepa_vlm.data.synthetic_labels import MC_INSTRUCTION
from vjepa_vlm.scripts.vlm_pipeline import (
    LETTERS,
    letter_token_ids,
    multiple_choice_prompt,
    other_clip_videos,
)

READOUTS = ("captions", "letter", "letter_with_hint", "visual_tokens")


def token_spread(per_clip: list[torch.Tensor]) -> dict:
    """Spread of `(tokens, D)` tensors, one per clip, relative to the norm of their mean: `across_clips` (clip means
    around the grand mean), `within_clip` (tokens around their clip's mean) and the mean cosine between two clips'
    means. 0 / 0 / 1: every clip gives the same vector."""
    means = torch.stack([tokens.float().mean(0) for tokens in per_clip])
    grand = means.mean(0)
    scale = grand.norm().clamp_min(1e-12)
    within = torch.stack([(t.float() - t.float().mean(0)).norm(dim=-1).mean() for t in per_clip]).mean()
    unit = torch.nn.functional.normalize(means, dim=-1)
    pairs = len(means) * (len(means) - 1)
    cosine = ((unit @ unit.T).sum() - len(means)) / pairs if pairs else torch.tensor(1.0)
    return {"across_clips": float((means - grand).norm(dim=-1).mean() / scale),
            "within_clip": float(within / scale), "clip_cosine": float(cosine),
            "token_norm": float(torch.cat([t.float() for t in per_clip]).norm(dim=-1).mean())}


def with_hint(row: dict) -> dict:
    question = row["conversations"][0]["value"].replace(MC_INSTRUCTION, f"{hint_line(row['answer'])}\n{MC_INSTRUCTION}")
    return {**row, "conversations": [{"from": "human", "value": question}, *row["conversations"][1:]]}


def letter_read_out(letters: list[str], rows: list[dict]) -> dict:
    return {"accuracy": sum(a == r["answer_letter"] for a, r in zip(letters, rows)) / len(rows),
            "most_common_letter_share": Counter(letters).most_common(1)[0][1] / len(rows)}


@torch.no_grad()
def diagnose_vlm(model_dir: Path, world: Path, captions: list[dict], mc: list[dict],
                 readouts: tuple[str, ...] = READOUTS) -> dict:
    from vjepa_vlm.eval.option_scoring import continuation_log_likelihoods
    from vjepa_vlm.train.handoff import load_stage_model

    from vjepa_vlm.modeling_vjepa2_vlm import VJEPA2VLMForConditionalGeneration
    from vjepa_vlm.processing_vjepa2_vlm import VJEPA2VLMProcessor
    from vjepa_vlm.video_processing_vjepa2_vlm import load_video_frames

    model = load_stage_model(model_dir, VJEPA2VLMForConditionalGeneration).eval()
    processor = VJEPA2VLMProcessor.from_pretrained(model_dir)
    letter_ids = letter_token_ids(processor.tokenizer)

    def frames(video):
        return load_video_frames(world / video, processor.num_frames, processor.frame_sampling, processor.target_fps)

    results = {}
    if "captions" in readouts:
        nll, per_caption = {}, {}
        for label, videos in (("own", [r["video"] for r in captions]), ("other", other_clip_videos(captions))):
            summed, tokens = [], []
            for row, video in zip(captions, videos):
                answer = row["conversations"][1]["value"]
                scores = continuation_log_likelihoods(model, processor, multiple_choice_prompt(processor, row),
                                                      [answer], videos=[frames(video)])
                summed.append(-float(scores.log_likelihoods[0]))
                tokens.append(len(processor.tokenizer.encode(answer, add_special_tokens=False)))
            nll[label] = sum(summed) / sum(tokens)
            per_caption[label] = [s / n for s, n in zip(summed, tokens)]
        # The gap per caption (nats per token): its spread over captions says whether a mean gap of a few
        # thousandths is more than noise.
        gaps = [other - own for own, other in zip(per_caption["own"], per_caption["other"])]
        spread = statistics.stdev(gaps) / len(gaps) ** 0.5 if len(gaps) > 1 else float("nan")
        results.update(caption_nll_own=nll["own"], caption_nll_other=nll["other"],
                       caption_video_gap=nll["other"] - nll["own"], caption_video_gap_per_caption=gaps,
                       caption_video_gap_se=spread)

    def letters(rows):
        answers = []
        for row in rows:
            inputs = processor(text=[multiple_choice_prompt(processor, row)], videos=[frames(row["video"])])
            logits = model(**inputs).logits[0, -1, letter_ids]
            answers.append(LETTERS[int(logits.argmax())])
        return answers

    if "visual_tokens" in readouts:
        projected, encoded = [], []
        for row in captions:
            pixels = processor(text=["<video>"], videos=[frames(row["video"])])["pixel_values_videos"]
            features, grid = model.model.vision_features(pixels)
            encoded.append(features.flatten(0, -2))
            projected.append(model.model.multi_modal_projector(features, grid).flatten(0, -2))
        results["visual_tokens"] = {
            "projector": token_spread(projected), "encoder": token_spread(encoded),
            "text_embedding_norm": float(model.get_input_embeddings().weight.norm(dim=-1).mean()),
        }
    if "letter" in readouts:
        results["letter"] = letter_read_out(letters(mc), mc)
    if "letter_with_hint" in readouts:
        results["letter_with_hint"] = letter_read_out(letters([with_hint(r) for r in mc]), mc)
    return results


@torch.no_grad()
def diagnose_text_llm(llm_dir: Path, mc: list[dict]) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(llm_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(llm_dir)
    letter_ids = letter_token_ids(tokenizer)

    def letters(rows):
        answers = []
        for row in rows:
            question = row["conversations"][0]["value"].replace("<video>\n", "")
            ids = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                                return_tensors="pt", return_dict=True)["input_ids"]
            answers.append(LETTERS[int(model(input_ids=ids).logits[0, -1, letter_ids].argmax())])
        return answers

    return {"letter_no_video": letter_read_out(letters(mc), mc),
            "letter_no_video_with_hint": letter_read_out(letters([with_hint(r) for r in mc]), mc)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=[])
    parser.add_argument("--llm", default=None, help="a text-only causal LM folder scored on the same questions")
    parser.add_argument("--world", default="runs/vlm_world")
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--readouts", nargs="+", choices=READOUTS, default=list(READOUTS),
                        help="which read-outs of each VLM (letter_with_hint alone: ~1/3 of the time)")
    parser.add_argument("--out", required=True, help="JSON file of the read-outs")
    args = parser.parse_args()
    world = Path(args.world)
    clips = [r["video"] for r in read_jsonl(world / "test" / "video_captions.jsonl")][: args.clips]
    captions = [r for r in read_jsonl(world / "test" / "video_captions.jsonl") if r["video"] in set(clips)]
    mc = [r for r in read_jsonl(world / "test" / "video_qa.jsonl") if r["format"] == "mc" and r["video"] in set(clips)]
    results = {"clips": len(clips), "mc_questions": len(mc)}
    if args.llm:
        started = time.monotonic()
        results[f"text LLM {args.llm}"] = diagnose_text_llm(Path(args.llm), mc)
        print(json.dumps(results[f"text LLM {args.llm}"]), f"({time.monotonic() - started:.0f} s)", flush=True)
    for model_dir in args.models:
        started = time.monotonic()
        results[model_dir] = diagnose_vlm(Path(model_dir), world, captions, mc, tuple(args.readouts))
        print(model_dir, json.dumps(results[model_dir]), f"({time.monotonic() - started:.0f} s)", flush=True)
        Path(args.out).write_text(json.dumps(results, indent=1))
    Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
