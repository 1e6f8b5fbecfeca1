"""VJEPA2VLMProcessor: Dynamic S² tiling, video preprocessing, exact placeholder expansion, save/load."""

import numpy as np
import pytest
import torch
from transformers import AutoProcessor

from vjepa_vlm import VJEPA2VLMConfig, VJEPA2VLMForConditionalGeneration, VJEPA2VLMProcessor
from vjepa_vlm.data.normalization import IMAGENET_MEAN, IMAGENET_STD
from vjepa_vlm.data.sequences import SequenceTooLongError
from vjepa_vlm.data.tokenizer import train_tiny_tokenizer
from vjepa_vlm.data.video_io import load_video_frames, write_video
from vjepa_vlm.image_processing_vjepa2_vlm import dynamic_s2_tiles, select_tile_grid
from vjepa_vlm.video_processing_vjepa2_vlm import frames_to_pixels

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tokenizer():
    return train_tiny_tokenizer(["Describe the video. A red ball rolls left.", "What is in the image? Two cubes."], 400)


@pytest.fixture(scope="module")
def processor(tokenizer):
    config = VJEPA2VLMConfig.from_preset("vjepa2-tiny-qwen2")
    return VJEPA2VLMProcessor.from_model_config(config, tokenizer, num_frames=4, max_image_tiles=4)


def rgb(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    "size, grid",
    [((384, 384), (1, 1)), ((384, 768), (1, 2)), ((1000, 300), (3, 1)), ((50, 60), (1, 1)), ((1200, 1600), (3, 4))],
)
def test_tile_grid_follows_native_resolution_and_aspect_ratio(size, grid):
    assert select_tile_grid(*size, tile_size=384, max_tiles=16) == grid


def test_tiles_are_a_thumbnail_then_the_padded_native_canvas():
    image = rgb(32, 80)
    tiles = dynamic_s2_tiles(image, tile_size=32, max_tiles=4)
    assert tiles.shape == (1 + 3, 3, 32, 32)  # grid 1x3 (80 / 32 -> 3 columns) plus the thumbnail
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    pixels = tiles * std + mean
    original = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    # Height already fits (32 px), so the canvas holds the image at native scale, centered with 8 px padding a side.
    canvas = torch.cat(list(pixels[1:]), dim=-1)
    torch.testing.assert_close(canvas[:, :, 8:88], original, atol=1e-5, rtol=0)
    assert tiles[1, :, :, :8].abs().max() < 1e-6 and tiles[-1, :, :, -8:].abs().max() < 1e-6
    single = dynamic_s2_tiles(rgb(30, 30), tile_size=32, max_tiles=4)
    assert single.shape == (1, 3, 32, 32)


def test_video_frames_are_resized_on_the_shorter_side_and_center_cropped():
    frames = np.zeros((2, 20, 60, 3), dtype=np.uint8)
    frames[:, :, 20:40] = 255  # the middle third is white
    pixels = frames_to_pixels(frames, crop_size=20)
    assert pixels.shape == (2, 3, 20, 20)
    white = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(pixels[:, :, 5, 10], white.expand(2, 3), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="uint8 of shape"):
        frames_to_pixels(frames.astype(np.float32), crop_size=20)


@pytest.mark.parametrize("sampling, target_fps, expected", [("uniform", None, [1, 4, 7, 10]), ("fps", 3.0, [0, 2, 4, 6])])
def test_frames_are_sampled_uniformly_or_at_a_target_rate(tmp_path, sampling, target_fps, expected):
    frames = np.stack([np.full((32, 32, 3), 20 * i, dtype=np.uint8) for i in range(12)])
    write_video(tmp_path / "ramp.mp4", frames, fps=6)
    sampled = load_video_frames(tmp_path / "ramp.mp4", 4, sampling, target_fps)
    assert np.allclose(sampled.reshape(4, -1).mean(axis=1), [20 * i for i in expected], atol=4)


def test_each_placeholder_expands_to_exactly_the_models_feature_count(processor, tokenizer, tmp_path):
    video_path = tmp_path / "clip.mp4"
    write_video(video_path, rgb(96, 64, seed=3)[None].repeat(12, axis=0), fps=6)
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": "<image>\n<video>\nDescribe."}], tokenize=False, add_generation_prompt=True
        ),
        tokenizer.apply_chat_template(
            [{"role": "user", "content": "<video>\nWhat is in the image?"}], tokenize=False, add_generation_prompt=True
        ),
    ]
    batch = processor(text=prompts, images=[rgb(64, 128)], videos=[str(video_path), rgb(70, 50)[None].repeat(6, axis=0)])
    assert batch["pixel_values_images"].shape == (3, 3, 64, 64)  # thumbnail + 1x2 grid
    assert batch["pixel_values_videos"].shape == (2, 4, 3, 64, 64)
    ids = batch["input_ids"]
    assert int((ids == processor.image_token_id).sum()) == processor.num_image_tokens(3) == 48
    assert int((ids[0] == processor.video_token_id).sum()) == processor.num_video_tokens(4) == 32
    assert batch["attention_mask"][1, 0] == 0 and ids[1, 0] == tokenizer.pad_token_id  # left padding
    torch.manual_seed(0)
    model = VJEPA2VLMForConditionalGeneration(VJEPA2VLMConfig.from_preset("vjepa2-tiny-qwen2")).eval()
    with torch.no_grad():
        generated = model.generate(**batch, max_new_tokens=3, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert generated.shape == (2, ids.shape[1] + 3)


def test_more_placeholders_than_media_and_the_reverse_raise(processor):
    with pytest.raises(ValueError, match="2 <image> and 0 <video> placeholders but 1 images"):
        processor(text="<image><image> hi", images=[rgb(64, 64)])
    with pytest.raises(ValueError, match="1 images and 0 videos have no placeholder"):
        processor(text="hi", images=[rgb(64, 64)])


def test_too_long_samples_raise_instead_of_truncating(processor):
    messages = [{"role": "user", "content": "<image>\nDescribe."}, {"role": "assistant", "content": "Two cubes."}]
    with pytest.raises(SequenceTooLongError, match="max_length is 40"):
        processor.encode_conversation(messages, images=[rgb(64, 64)], max_length=40)


def test_token_counts_for_the_scaling_setup(tokenizer):
    vitg_384 = VJEPA2VLMProcessor(tokenizer, crop_size=384, patch_size=16, pooling_ratio=1, num_frames=16)
    assert vitg_384.num_video_tokens(16) == 16 * 288
    pooled = VJEPA2VLMProcessor(tokenizer, crop_size=384, pooling_ratio=4)
    assert pooled.num_image_tokens(1) == 144


def test_reserved_placeholder_tokens_replace_the_data_placeholders():
    tokenizer = train_tiny_tokenizer(["Describe the video."], 300)
    reserved = ["<|reserved_special_token_0|>", "<|reserved_special_token_1|>"]
    tokenizer.add_special_tokens({"additional_special_tokens": reserved}, replace_extra_special_tokens=False)
    config = VJEPA2VLMConfig.from_preset(
        "vjepa2-tiny-llama",
        vision_overrides={"crop_size": 32},
        pooling_ratio=1,
        projector_type="mlp",
        image_token_id=tokenizer.convert_tokens_to_ids(reserved[0]),
        video_token_id=tokenizer.convert_tokens_to_ids(reserved[1]),
    )
    processor = VJEPA2VLMProcessor.from_model_config(config, tokenizer, num_frames=2)
    assert (processor.image_token, processor.video_token) == tuple(reserved)
    video = [rgb(32, 32)[None].repeat(2, axis=0)]
    ids = processor(text="<video>\nDescribe the video.", videos=video)["input_ids"]
    assert int((ids == tokenizer.convert_tokens_to_ids(reserved[1])).sum()) == processor.num_video_tokens(2) == 4
    assert int((ids == tokenizer.convert_tokens_to_ids("<video>")).sum()) == 0
    messages = [{"role": "user", "content": "<video>\nDescribe."}, {"role": "assistant", "content": "Nothing."}]
    sample = processor.encode_conversation(messages, videos=video)
    assert int((sample["input_ids"] == processor.video_token_id).sum()) == 4


def test_model_config_mismatch_and_round_trip(processor, tokenizer, tmp_path):
    config = VJEPA2VLMConfig.from_preset("vjepa2-tiny-qwen2", image_token_id=7, video_token_id=8)
    with pytest.raises(ValueError, match="placeholder ids"):
        VJEPA2VLMProcessor.from_model_config(config, tokenizer)
    processor.save_pretrained(tmp_path)
    VJEPA2VLMConfig.from_preset("vjepa2-tiny-qwen2").save_pretrained(tmp_path)
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert type(loaded) is VJEPA2VLMProcessor
    assert (loaded.crop_size, loaded.num_frames, loaded.max_image_tiles) == (64, 4, 4)
    assert loaded.chat_template == processor.chat_template
    text = "<video>\nDescribe the video."
    video = [rgb(64, 64)[None].repeat(4, axis=0)]
    torch.testing.assert_close(loaded(text=text, videos=video)["input_ids"], processor(text=text, videos=video)["input_ids"])
