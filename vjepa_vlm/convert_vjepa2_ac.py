"""Pure conversion of Meta's released V-JEPA 2-AC checkpoint (`vjepa2-ac-vitg.pt`) into `VJEPA2WorldModel` keys.

The file holds an `encoder` and a `predictor` state dict (facebookresearch/vjepa2 `src/hub/backbones.py`,
`_make_vjepa2_ac_model`, which strips `module.` / `backbone.` and loads the predictor strictly). The encoder converts
as V-JEPA 2's does (`convert_meta_encoder`); the predictor's keys keep their reference names under `predictor.`, with
each fused `qkv` split into `query` / `key` / `value` and `attn` renamed `attention`. The reference always builds an
`extrinsics_encoder`; a model without extrinsics never uses it, so it is dropped then (and required otherwise).
Any other unrecognized key is an error.
"""

import re
from collections.abc import Mapping

import torch

from vjepa_vlm.convert_vjepa2 import _BLOCK_PARAM, _convert, convert_meta_encoder, strip_wrapper_prefixes

_AC_PREDICTOR_RULES = (
    (
        re.compile(r"(predictor_embed|action_encoder|state_encoder|extrinsics_encoder)\.(weight|bias)"),
        "predictor.{0}.{1}",
    ),
    (re.compile(r"predictor_blocks\.(\d+)\." + _BLOCK_PARAM), "predictor.predictor_blocks.{0}.{1}.{2}"),
    (re.compile(r"(predictor_norm|predictor_proj)\.(weight|bias)"), "predictor.{0}.{1}"),
)


def convert_meta_ac_predictor(
    state_dict: Mapping[str, torch.Tensor], use_extrinsics: bool = False
) -> dict[str, torch.Tensor]:
    """Meta `VisionTransformerPredictorAC` state dict -> `predictor.*` keys of `VJEPA2ACPredictor` / `VJEPA2WorldModel`.

    Args:
        state_dict: the checkpoint's `predictor` entry.
        use_extrinsics: whether the target config uses the extrinsics token (the released model does not).
    """
    extrinsics = {k for k in state_dict if strip_wrapper_prefixes(k).startswith("extrinsics_encoder.")}
    if use_extrinsics and not extrinsics:
        raise ValueError("the predictor state dict has no extrinsics_encoder, but the config has use_extrinsics=True")
    kept = {k: v for k, v in state_dict.items() if use_extrinsics or k not in extrinsics}
    converted = _convert(kept, _AC_PREDICTOR_RULES, "predictor")
    if "predictor.embeddings.mask_tokens" in converted:
        raise ValueError(
            "the predictor state dict has mask_tokens: it is V-JEPA 2's mask-denoising predictor, not the "
            "action-conditioned one (convert it with vjepa_vlm.convert_vjepa2 / scripts/convert_checkpoint.py)"
        )
    return converted


def convert_meta_ac_checkpoint(checkpoint: Mapping, use_extrinsics: bool = False) -> dict[str, torch.Tensor]:
    """A whole `vjepa2-ac-vitg.pt` dict -> one `VJEPA2WorldModel` state dict (`encoder.*` + `predictor.*`)."""
    for required in ("encoder", "predictor"):
        if required not in checkpoint:
            raise ValueError(
                f"checkpoint has no {required!r} entry; expected the V-JEPA 2-AC layout with keys 'encoder' and "
                f"'predictor' (found {sorted(map(str, checkpoint))})"
            )
    return {
        **convert_meta_encoder(checkpoint["encoder"]),
        **convert_meta_ac_predictor(checkpoint["predictor"], use_extrinsics),
    }


__all__ = ["convert_meta_ac_checkpoint", "convert_meta_ac_predictor"]
