"""Benchmark the V-JEPA 2 VLM glue on CPU with tiny random models.

Reports, per tiny preset: forward and KV-cached `generate` throughput, the time split between the vision path
(encoder + projector), the LLM fed `inputs_embeds` directly (a plain `AutoModelForCausalLM` holding the same
weights), and the multimodal glue (embedding lookup, placeholder mask + count check, `masked_scatter`) timed
alone, and end to end as the VLM forward against the same steps composed by hand (towers, glue, plain LLM),
per interleaved round; the wrapper overhead of a text-only
VLM forward against the plain LLM; and the
visual-token counts per sample of the paper's configurations (from the processor's formulas).

    python scripts/benchmark_vlm.py --repeats 50 --threads 1
"""

import argparse
import json
import statistics
import time

import torch
from transformers import AutoModelForCausalLM

from vjepa_vlm import VJEPA2VLMConfig, VJEPA2VLMForConditionalGeneration
from vjepa_vlm.image_processing_vjepa2_vlm import num_image_tiles


def timed_ms(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def interleaved_times(fns: dict, repeats: int, burst: int = 3) -> dict[str, list[float]]:
    """Per round, time each function as the fastest of `burst` back-to-back calls; `repeats` rounds.

    Interleaving keeps the functions under the same machine load, so per-round ratios stay meaningful on a
    shared CPU where absolute times drift; the burst minimum drops the cold-cache call that follows a switch
    between functions.
    """
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(min(timed_ms(fn) for _ in range(burst)))
    return times


def build_batch(config, batch_size: int, num_frames: int, text_tokens: int, seed: int = 0) -> dict:
    """Each sample: one image (thumbnail + 2x2 tiles = 5 tubelets), one video and `text_tokens` text tokens."""
    generator = torch.Generator().manual_seed(seed)
    crop, per_tubelet = config.vision_config.crop_size, config.tokens_per_tubelet
    image_tiles = 5
    row = (
        [config.image_token_id] * (image_tiles * per_tubelet)
        + [config.video_token_id] * (num_frames // 2 * per_tubelet)
        + torch.randint(10, config.text_config.vocab_size, (text_tokens,), generator=generator).tolist()
    )
    return {
        "input_ids": torch.tensor([row] * batch_size),
        "attention_mask": torch.ones(batch_size, len(row), dtype=torch.long),
        "pixel_values_images": torch.randn(batch_size * image_tiles, 3, crop, crop, generator=generator),
        "pixel_values_videos": torch.randn(batch_size, num_frames, 3, crop, crop, generator=generator),
    }


def plain_llm_with_same_weights(model):
    llm = AutoModelForCausalLM.from_config(model.config.text_config).eval()
    state = {
        key.replace("model.language_model.", "model."): value
        for key, value in model.state_dict().items()
        if key.startswith("model.language_model.")
    }
    llm.load_state_dict({**state, "lm_head.weight": model.lm_head.weight}, strict=True)
    return llm


@torch.no_grad()
def bench_preset(preset: str, args) -> dict:
    torch.manual_seed(0)
    config = VJEPA2VLMConfig.from_preset(preset)
    model = VJEPA2VLMForConditionalGeneration(config).eval()
    llm = plain_llm_with_same_weights(model)
    batch = build_batch(config, args.batch_size, args.num_frames, args.text_tokens)
    inner = model.model
    ids = batch["input_ids"]

    def vision():
        return inner.get_image_features(batch["pixel_values_images"]), inner.get_video_features(batch["pixel_values_videos"])

    image_features, video_features = vision()

    def glue():
        embeds = inner.get_input_embeddings()(ids)
        embeds = inner.scatter_features(ids, embeds, image_features, config.image_token_id, "Image")
        return inner.scatter_features(ids, embeds, video_features, config.video_token_id, "Video")

    embeds = glue()
    text_ids = ids[:, -args.text_tokens :]

    def composed():
        """The VLM forward's steps without the VLM classes: towers, glue, then the plain LLM."""
        nonlocal image_features, video_features
        image_features, video_features = vision()
        return llm(inputs_embeds=glue(), attention_mask=batch["attention_mask"])

    times = interleaved_times(
        {
            "full": lambda: model(**batch),
            "composed": composed,
            "vision": vision,
            "glue": glue,
            "llm_embeds": lambda: llm(inputs_embeds=embeds, attention_mask=batch["attention_mask"]),
            "vlm_text": lambda: model(input_ids=text_ids),
            "llm_text": lambda: llm(input_ids=text_ids),
        },
        args.repeats,
    )
    median = {name: statistics.median(values) for name, values in times.items()}
    end_to_end = [100 * (full / composed - 1) for full, composed in zip(times["full"], times["composed"])]
    wrapper = [100 * (vlm / plain - 1) for vlm, plain in zip(times["vlm_text"], times["llm_text"])]
    generate_kwargs = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False, pad_token_id=0)
    generate_ms = statistics.median(interleaved_times({"g": lambda: model.generate(**batch, **generate_kwargs)}, 3, burst=1)["g"])
    return {
        "preset": preset,
        "projector": config.projector_type,
        "pooling_ratio": config.pooling_ratio,
        "sequence_length": ids.shape[1],
        "visual_tokens_per_sample": int(((ids == config.image_token_id) | (ids == config.video_token_id))[0].sum()),
        "forward_ms": median["full"],
        "forward_samples_per_s": args.batch_size / median["full"] * 1e3,
        "forward_tokens_per_s": ids.numel() / median["full"] * 1e3,
        "generate_ms": generate_ms,
        "generate_new_tokens_per_s": args.batch_size * args.new_tokens / generate_ms * 1e3,
        "vision_ms": median["vision"],
        "llm_inputs_embeds_ms": median["llm_embeds"],
        "glue_ms": median["glue"],
        "glue_pct_of_llm": 100 * median["glue"] / median["llm_embeds"],
        "composed_ms": median["composed"],
        "full_vs_composed_pct": statistics.median(end_to_end),
        "text_only_wrapper_overhead_pct": statistics.median(wrapper),
    }


def paper_token_counts() -> list[dict]:
    """Visual tokens per sample of the paper's setups: 16-frame video, 1280x960 image with 16 tiles max."""
    rows = []
    for preset, overrides in (
        ("vjepa2-vitg384-llama3.1-8b", {}),
        ("vjepa2-vitg-qwen2-7b", {}),
        ("vjepa2-vitg-qwen2-7b", {"pooling_ratio": 16}),
        ("vjepa2-vitg384-llama3.1-8b", {"projector_type": "attentive_pooler", "pooling_ratio": 4}),
    ):
        config = VJEPA2VLMConfig.from_preset(preset, **overrides)
        crop = config.vision_config.crop_size
        tiles = num_image_tiles(960, 1280, crop, 16)
        rows.append(
            {
                "config": f"{preset} {config.projector_type} r={config.pooling_ratio}",
                "tokens_per_frame": config.tokens_per_tubelet // config.vision_config.tubelet_size,
                "video_16_frames": 8 * config.tokens_per_tubelet,
                "image_1280x960_tiles": tiles,
                "image_1280x960_tokens": tiles * config.tokens_per_tubelet,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["vjepa2-tiny-qwen2", "vjepa2-tiny-llama"])
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--num-frames", type=int, default=8)
    parser.add_argument("--text-tokens", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {"timings": [bench_preset(p, args) for p in args.presets], "paper_token_counts": paper_token_counts()}
    for row in results["timings"]:
        print(" ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    for row in results["paper_token_counts"]:
        print(" ".join(f"{k}={v}" for k, v in row.items()))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
