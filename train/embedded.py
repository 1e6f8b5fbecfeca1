"""The embedded default: a tiny VLM on the synthetic world, built from nothing, so every stage runs offline.

`ensure_world` generates the synthetic world if absent; `ensure_tiny_vlm` trains a byte-level BPE
tokenizer (ChatML template) on the world's training conversations, builds the tiny Qwen2-architecture
VLM around a tiny V-JEPA 2 encoder (random, or the weights of a pretrained encoder directory) and writes
model + processor as the HF directory stage 1 starts from. Both are cached: a second call reuses them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vjepa_vlm.configuration_vjepa2_vlm import VJEPA2VLMConfig
from vjepa_vlm.data.conversations import load_conversations
from vjepa_vlm.data.synthetic_world import generate_world
from vjepa_vlm.data.tokenizer import train_tiny_tokenizer
from vjepa_vlm.modeling_vjepa2_vlm import VJEPA2VLMForConditionalGeneration
from vjepa_vlm.processing_vjepa2_vlm import VJEPA2VLMProcessor
from vjepa_vlm.train.handoff import STAGE_FILE

logger = logging.getLogger(__name__)
TOKENIZER_MANIFESTS = ("image_captions", "image_qa", "video_captions", "video_qa")


@dataclass
class EmbeddedArgs:
    """The tiny default model and data (the `embedded:` section of the tiny stage recipes).

    Args:
        world_dir: synthetic world root, generated when absent.
        world_train, world_test: clips per split of a generated world.
        world_seed: seed of a generated world.
        init_dir: where the assembled tiny VLM (stage 1's starting point) is cached.
        preset: tiny VLM preset of `VJEPA2VLMConfig`.
        vision_overrides: encoder config fields changed from the preset; the default matches the tiny
            pretraining recipe (`train/recipes/pretrain_tiny.yaml`), so its encoder drops in.
        vocab_size: BPE vocabulary of the tiny tokenizer (the LLM's embedding follows it). 1024 makes every
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
    """

    world_dir: str = "runs/synthetic_world"
    world_train: int = 256
    world_test: int = 64
    world_seed: int = 0
    init_dir: str = "runs/vlm_tiny/init"
    preset: str = "vjepa2-tiny-qwen2"
    vision_overrides: dict = field(default_factory=lambda: {"patch_size": 8})
    vocab_size: int = 1024
    num_frames: int = 4
    vision_feature_layer: int = 0
    encoder_from: str | None = None
    seed: int = 0


def ensure_world(args: EmbeddedArgs) -> Path:
    """The synthetic world root, generated (atomically, by the main process) when absent."""
    root = Path(args.world_dir)
    if not (root / "meta.json").is_file():
        logger.warning("generating the synthetic world in %s (%d train / %d test clips)", root,
                       args.world_train, args.world_test)
        generate_world(root, n_train=args.world_train, n_test=args.world_test, seed=args.world_seed,
                       workers=min(2, os.cpu_count() or 1), overwrite=root.exists())
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


def ensure_tiny_vlm(args: EmbeddedArgs, is_main_process: bool = True) -> Path:
    """The directory of the assembled tiny VLM (model + processor), built once by the main process."""
    init_dir = Path(args.init_dir)
    if (init_dir / STAGE_FILE).is_file() or not is_main_process:
        return init_dir
    world = ensure_world(args)
    tokenizer = tiny_tokenizer(world, args.vocab_size)
    vision = dict(args.vision_overrides)
    if args.encoder_from:
        from vjepa_vlm import VJEPA2Config

        vision = VJEPA2Config.from_pretrained(args.encoder_from).to_diff_dict()
        vision.pop("model_type", None)
    config = VJEPA2VLMConfig.from_preset(
        args.preset, vision_overrides=vision, text_overrides={"vocab_size": len(tokenizer)},
        vision_feature_layer=args.vision_feature_layer,
    )
    torch.manual_seed(args.seed)
    model = VJEPA2VLMForConditionalGeneration(config)
    if args.encoder_from:
        load_encoder_weights(model, args.encoder_from)
    processor = VJEPA2VLMProcessor.from_model_config(config, tokenizer, num_frames=args.num_frames)
    staging = init_dir.with_name(f".tmp-{init_dir.name}")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    processor.save_pretrained(staging)
    record = {"stage": "init", "model_type": config.model_type, "weights": "full", "base": None,
              "encoder_from": args.encoder_from}
    (staging / STAGE_FILE).write_text(json.dumps(record, indent=2))
    if init_dir.exists():
        shutil.rmtree(init_dir)
    os.replace(staging, init_dir)
    return init_dir


__all__ = ["EmbeddedArgs", "ensure_tiny_vlm", "ensure_world", "load_encoder_weights", "tiny_tokenizer"]
