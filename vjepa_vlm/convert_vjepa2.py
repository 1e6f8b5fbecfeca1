"""Pure conversion of Meta's original V-JEPA 2 `.pt` checkpoints into our (= transformers') state-dict layout.

A Meta checkpoint is a dict with `encoder` (online), `target_encoder` (EMA; the one the paper evaluates) and
`predictor` state dicts. Their keys carry `module.` (DDP) and `backbone.` (multi-sequence wrapper) prefixes, attention
projections are one fused `qkv` linear, and mask tokens are a `ParameterList` (`mask_tokens.0`, ...). Every key must
be recognized: anything else is an error, never silently dropped.
"""

import re
from collections.abc import Mapping

import torch

from vjepa_vlm.configuration_vjepa2 import VJEPA2Config

_WRAPPER_PREFIXES = ("module.", "backbone.")

# Sincos tables that RoPE models may still carry; they hold no learned weights, so they are dropped on purpose.
_UNUSED_KEYS = {"pos_embed", "predictor_pos_embed"}

_BLOCK_PARAM = r"(norm1|norm2|mlp\.fc1|mlp\.fc2|attn\.proj|attn\.qkv)\.(weight|bias)"

_ENCODER_RULES = (
    (re.compile(r"patch_embed\.proj\.(weight|bias)"), "encoder.embeddings.patch_embeddings.proj.{0}"),
    (re.compile(r"blocks\.(\d+)\." + _BLOCK_PARAM), "encoder.layer.{0}.{1}.{2}"),
    (re.compile(r"norm\.(weight|bias)"), "encoder.layernorm.{0}"),
)

_PREDICTOR_RULES = (
    (re.compile(r"predictor_embed\.(weight|bias)"), "predictor.embeddings.predictor_embeddings.{0}"),
    (re.compile(r"predictor_blocks\.(\d+)\." + _BLOCK_PARAM), "predictor.layer.{0}.{1}.{2}"),
    (re.compile(r"predictor_norm\.(weight|bias)"), "predictor.layernorm.{0}"),
    (re.compile(r"predictor_proj\.(weight|bias)"), "predictor.proj.{0}"),
)

_MASK_TOKEN = re.compile(r"mask_tokens\.(\d+)")


def strip_wrapper_prefixes(key: str) -> str:
    """Remove leading `module.` / `backbone.` wrappers, in any order and number."""
    stripped = True
    while stripped:
        stripped = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix):], True
    return key


def _rename(key: str, rules) -> str | None:
    for pattern, template in rules:
        match = pattern.fullmatch(key)
        if match:
            return template.format(*match.groups()).replace(".attn.", ".attention.")
    return None


def _split_qkv(name: str, fused: torch.Tensor) -> dict[str, torch.Tensor]:
    query, key, value = (part.clone() for part in fused.chunk(3, dim=0))  # own storage: safetensors rejects views
    prefix, suffix = name.rsplit(".qkv.", 1)
    return {f"{prefix}.query.{suffix}": query, f"{prefix}.key.{suffix}": key, f"{prefix}.value.{suffix}": value}


def _convert(state_dict: Mapping[str, torch.Tensor], rules, source: str) -> dict[str, torch.Tensor]:
    converted, mask_tokens, unexpected = {}, {}, []
    for original, tensor in state_dict.items():
        key = strip_wrapper_prefixes(original)
        if key in _UNUSED_KEYS:
            continue
        mask_match = _MASK_TOKEN.fullmatch(key) if source == "predictor" else None
        if mask_match:
            mask_tokens[int(mask_match.group(1))] = tensor
            continue
        name = _rename(key, rules)
        if name is None:
            unexpected.append(original)
        elif name.endswith((".qkv.weight", ".qkv.bias")):
            converted.update(_split_qkv(name, tensor))
        else:
            converted[name] = tensor
    if unexpected:
        raise ValueError(f"unexpected keys in the checkpoint's {source!r} state dict: {sorted(unexpected)}")
    if mask_tokens:
        if sorted(mask_tokens) != list(range(len(mask_tokens))):
            raise ValueError(f"predictor mask tokens must be numbered 0..n-1, got {sorted(mask_tokens)}")
        tokens = [mask_tokens[i].reshape(1, 1, -1) for i in range(len(mask_tokens))]
        converted["predictor.embeddings.mask_tokens"] = torch.stack(tokens)
    return converted


def convert_meta_encoder(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Meta encoder state dict -> `encoder.*` keys of `VJEPA2Model`."""
    return _convert(state_dict, _ENCODER_RULES, "encoder")


def convert_meta_predictor(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Meta predictor state dict -> `predictor.*` keys of `VJEPA2Model` (mask tokens stacked to `(n, 1, 1, D)`)."""
    return _convert(state_dict, _PREDICTOR_RULES, "predictor")


def convert_meta_checkpoint(checkpoint: Mapping, encoder_key: str = "target_encoder") -> dict[str, torch.Tensor]:
    """A whole Meta checkpoint dict -> one `VJEPA2Model` state dict.

    Args:
        checkpoint: the loaded `.pt` dict (other entries such as optimizer state or epoch are ignored).
        encoder_key: which encoder to take: "target_encoder" (EMA weights, what the paper evaluates) or "encoder".
    """
    for required in (encoder_key, "predictor"):
        if required not in checkpoint:
            raise ValueError(
                f"checkpoint has no {required!r} entry; expected Meta's layout with keys 'encoder', "
                f"'target_encoder', 'predictor' (found {sorted(map(str, checkpoint))})"
            )
    return {**convert_meta_encoder(checkpoint[encoder_key]), **convert_meta_predictor(checkpoint["predictor"])}


def check_against_model(
    state_dict: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], config: VJEPA2Config | None = None
) -> None:
    """Raise ValueError naming every missing, unexpected or wrongly shaped key versus `expected` (a model's state)."""
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = sorted(
        f"{key}: checkpoint {tuple(state_dict[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in set(state_dict) & set(expected)
        if state_dict[key].shape != expected[key].shape
    )
    if missing or unexpected or mismatched:
        where = ""
        if config is not None:
            where = f" for config (hidden_size={config.hidden_size}, layers={config.num_hidden_layers})"
        raise ValueError(
            f"converted checkpoint does not match the model{where}: missing={missing} unexpected={unexpected} "
            f"shape mismatches={mismatched}"
        )


__all__ = [
    "check_against_model",
    "convert_meta_checkpoint",
    "convert_meta_encoder",
    "convert_meta_predictor",
    "strip_wrapper_prefixes",
]
