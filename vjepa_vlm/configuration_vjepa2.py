"""Configuration of the V-JEPA 2 encoder + pretraining predictor.

Field names and meanings are those of transformers' `VJEPA2Config` so that `config.json` files written by either
library load in the other. Defaults are the paper's ViT-L encoder and ViT-s predictor (Table 12).
"""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

_PREDICTOR_DEFAULTS = dict(  # Table 12: the same ViT-s predictor (384 wide, 12 deep, 12 heads) for every encoder
    pred_hidden_size=384,
    pred_num_attention_heads=12,
    pred_num_hidden_layers=12,
    pred_mlp_ratio=4.0,
    pred_num_mask_tokens=10,
)

# Table 12 for widths/depths/heads/MLP; crop 256 is the pretraining resolution, 384 the cooldown resolution (Sec. 2.2).
PRESETS: dict[str, dict] = {
    "vjepa2-tiny": dict(
        hidden_size=96,
        num_hidden_layers=4,
        # 3 heads -> head dim 32, of which 3 x 10 are rotated and 2 pass through, like the 64-dim heads of ViT-L/g.
        num_attention_heads=3,
        mlp_ratio=4.0,
        crop_size=64,
        frames_per_clip=4,
        pred_hidden_size=48,
        pred_num_attention_heads=3,
        pred_num_hidden_layers=2,
        pred_mlp_ratio=4.0,
        pred_num_mask_tokens=10,
    ),
    "vjepa2-vitl": dict(
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, mlp_ratio=4.0, crop_size=256,
        frames_per_clip=64, **_PREDICTOR_DEFAULTS,
    ),
    "vjepa2-vith": dict(
        hidden_size=1280, num_hidden_layers=32, num_attention_heads=16, mlp_ratio=4.0, crop_size=256,
        frames_per_clip=64, **_PREDICTOR_DEFAULTS,
    ),
    # MLP 6144 = 1408 * 48 / 11, the ratio the published checkpoints were built with.
    "vjepa2-vitg": dict(
        hidden_size=1408, num_hidden_layers=40, num_attention_heads=22, mlp_ratio=48 / 11, crop_size=256,
        frames_per_clip=64, **_PREDICTOR_DEFAULTS,
    ),
    "vjepa2-vitg-384": dict(
        hidden_size=1408, num_hidden_layers=40, num_attention_heads=22, mlp_ratio=48 / 11, crop_size=384,
        frames_per_clip=64, **_PREDICTOR_DEFAULTS,
    ),
}


@strict(accept_kwargs=True)
class VJEPA2Config(PreTrainedConfig):
    r"""Configuration of [`VJEPA2Model`]: a ViT video encoder with 3D RoPE and its mask-denoising predictor.

    Args:
        patch_size (`int`): Spatial patch size of the tubelet embedding (16, Sec. 2.1).
        crop_size (`int`): Pretraining resolution. Only informative: positions come from the actual input grid.
        frames_per_clip (`int`): Pretraining clip length. Only informative, like `crop_size`.
        tubelet_size (`int`): Frames per tubelet (2, Sec. 2.1).
        hidden_size (`int`): Encoder width (Table 12).
        in_chans (`int`): Input channels.
        num_attention_heads (`int`): Encoder heads (Table 12).
        num_hidden_layers (`int`): Encoder depth (Table 12).
        drop_path_rate (`float`): Largest stochastic-depth rate, reached by the last block (linear ramp from 0).
        mlp_ratio (`float`): Encoder MLP width / `hidden_size` (Table 12).
        layer_norm_eps (`float`): LayerNorm epsilon (1e-6 as in the reference implementation).
        qkv_bias (`bool`): Bias on the query/key/value projections.
        attention_probs_dropout_prob (`float`): Attention dropout during training.
        hidden_act (`str`): MLP activation (GELU).
        initializer_range (`float`): Std of the truncated-normal weight init.
        attention_dropout (`float`): Kept for transformers compatibility (its attentive pooler reads it).
        num_pooler_layers (`int`): Kept for transformers compatibility (its classification pooler reads it).
        pred_hidden_size (`int`): Predictor width (Table 12, ViT-s).
        pred_num_attention_heads (`int`): Predictor heads.
        pred_num_hidden_layers (`int`): Predictor depth.
        pred_num_mask_tokens (`int`): Number of learnable mask tokens (one per masking pattern).
        pred_zero_init_mask_tokens (`bool`): Initialize mask tokens at zero instead of truncated normal.
        pred_mlp_ratio (`float`): Predictor MLP width / `pred_hidden_size`.
        pred_residual (`bool`): Residual predictor (not in the paper; off by default): each target token's
            prediction is the layer-normed context token at its spatial position in the latest earlier context slice
            (the "copy" of the last visible slice) plus the predictor's output, whose projection starts at zero; a
            target with no earlier context token at its position gets the plain prediction. See `VJEPA2Predictor`.

    The attention implementation is transformers' `attn_implementation` keyword (here or in `from_pretrained`):
    "eager" (the explicit-softmax reference), "sdpa" (the default) or "flash_attention_2" (needs flash-attn). Every
    attention of the encoder, the predictor and the probe's pooler reads it from `config._attn_implementation` at
    each call (`vjepa_vlm.vision.attention`); anything else is an error.
    """

    model_type = "vjepa2"

    patch_size: int = 16
    crop_size: int = 256
    frames_per_clip: int = 64
    tubelet_size: int = 2
    hidden_size: int = 1024
    in_chans: int = 3
    num_attention_heads: int = 16
    num_hidden_layers: int = 24
    drop_path_rate: float | int = 0.0
    mlp_ratio: int | float = 4.0
    layer_norm_eps: float = 1e-6
    qkv_bias: bool = True
    attention_probs_dropout_prob: float | int = 0.0
    hidden_act: str = "gelu"
    initializer_range: float = 0.02
    attention_dropout: float | int = 0.0
    num_pooler_layers: int = 3
    pred_hidden_size: int = 384
    pred_num_attention_heads: int = 12
    pred_num_hidden_layers: int = 12
    pred_num_mask_tokens: int = 10
    pred_zero_init_mask_tokens: bool = True
    pred_mlp_ratio: int | float = 4.0
    pred_residual: bool = False

    def validate_architecture(self):
        """Called by `@strict` on construction: every width must split into heads whose dims RoPE can rotate."""
        for width, heads, name in (
            (self.hidden_size, self.num_attention_heads, "hidden_size"),
            (self.pred_hidden_size, self.pred_num_attention_heads, "pred_hidden_size"),
        ):
            if heads <= 0 or width % heads != 0:
                raise ValueError(f"VJEPA2Config.{name}={width} must be a positive multiple of its head count {heads}")
            if width // heads < 6:
                raise ValueError(
                    f"VJEPA2Config.{name}={width} with {heads} heads gives head dim {width // heads}; "
                    "3D RoPE needs >= 6"
                )
        positive = ("patch_size", "tubelet_size", "num_hidden_layers", "pred_num_hidden_layers", "pred_num_mask_tokens")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"VJEPA2Config.{name} must be positive, got {getattr(self, name)}")

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "VJEPA2Config":
        """Build the config of a named architecture (see `PRESETS`); keyword overrides win over the preset."""
        if name not in PRESETS:
            raise ValueError(f"unknown V-JEPA 2 preset {name!r}; expected one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


__all__ = ["PRESETS", "VJEPA2Config"]
