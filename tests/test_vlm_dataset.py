"""Weighted conversation mixtures, decoding in DataLoader workers, mixed-media batches, skip-and-count."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from vjepa_vlm import VJEPA2VLMConfig, VJEPA2VLMForConditionalGeneration, VJEPA2VLMProcessor
from vjepa_vlm.data.label_masking import IGNORE_INDEX
from vjepa_vlm.data.tokenizer import train_tiny_tokenizer
from vjepa_vlm.data.video_io import write_video
from vjepa_vlm.data.vlm_dataset import (
    ConversationSourceArgs,
    VLMCollator,
    VLMConversationDataset,
    VLMDataArgs,
    build_mixture,
)

torch.set_num_threads(1)


def turns(question, answer, roles=("human", "gpt")):
    return [{"from": roles[0], "value": question}, {"from": roles[1], "value": answer}]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("vlm_data")
    rng = np.random.default_rng(0)
    write_video(root / "ball.mp4", rng.integers(0, 256, (8, 48, 64, 3), dtype=np.uint8), fps=4)
    (root / "broken.mp4").write_bytes(b"not a video at all")
    Image.fromarray(rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)).save(root / "wide.png")
    llava = [
        {"image": "wide.png", "conversations": turns("<image>\nWhat is in the image?", "Two cubes.")},
        {"video": "ball.mp4", "conversations": turns("<video>\nDescribe the video.", "A ball rolls.")},
        {"conversations": turns("Say hi.", "Hi.")},
        {"video": "broken.mp4", "conversations": turns("<video>\nDescribe.", "Nothing.")},
    ]
    (root / "llava.jsonl").write_text("\n".join(json.dumps(r) for r in llava))
    plm = [{"video": "ball.mp4", "conversations": turns("What moves?", "The ball.", ("human", "assistant"))}]
    (root / "plm.jsonl").write_text(json.dumps(plm[0]))
    return root


@pytest.fixture(scope="module")
def processor():
    tokenizer = train_tiny_tokenizer(["What is in the image? Two cubes. Describe the video. A ball rolls."], 400)
    config = VJEPA2VLMConfig.from_preset("vjepa2-tiny-qwen2")
    return VJEPA2VLMProcessor.from_model_config(config, tokenizer, num_frames=4, max_image_tiles=4)


def test_mixture_follows_the_source_weights(tmp_path):
    for name in ("a", "b"):
        records = [{"conversations": turns(f"{name} {i}", "ok")} for i in range(300)]
        (tmp_path / f"{name}.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    args = VLMDataArgs(
        sources=[ConversationSourceArgs(str(tmp_path / "a.jsonl"), weight=3.0), ConversationSourceArgs(str(tmp_path / "b.jsonl"))],
        stopping_strategy="first_exhausted",
    )
    mixture = build_mixture(args)
    from_a = sum(r["messages"][0]["content"].startswith("a ") for r in mixture)
    assert 0.70 < from_a / len(mixture) < 0.80
    with pytest.raises(ValueError, match="weight must be > 0"):
        build_mixture(VLMDataArgs(sources=[ConversationSourceArgs(str(tmp_path / "a.jsonl"), weight=0)]))


def test_workers_decode_a_mixed_batch_and_bad_samples_are_skipped_and_counted(corpus, processor):
    args = VLMDataArgs(
        sources=[
            ConversationSourceArgs(str(corpus / "llava.jsonl")),
            ConversationSourceArgs(str(corpus / "plm.jsonl"), format="perception_lm", weight=0.5),
        ],
        max_length=512,
    )
    dataset = VLMConversationDataset.from_args(args, processor)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=len(dataset), num_workers=2, collate_fn=VLMCollator(processor.tokenizer.pad_token_id)
    )
    (batch,) = list(loader)
    assert any("broken.mp4" in reason and "unreadable media: VideoDecodeError" in reason for reason in batch["skipped"])
    assert batch["pixel_values_images"].shape[1:] == (3, 64, 64)
    assert batch["pixel_values_videos"].shape[1:] == (4, 3, 64, 64)
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    assert int((ids == processor.image_token_id).sum()) == processor.num_image_tokens(len(batch["pixel_values_images"]))
    assert int((ids == processor.video_token_id).sum()) == processor.num_video_tokens(4) * len(batch["pixel_values_videos"])
    assert bool((labels[mask == 0] == IGNORE_INDEX).all())
    assert bool((labels[(ids == processor.image_token_id) | (ids == processor.video_token_id)] == IGNORE_INDEX).all())

    torch.manual_seed(0)
    model = VJEPA2VLMForConditionalGeneration(VJEPA2VLMConfig.from_preset("vjepa2-tiny-qwen2")).train()
    batch.pop("skipped")
    loss = model(**batch).loss
    assert torch.isfinite(loss)
    loss.backward()


def test_over_long_samples_are_skipped_never_truncated(corpus, processor):
    args = VLMDataArgs(sources=[ConversationSourceArgs(str(corpus / "llava.jsonl"))], max_length=80)
    dataset = VLMConversationDataset.from_args(args, processor)
    sample = dataset[0]  # the image (116 tokens) and video (99) samples are skipped; the text-only one (67) fits
    assert [reason.split(": ")[1] for reason in sample["skipped"]] == ["SequenceTooLongError"] * 2
    assert len(sample["input_ids"]) <= 80 and "pixel_values_images" not in sample
    strict = VLMConversationDataset(dataset.records, processor, max_length=5, max_consecutive_skips=2)
    with pytest.raises(RuntimeError, match="3 consecutive bad samples"):
        strict[0]


def test_any_per_sample_encoding_failure_is_skipped_and_counted_with_its_file_and_line(tmp_path, caplog):
    # Qwen2's pre-tokenizer merges the template's "assistant\n" glue with a reply's leading newline into one
    # "\n\n" token, which label masking refuses (it would straddle the reply's first character).
    rows = [{"conversations": turns("Say hi.", "\nA ball rolls.")}, {"conversations": turns("Say hi.", "Hi.")}]
    manifest = tmp_path / "replies.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows))
    tokenizer = train_tiny_tokenizer(["Say hi.\n\nA ball rolls.\n\nHi.", "assistant\n\nA"], 400, pre_tokenizer="qwen2")
    config = VJEPA2VLMConfig.from_preset("vjepa2-tiny-qwen2")
    processor = VJEPA2VLMProcessor.from_model_config(config, tokenizer, num_frames=4)
    dataset = VLMConversationDataset.from_args(VLMDataArgs(sources=[ConversationSourceArgs(str(manifest))]), processor)
    with caplog.at_level("WARNING", logger="vjepa_vlm.data.vlm_dataset"):
        sample = dataset[0]
    (reason,) = sample["skipped"]
    assert reason.startswith(f"{manifest}:1: ValueError: ") and "straddles an assistant-turn boundary" in reason
    assert f"{manifest}:1: ValueError" in caplog.text
    assert tokenizer.decode(sample["input_ids"][sample["labels"] != IGNORE_INDEX]) == "Hi.<|im_end|>"


@pytest.mark.slow
def test_synthetic_world_manifests_flow_into_a_training_batch(tmp_path):
    from vjepa_vlm.data.synthetic_world import generate_world

    root = tmp_path / "world"
    generate_world(root, n_train=3, n_test=1, seed=0, frames=16, size=64)
    sources = [
        ConversationSourceArgs(str(root / "train" / "video_qa.jsonl"), weight=2.0, media_root=str(root)),
        ConversationSourceArgs(str(root / "train" / "image_captions.jsonl"), media_root=str(root)),
    ]
    mixture = build_mixture(VLMDataArgs(sources=sources))
    tokenizer = train_tiny_tokenizer([m["content"] for record in mixture for m in record["messages"]], 512)
    config = VJEPA2VLMConfig.from_preset("vjepa2-tiny-llama")
    processor = VJEPA2VLMProcessor.from_model_config(config, tokenizer, num_frames=4)
    dataset = VLMConversationDataset(mixture, processor, max_length=1024)
    batch = VLMCollator(tokenizer.pad_token_id)([dataset[i] for i in range(len(dataset))])
    assert batch.pop("skipped") == []
    assert "pixel_values_images" in batch and "pixel_values_videos" in batch
    torch.manual_seed(0)
    loss = VJEPA2VLMForConditionalGeneration(config).train()(**batch).loss
    assert torch.isfinite(loss)
