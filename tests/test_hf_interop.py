"""Hugging Face integration: Auto registration, checkpoint interop with transformers both ways, presets."""

import json

import pytest
import torch
import transformers
from huggingface_hub.errors import StrictDataclassClassValidationError
from transformers import AutoConfig, AutoModel
from vjepa2_oracle import random_clip, tiny_config, twin_models

from vjepa_vlm import PRESETS, VJEPA2Config, VJEPA2Model


@pytest.fixture(scope="module")
def twins():
    return twin_models(tiny_config())


def test_state_dict_keys_and_shapes_equal_transformers(twins):
    ours, reference = twins
    ours_shapes = {k: v.shape for k, v in ours.state_dict().items()}
    assert ours_shapes == {k: v.shape for k, v in reference.state_dict().items()}


@torch.no_grad()
def test_our_saved_directory_loads_in_plain_transformers(twins, tmp_path):
    ours, _ = twins
    ours.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "vjepa2"
    loaded, info = transformers.VJEPA2Model.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    clip = random_clip()
    expected = ours(clip, skip_predictor=True).last_hidden_state
    assert (loaded.eval()(clip, skip_predictor=True).last_hidden_state - expected).abs().max() <= 1e-4


@torch.no_grad()
def test_transformers_saved_directory_loads_as_our_model_through_automodel(twins, tmp_path):
    ours, reference = twins
    reference.save_pretrained(tmp_path)
    loaded, info = AutoModel.from_pretrained(tmp_path, output_loading_info=True)
    assert type(loaded) is VJEPA2Model
    assert isinstance(AutoConfig.from_pretrained(tmp_path), VJEPA2Config)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    clip = random_clip()
    expected = reference(clip).predictor_output.last_hidden_state
    assert (loaded.eval()(clip).predictor_output.last_hidden_state - expected).abs().max() <= 1e-4


def test_model_declares_hugging_face_capabilities():
    assert VJEPA2Model.main_input_name == "pixel_values_videos"
    assert VJEPA2Model.base_model_prefix == "vjepa2"
    assert VJEPA2Model._supports_sdpa and VJEPA2Model.supports_gradient_checkpointing
    assert "VJEPA2Block" in VJEPA2Model._no_split_modules


def test_fresh_init_follows_the_reference_recipe():
    torch.manual_seed(0)
    model = VJEPA2Model(tiny_config(initializer_range=0.02))
    assert torch.count_nonzero(model.predictor.embeddings.mask_tokens) == 0
    first = model.encoder.layer[0]
    assert abs(first.mlp.fc1.weight.std().item() - 0.02) < 0.003
    for depth, block in enumerate(model.encoder.layer, start=1):  # residual projections: std / sqrt(2 l)
        for projection in (block.attention.proj, block.mlp.fc2):
            assert abs(projection.weight.std().item() / (0.02 / (2 * depth) ** 0.5) - 1) < 0.15
    assert torch.equal(first.norm1.weight, torch.ones(96)) and torch.count_nonzero(first.attention.query.bias) == 0


def test_invalid_architecture_is_rejected_naming_the_field():
    with pytest.raises(StrictDataclassClassValidationError, match="hidden_size=100 must be a positive multiple"):
        VJEPA2Config(hidden_size=100, num_attention_heads=3)
    with pytest.raises(StrictDataclassClassValidationError, match="pred_hidden_size=8 with 2 heads"):
        tiny_config(pred_hidden_size=8, pred_num_attention_heads=2)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError, match="vjepa2-vitg-384"):
        VJEPA2Config.from_preset("vjepa2-vitx")


def expected_encoder_params(width: int, depth: int, mlp: int, tubelet_pixels: int = 3 * 2 * 16 * 16) -> int:
    embedding = tubelet_pixels * width + width
    block = 4 * (width * width + width) + 2 * width * mlp + mlp + width + 2 * 2 * width  # attn, mlp, 2 norms
    return embedding + depth * block + 2 * width


@pytest.mark.parametrize(
    "preset, width, depth, mlp, approx",
    [
        ("vjepa2-vitl", 1024, 24, 4096, 300e6),
        ("vjepa2-vith", 1280, 32, 5120, 600e6),
        ("vjepa2-vitg", 1408, 40, 6144, 1e9),
    ],
)
def test_preset_parameter_counts_on_the_meta_device(preset, width, depth, mlp, approx):
    with torch.device("meta"):
        model = VJEPA2Model(VJEPA2Config.from_preset(preset))
    encoder_params = sum(p.numel() for p in model.encoder.parameters())
    assert encoder_params == expected_encoder_params(width, depth, mlp)
    assert abs(encoder_params - approx) / approx < 0.06  # Table 12: 300M / 600M / 1B
    predictor_params = sum(p.numel() for p in model.predictor.parameters())
    assert 21e6 < predictor_params < 23e6  # Table 12: ViT-s predictor, 22M


def test_presets_follow_table_12():
    table_12 = {
        "vjepa2-vitl": (1024, 24, 16, 4096),
        "vjepa2-vith": (1280, 32, 16, 5120),
        "vjepa2-vitg": (1408, 40, 22, 6144),
    }
    for name, (width, depth, heads, mlp) in table_12.items():
        cfg = VJEPA2Config.from_preset(name)
        assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == (width, depth, heads)
        assert int(cfg.hidden_size * cfg.mlp_ratio) == mlp
        assert (cfg.pred_hidden_size, cfg.pred_num_hidden_layers, cfg.pred_num_attention_heads) == (384, 12, 12)
    assert VJEPA2Config.from_preset("vjepa2-vitg-384").crop_size == 384
    assert set(PRESETS) == {"vjepa2-tiny", *table_12, "vjepa2-vitg-384"}
