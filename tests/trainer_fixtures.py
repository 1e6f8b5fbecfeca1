"""Tiny VLM, dataset and trainer config shared by the trainer tests.

Run as a script it trains the tiny VLM, so tests can launch it under `accelerate launch`:

    accelerate launch --num_processes 2 --multi_gpu tests/trainer_fixtures.py RUN_DIR [key=value ...]
"""

import sys

import torch
import yaml

from vjepa_vlm.configuration_vjepa2_vlm import VJEPA2VLMConfig
from vjepa_vlm.modeling_vjepa2_vlm import VJEPA2VLMForConditionalGeneration
from vjepa_vlm.processing_vjepa2_vlm import pad_sequences
from vjepa_vlm.train.trainer import TrainerArgs

VIDEO_TOKEN_ID = 4  # the tiny presets' `<video>` id


def tiny_vlm(seed: int = 0, preset: str = "vjepa2-tiny-qwen2") -> VJEPA2VLMForConditionalGeneration:
    torch.manual_seed(seed)
    return VJEPA2VLMForConditionalGeneration(VJEPA2VLMConfig.from_preset(preset))


class CountingVideoQA(torch.utils.data.Dataset):
    """Two-frame clips whose brightness (0-3) is the answer token.

    Samples listed in `bad` are replaced by the next index and reported in `skipped`, following the
    contract of `vjepa_vlm.data.vlm_dataset` (which does this for unreadable media).

    Args:
        size: number of samples.
        tokens_per_clip: video placeholder tokens one clip becomes.
        crop: frame side.
        bad: indices treated as unreadable.
    """

    def __init__(self, size: int = 32, tokens_per_clip: int = 16, crop: int = 64, bad: tuple[int, ...] = ()):
        self.size, self.tokens, self.crop, self.bad = size, tokens_per_clip, crop, set(bad)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        skipped = []
        while index in self.bad:
            skipped.append(f"clip {index}: corrupt")
            index = (index + 1) % self.size
        answer = index % 4
        prompt = [10, 11] + [VIDEO_TOKEN_ID] * self.tokens + [12]
        reply = [20 + answer, 13]
        clip = torch.full((2, 3, self.crop, self.crop), answer / 3.0 - 0.5)
        labels = [-100] * len(prompt) + reply
        return {"input_ids": prompt + reply, "labels": labels, "pixel_values_videos": clip, "skipped": skipped}


def collate(samples: list[dict]) -> dict:
    return {
        "input_ids": pad_sequences([s["input_ids"] for s in samples], 0),
        "labels": pad_sequences([s["labels"] for s in samples], -100),
        "attention_mask": pad_sequences([[1] * len(s["input_ids"]) for s in samples], 0),
        "pixel_values_videos": torch.stack([s["pixel_values_videos"] for s in samples]),
        "skipped": [message for s in samples for message in s["skipped"]],
    }


def tiny_trainer_args(run_dir, **overrides) -> TrainerArgs:
    args = TrainerArgs(steps=4, batch_size=4, micro_batch_size=2)
    args.checkpoint.dir = str(run_dir)
    args.checkpoint.every_steps = 2
    args.checkpoint.keep_last = 0
    args.logging.tracker = "none"
    args.logging.progress_bar = False
    args.optim.lr = 1e-3
    args.optim.warmup_ratio = 0.25
    args.stage.tunable = ["model.multi_modal_projector", "model.language_model", "lm_head"]
    for key, value in overrides.items():
        node = args
        *parents, leaf = key.split(".")
        for part in parents:
            node = getattr(node, part)
        setattr(node, leaf, value)
    return args


if __name__ == "__main__":
    torch.set_num_threads(1)
    from vjepa_vlm.train.trainer import VLMTrainer

    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in sys.argv[2:])}
    VLMTrainer(tiny_trainer_args(sys.argv[1], **overrides), tiny_vlm(), CountingVideoQA(), collate).train()
