"""Conversion of Meta's original checkpoints, on synthetic state dicts with the exact original key layout."""

import importlib.util
from pathlib import Path

import pytest
import torch
from transformers import AutoModel
from vjepa2_oracle import random_clip, randomize_, tiny_config

from vjepa_vlm import VJEPA2Model
from vjepa_vlm.convert_vjepa2 import (
    check_against_model,
    convert_meta_checkpoint,
    convert_meta_encoder,
    convert_meta_predictor,
)

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "convert_checkpoint.py"


def meta_block(prefix: str, source: dict, block: str) -> dict:
    """One block in Meta's layout: fused qkv under `attn.`, everything else by its original name."""
    attention = f"{block}.attention"
    return {
        f"{prefix}.attn.qkv.weight": torch.cat([source[f"{attention}.{n}.weight"] for n in ("query", "key", "value")]),
        f"{prefix}.attn.qkv.bias": torch.cat([source[f"{attention}.{n}.bias"] for n in ("query", "key", "value")]),
        f"{prefix}.attn.proj.weight": source[f"{attention}.proj.weight"],
        f"{prefix}.attn.proj.bias": source[f"{attention}.proj.bias"],
        **{f"{prefix}.{name}.{kind}": source[f"{block}.{name}.{kind}"]
           for name in ("norm1", "norm2", "mlp.fc1", "mlp.fc2") for kind in ("weight", "bias")},
    }


def meta_checkpoint(model: VJEPA2Model) -> dict:
    """What Meta's pretraining app saves for `model`: DDP + wrapper prefixes, fused qkv, a list of mask tokens."""
    sd = model.state_dict()
    encoder = {
        "patch_embed.proj.weight": sd["encoder.embeddings.patch_embeddings.proj.weight"],
        "patch_embed.proj.bias": sd["encoder.embeddings.patch_embeddings.proj.bias"],
        "norm.weight": sd["encoder.layernorm.weight"],
        "norm.bias": sd["encoder.layernorm.bias"],
    }
    for i in range(model.config.num_hidden_layers):
        encoder.update(meta_block(f"blocks.{i}", sd, f"encoder.layer.{i}"))
    predictor = {
        "predictor_embed.weight": sd["predictor.embeddings.predictor_embeddings.weight"],
        "predictor_embed.bias": sd["predictor.embeddings.predictor_embeddings.bias"],
        "predictor_norm.weight": sd["predictor.layernorm.weight"],
        "predictor_norm.bias": sd["predictor.layernorm.bias"],
        "predictor_proj.weight": sd["predictor.proj.weight"],
        "predictor_proj.bias": sd["predictor.proj.bias"],
    }
    for i, token in enumerate(sd["predictor.embeddings.mask_tokens"]):
        predictor[f"mask_tokens.{i}"] = token.clone()  # (1, 1, D) each, an nn.ParameterList
    for i in range(model.config.pred_num_hidden_layers):
        predictor.update(meta_block(f"predictor_blocks.{i}", sd, f"predictor.layer.{i}"))

    def wrap(state):
        return {f"module.backbone.{key}": value.clone() for key, value in state.items()}

    return {
        "encoder": wrap({k: v + 1.0 for k, v in encoder.items()}),  # online encoder differs from the EMA target
        "target_encoder": wrap(encoder),
        "predictor": wrap(predictor),
        "epoch": 10,
        "lr": 1e-4,
    }


@pytest.fixture(scope="module")
def source_model():
    return randomize_(VJEPA2Model(tiny_config()), seed=5).eval()


def test_meta_checkpoint_converts_to_the_exact_original_weights(source_model):
    converted = convert_meta_checkpoint(meta_checkpoint(source_model))
    expected = source_model.state_dict()
    assert set(converted) == set(expected)
    assert all(torch.equal(converted[key], expected[key]) for key in expected)


def test_online_encoder_can_be_chosen_instead_of_the_target(source_model):
    converted = convert_meta_checkpoint(meta_checkpoint(source_model), encoder_key="encoder")
    key = "encoder.layer.0.attention.key.weight"
    assert torch.equal(converted[key], source_model.state_dict()[key] + 1.0)


def test_prefixes_in_any_order_and_unused_sincos_tables_are_accepted(source_model):
    encoder = meta_checkpoint(source_model)["target_encoder"]
    reordered = {"backbone.module." + key.removeprefix("module.backbone."): v for key, v in encoder.items()}
    reordered["module.backbone.pos_embed"] = torch.zeros(1, 32, 96)
    assert set(convert_meta_encoder(reordered)) == {k for k in source_model.state_dict() if k.startswith("encoder.")}


def test_unexpected_keys_raise_and_are_named(source_model):
    checkpoint = meta_checkpoint(source_model)
    checkpoint["predictor"]["module.backbone.predictor_blocks.0.attn.rel_bias"] = torch.zeros(3)
    with pytest.raises(ValueError, match=r"unexpected keys .*'predictor'.*predictor_blocks\.0\.attn\.rel_bias"):
        convert_meta_checkpoint(checkpoint)
    with pytest.raises(ValueError, match="unexpected keys .*'encoder'.*cls_token"):
        convert_meta_encoder({"module.backbone.cls_token": torch.zeros(1)})


def test_missing_entries_keys_and_wrong_shapes_raise(source_model):
    checkpoint = meta_checkpoint(source_model)
    with pytest.raises(ValueError, match="no 'predictor' entry"):
        convert_meta_checkpoint({"target_encoder": checkpoint["target_encoder"]})
    converted = convert_meta_checkpoint(checkpoint)
    expected = source_model.state_dict()
    del converted["encoder.layer.1.norm2.bias"]
    converted["encoder.layernorm.weight"] = torch.zeros(7)
    with pytest.raises(ValueError, match=r"missing=\['encoder.layer.1.norm2.bias'\].*encoder.layernorm.weight"):
        check_against_model(converted, expected)
    gappy = dict(checkpoint["predictor"])
    del gappy["module.backbone.mask_tokens.3"]
    with pytest.raises(ValueError, match="mask tokens must be numbered"):
        convert_meta_predictor(gappy)


def load_script():
    spec = importlib.util.spec_from_file_location("convert_checkpoint", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@torch.no_grad()
def test_script_writes_a_directory_automodel_loads(source_model, tmp_path):
    script = load_script()
    checkpoint_path = tmp_path / "tiny.pt"
    torch.save(meta_checkpoint(source_model), checkpoint_path)
    out = tmp_path / "vjepa2-tiny"
    script.main(["--preset", "vjepa2-tiny", "--checkpoint", str(checkpoint_path), "--out", str(out)])
    loaded = AutoModel.from_pretrained(out).eval()
    assert type(loaded) is VJEPA2Model
    clip = random_clip()
    expected = source_model(clip).predictor_output.last_hidden_state
    assert torch.equal(loaded(clip).predictor_output.last_hidden_state, expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.pt", "vjepa2-tiny"]  # no staging leftovers
    with pytest.raises(FileExistsError, match="--overwrite"):
        script.main(["--preset", "vjepa2-tiny", "--checkpoint", str(checkpoint_path), "--out", str(out)])


def test_script_rejects_a_checkpoint_of_another_architecture(source_model, tmp_path):
    script = load_script()
    checkpoint_path = tmp_path / "tiny.pt"
    torch.save(meta_checkpoint(source_model), checkpoint_path)
    with pytest.raises(ValueError, match="does not match the model"):
        args = ["--preset", "vjepa2-vitl", "--checkpoint", str(checkpoint_path), "--out", str(tmp_path / "x")]
        script.build_model(script.parse_args(args))


def test_script_without_checkpoint_writes_random_weights_loudly(tmp_path, capsys):
    script = load_script()
    out = tmp_path / "random"
    script.main(["--preset", "vjepa2-tiny", "--out", str(out)])
    assert "RANDOM WEIGHTS" in capsys.readouterr().err
    script.main(["--preset", "vjepa2-tiny", "--out", str(out), "--overwrite", "--seed", "1"])
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["random"]
