"""The MLP projector with k x k spatial pooling after it (PerceptionLM's): token order, counts, config checks."""

import numpy as np
import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError
from vjepa_vlm.data.tokenizer import train_tiny_tokenizer

from vjepa_vlm import (
    VJEPA2VLMConfig,
    VJEPA2VLMForConditionalGeneration,
    VJEPA2VLMProcessor,
)
from vjepa_vlm.projector_vjepa2_vlm import VJEPA2VLMMLPProjector

torch.set_num_threads(1)
PATCH_8 = {"patch_size": 8}  # the tiny encoder of the embedded presets: an 8 x 8 patch grid per 64-pixel tubelet


def mlp_config(pooling_ratio, vocab_size=512):
    return VJEPA2VLMConfig.from_preset("vjepa2-tiny-qwen2", vision_overrides=PATCH_8, text_overrides={"vocab_size": vocab_size},
                                       projector_type="mlp", pooling_ratio=pooling_ratio)


def test_pooling_averages_each_2x2_window_of_the_mlp_outputs_in_t_h_w_order():
    config = mlp_config(4)
    torch.manual_seed(0)
    projector = VJEPA2VLMMLPProjector(config)
    features = torch.randn(2, 2 * 8 * 8, config.vision_config.hidden_size)
    pooled = projector(features, (2, 8, 8))
    assert pooled.shape == (2, 2 * 16, config.text_config.hidden_size)
    per_patch = projector.linear_2(projector.act(projector.linear_1(features))).reshape(2, 2, 8, 8, -1)
    # Clip 1, second tubelet, pooled row 1, column 3: patches rows 2-3, columns 6-7.
    expected = per_patch[1, 1, 2:4, 6:8].mean(dim=(0, 1))
    torch.testing.assert_close(pooled[1, 16 + 1 * 4 + 3], expected)
    # The MLP runs before the average (PerceptionLM's order): pooling the features first gives other tokens.
    pooled_first = features.reshape(2, 2, 4, 2, 4, 2, -1).mean(dim=(3, 5)).reshape(2, 32, -1)
    assert not torch.allclose(projector.linear_2(projector.act(projector.linear_1(pooled_first))), pooled, atol=1e-4)


def test_pooling_ratio_1_keeps_one_token_per_patch():
    config = mlp_config(1)
    projector = VJEPA2VLMMLPProjector(config)
    features = torch.randn(1, 128, config.vision_config.hidden_size)
    torch.testing.assert_close(projector(features, (2, 8, 8)),
                               projector.linear_2(projector.act(projector.linear_1(features))))


@pytest.mark.parametrize("ratio", [2, 8, 9, 64 * 4])
def test_mlp_pooling_ratio_must_be_a_square_window_dividing_the_grid(ratio):
    with pytest.raises(StrictDataclassClassValidationError, match="a square k \\* k with k dividing the 8 x 8"):
        mlp_config(ratio)


@pytest.mark.parametrize("ratio, tokens_per_tubelet", [(1, 64), (4, 16), (16, 4), (64, 1)])
def test_valid_mlp_ratios_give_the_config_token_counts(ratio, tokens_per_tubelet):
    assert mlp_config(ratio).tokens_per_tubelet == tokens_per_tubelet


def test_processor_counts_match_the_pooled_projector_and_the_model_trains_through_it():
    tokenizer = train_tiny_tokenizer(["Describe the video. A red ball rolls left."], 300)
    config = mlp_config(4, vocab_size=len(tokenizer))  # <image> / <video> are the tiny tokenizer's ids 3 / 4
    processor = VJEPA2VLMProcessor.from_model_config(config, tokenizer, num_frames=4)
    assert processor.num_video_tokens(4) == 32
    video = np.random.default_rng(0).integers(0, 255, (4, 64, 64, 3), dtype=np.uint8)
    inputs = processor(text=["<video>\nDescribe the video."], videos=[video])
    assert int((inputs["input_ids"] == config.video_token_id).sum()) == 32
    torch.manual_seed(0)
    model = VJEPA2VLMForConditionalGeneration(config).train()
    loss = model(**inputs, labels=inputs["input_ids"]).loss
    loss.backward()
    assert torch.isfinite(loss)
    projector = model.model.multi_modal_projector
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in projector.parameters())
