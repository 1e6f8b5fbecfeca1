"""Conversation mixtures for VLM training: a Hugging Face `datasets` mixture, decoding in DataLoader workers.

Pipeline::

    manifests (LLaVA / PerceptionLM)  --load_conversations-->  datasets.Dataset per source (validated records)
      --interleave_datasets(probabilities=weights)-->  one mixture  --VLMConversationDataset[i]-->  decoded sample
      --VLMCollator-->  batch

Batch contract (what the staged trainer feeds to `VJEPA2VLMForConditionalGeneration`):
    input_ids       (B, L) long, right-padded with the tokenizer's pad id;
    attention_mask  (B, L) long, 0 on padding;
    labels          (B, L) long, token ids on assistant replies (+ end-of-turn), -100 elsewhere (unshifted);
    pixel_values_images  (num_tiles, 3, crop, crop): Dynamic S² tiles of every image of the batch, in sample
                    order then placeholder order; absent when the batch has no image;
    pixel_values_videos  (num_videos, T, 3, crop, crop): every video of the batch, same order; absent if none;
    skipped         list[str]: "source: reason" of bad samples replaced in this batch. Not a model input:
                    the trainer pops it and adds it to its skip counters.
Images and videos of different samples mix freely in one batch. A batch with no media at all still runs the
vision tower: the model does so itself during training (see `vjepa_vlm.modeling_vjepa2_vlm`), so the collator
adds no fake pixels and the loss is unaffected.

Bad samples (unreadable image or video, a sample longer than `max_length` once its placeholders are expanded,
any other failure to encode one sample, e.g. a reply whose first characters the tokenizer merges with the
template's glue) are skipped and counted, never truncated and never fatal: the sample is replaced by the next
index of the mixture, the skip (`file:line: reason`) is logged and travels with the batch. Manifest-level problems (bad JSON, placeholder/media count mismatch, no
assistant turn, missing files) already fail at load time in `load_conversations`.
"""

import logging
from dataclasses import dataclass, field

import datasets
import numpy as np
import torch
from PIL import Image

from vjepa_vlm.data.conversations import FORMATS, load_conversations
from vjepa_vlm.data.label_masking import IGNORE_INDEX
from vjepa_vlm.data.sequences import pad_sequences
from vjepa_vlm.data.video_io import load_video_frames

logger = logging.getLogger(__name__)


@dataclass
class ConversationSourceArgs:
    """One manifest of the mixture.

    Args:
        path: LLaVA .json/.jsonl or PerceptionLM .jsonl manifest.
        format: "llava" or "perception_lm".
        weight: relative sampling probability in the mixture (normalized over sources).
        media_root: folder relative media paths resolve against (the manifest's folder by default).
    """

    path: str
    format: str = "llava"
    weight: float = 1.0
    media_root: str | None = None


@dataclass
class VLMDataArgs:
    """A weighted mixture of conversation manifests.

    Args:
        sources: the manifests and their weights.
        max_length: longest sample in tokens after placeholder expansion (1920 / 6400 / 12800 in stages 1-3
            of the scaling setup, Table 22); longer samples are skipped.
        stopping_strategy: `datasets.interleave_datasets` rule: "all_exhausted" oversamples until every source
            was seen once, "first_exhausted" stops with the first exhausted source.
        seed: seed of the mixture order.
        max_consecutive_skips: give up (raise) after this many bad samples in a row: the data is broken.
    """

    sources: list[ConversationSourceArgs] = field(default_factory=list)
    max_length: int = 2048
    stopping_strategy: str = "all_exhausted"
    seed: int = 0
    max_consecutive_skips: int = 16

    def validate(self) -> None:
        if not self.sources:
            raise ValueError("VLMDataArgs.sources is empty: list at least one manifest")
        for source in self.sources:
            if source.format not in FORMATS:
                raise ValueError(f"source {source.path}: format must be one of {FORMATS}, got {source.format!r}")
            if source.weight <= 0:
                raise ValueError(f"source {source.path}: weight must be > 0, got {source.weight}")
        if self.stopping_strategy not in ("all_exhausted", "first_exhausted"):
            raise ValueError(f"stopping_strategy must be 'all_exhausted' or 'first_exhausted', got {self.stopping_strategy!r}")


def conversation_table(source: ConversationSourceArgs) -> datasets.Dataset:
    """A validated manifest as a `datasets.Dataset` of records (see `vjepa_vlm.data.conversations`)."""
    conversations = load_conversations(source.path, source.format, source.media_root)
    if not conversations:
        raise ValueError(f"manifest {source.path} holds no conversation")
    return datasets.Dataset.from_list([c.to_record() for c in conversations])


def build_mixture(args: VLMDataArgs) -> datasets.Dataset:
    """Interleave the sources with probabilities proportional to their weights."""
    args.validate()
    tables = [conversation_table(source) for source in args.sources]
    if len(tables) == 1:
        return tables[0]
    total = sum(source.weight for source in args.sources)
    return datasets.interleave_datasets(
        tables,
        probabilities=[source.weight / total for source in args.sources],
        seed=args.seed,
        stopping_strategy=args.stopping_strategy,
    )


class _SkipSample(Exception):
    """A bad sample to be replaced by the next one and counted."""


def load_image(path: str) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


class VLMConversationDataset(torch.utils.data.Dataset):
    """Map-style dataset over a conversation mixture; `__getitem__` decodes media, so it runs in DataLoader workers.

    Args:
        records: a `datasets.Dataset` of conversation records (from `build_mixture`).
        processor: a `VJEPA2VLMProcessor` (tokenizer, chat template, pixel preprocessing, token counts).
        max_length: longest sample in tokens; longer samples are skipped.
        max_consecutive_skips: raise after this many bad samples in a row.
    """

    def __init__(self, records: datasets.Dataset, processor, max_length: int, max_consecutive_skips: int = 16):
        self.records = records
        self.processor = processor
        self.max_length = max_length
        self.max_consecutive_skips = max_consecutive_skips

    @classmethod
    def from_args(cls, args: VLMDataArgs, processor) -> "VLMConversationDataset":
        return cls(build_mixture(args), processor, args.max_length, args.max_consecutive_skips)

    def __len__(self) -> int:
        return len(self.records)

    def decode_media(self, record: dict) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """uint8 frames of every image and video of a record (the expensive part, done in the worker)."""
        processor = self.processor
        images = [load_image(path) for path in record["images"]]
        videos = [
            load_video_frames(path, processor.num_frames, processor.frame_sampling, processor.target_fps)
            for path in record["videos"]
        ]
        return images, videos

    def encode(self, record: dict) -> dict:
        """Decode and encode one record; raises `_SkipSample` naming the reason when either step fails."""
        # Any failure of one sample (corrupt or truncated media, too long, a reply the tokenizer cannot mask, ...)
        # is that sample's: one bad row of a million must not end a run, while a systematic failure still ends
        # it through `max_consecutive_skips`.
        try:
            images, videos = self.decode_media(record)
        except Exception as error:
            raise _SkipSample(f"unreadable media: {type(error).__name__}: {error}") from error
        try:
            return self.processor.encode_conversation(record["messages"], images, videos, self.max_length)
        except Exception as error:
            raise _SkipSample(f"{type(error).__name__}: {error}") from error

    def __getitem__(self, index: int) -> dict:
        skipped = []
        for attempt in range(self.max_consecutive_skips + 1):
            record = self.records[(index + attempt) % len(self.records)]
            try:
                sample = self.encode(record)
            except _SkipSample as reason:
                skipped.append(f"{record['source']}: {reason}")
                logger.warning("skipping sample %s", skipped[-1])
                continue
            sample["skipped"] = skipped
            return sample
        raise RuntimeError(f"{len(skipped)} consecutive bad samples from index {index}; last: {skipped[-1]}")


@dataclass
class VLMCollator:
    """Pad and stack samples of `VLMConversationDataset` into the batch described in the module docstring.

    Args:
        pad_token_id: the tokenizer's pad id.
    """

    pad_token_id: int

    def __call__(self, samples: list[dict]) -> dict:
        batch = {
            "input_ids": pad_sequences([s["input_ids"] for s in samples], self.pad_token_id),
            "attention_mask": pad_sequences([torch.ones_like(s["input_ids"]) for s in samples], 0),
            "labels": pad_sequences([s["labels"] for s in samples], IGNORE_INDEX),
        }
        for key in ("pixel_values_images", "pixel_values_videos"):
            pixels = [s[key] for s in samples if key in s]
            if pixels:
                batch[key] = torch.cat(pixels)
        batch["skipped"] = [reason for s in samples for reason in s.get("skipped", [])]
        return batch

