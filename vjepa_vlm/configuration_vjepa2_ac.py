"""Configurations of V-JEPA 2-AC (paper section 3, appendix B): the action-conditioned predictor, and the world model
that composes it with a frozen V-JEPA 2 encoder.

The paper's predictor (section 3.1, appendix B.1; facebookresearch/vjepa2 `src/models/ac_predictor.py`,
`vit_ac_predictor`, and `configs/train/vitg16/droid-256px-8f.yaml`: `pred_depth: 24`, `pred_embed_dim: 1024`,
`pred_num_heads: 16`, `use_extrinsics: false`, `crop_size: 256`) reads ViT-g features (1408 wide) and 7-D end-effector
actions and states. The tiny presets are for this project's CPU tests and recipes: the tiny encoder's 96-wide
features and the Fetch simulator's 4-D actions and states (dx, dy, dz, gripper).
"""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from vjepa_vlm.configuration_vjepa2 import VJEPA2Config

AC_PRESETS: dict[str, dict] = {
    "vjepa2-ac-tiny": dict(
        encoder_hidden_size=96,
        # 3 heads of 32 like the tiny encoder: 3 x 10 rotated RoPE features and 2 passing through.
        hidden_size=96,
        num_hidden_layers=4,
        num_attention_heads=3,
        mlp_ratio=4.0,
        action_dim=4,
        state_dim=4,
        crop_size=64,
    ),
    "vjepa2-ac-vitg": dict(
        encoder_hidden_size=1408,
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        mlp_ratio=4.0,
        action_dim=7,
        state_dim=7,
        crop_size=256,
    ),
}

# The world model's encoder preset for each predictor preset.
WORLD_MODEL_PRESETS: dict[str, str] = {"vjepa2-ac-tiny": "vjepa2-tiny", "vjepa2-ac-vitg": "vjepa2-vitg"}


@strict(accept_kwargs=True)
class VJEPA2ACConfig(PreTrainedConfig):
    r"""Configuration of [`VJEPA2ACPredictor`], the action-conditioned predictor of V-JEPA 2-AC.

    Each time step contributes `[action, state, (extrinsics,) frame patches]` tokens; attention is block-causal over
    steps and the output at step t predicts the encoder features of frame t + 1.

    Args:
        encoder_hidden_size (`int`): Width of the encoder features the predictor reads and predicts (1408 for ViT-g).
        hidden_size (`int`): Predictor width (1024 in the paper).
        num_hidden_layers (`int`): Predictor depth (24).
        num_attention_heads (`int`): Predictor heads (16); the head dim must be >= 6 for 3D RoPE.
        mlp_ratio (`float`): MLP width / `hidden_size` (4).
        action_dim (`int`): Features of one action (7: end-effector delta position, delta orientation, gripper).
        state_dim (`int`): Features of one end-effector state (7). The reference uses one size for both.
        use_extrinsics (`bool`): Add a camera-extrinsics token per step (the paper's model does not).
        extrinsics_dim (`int`): Features of the extrinsics (the reference: `action_dim - 1` = 6).
        crop_size (`int`): Square frame size in pixels; with `patch_size` it fixes the patch grid of every step.
        patch_size (`int`): Encoder patch size.
        qkv_bias (`bool`): Bias on the query/key/value projections.
        layer_norm_eps (`float`): LayerNorm epsilon (1e-6 as in the reference).
        drop_path_rate (`float`): Largest stochastic-depth rate (linear ramp from 0 over the blocks).
        attention_probs_dropout_prob (`float`): Attention dropout during training.
        hidden_act (`str`): MLP activation (GELU).
        initializer_range (`float`): Std of the truncated-normal weight init (0.02).
        residual_prediction (`bool`): Not in the reference (default False). Predict frame t + 1 as frame t's features
            plus the `predictor_proj` output, with `predictor_proj` initialized to zero, so an untrained predictor
            is exactly the "nothing moves" baseline and training only has to learn the change. Same modules and
            key names as the reference; a measured option for small CPU runs (docs/world_model.md).

    Attention runs through `vjepa_vlm.vision.attention` with a block-causal mask: "eager" (reference) or "sdpa"
    (default); "flash_attention_2" cannot apply the mask and is refused.
    """

    model_type = "vjepa2_ac"

    encoder_hidden_size: int = 1408
    hidden_size: int = 1024
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    mlp_ratio: int | float = 4.0
    action_dim: int = 7
    state_dim: int = 7
    use_extrinsics: bool = False
    extrinsics_dim: int = 6
    crop_size: int = 256
    patch_size: int = 16
    qkv_bias: bool = True
    layer_norm_eps: float = 1e-6
    drop_path_rate: float | int = 0.0
    attention_probs_dropout_prob: float | int = 0.0
    hidden_act: str = "gelu"
    initializer_range: float = 0.02
    residual_prediction: bool = False

    def validate_architecture(self):
        """Called by `@strict` on construction."""
        positive = (
            "encoder_hidden_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "action_dim",
            "state_dim", "extrinsics_dim", "crop_size", "patch_size",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"VJEPA2ACConfig.{name} must be positive, got {getattr(self, name)}")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"VJEPA2ACConfig.hidden_size={self.hidden_size} must be a multiple of num_attention_heads="
                f"{self.num_attention_heads}"
            )
        if self.hidden_size // self.num_attention_heads < 6:
            raise ValueError(
                f"VJEPA2ACConfig: head dim {self.hidden_size // self.num_attention_heads} is below 6; "
                "3D RoPE needs >= 6"
            )
        if self.crop_size % self.patch_size != 0:
            raise ValueError(
                f"VJEPA2ACConfig.crop_size={self.crop_size} must be a multiple of patch_size={self.patch_size}"
            )

    @property
    def grid_side(self) -> int:
        """Patches along each side of a frame."""
        return self.crop_size // self.patch_size

    @property
    def tokens_per_frame(self) -> int:
        return self.grid_side**2

    @property
    def conditioning_tokens(self) -> int:
        """Tokens before the patches of each step: action, state and, when used, extrinsics."""
        return 3 if self.use_extrinsics else 2

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "VJEPA2ACConfig":
        """The predictor of a named preset (see `AC_PRESETS`); keyword overrides win over the preset."""
        if name not in AC_PRESETS:
            raise ValueError(f"unknown V-JEPA 2-AC preset {name!r}; expected one of {sorted(AC_PRESETS)}")
        return cls(**{**AC_PRESETS[name], **overrides})


@strict(accept_kwargs=True)
class VJEPA2WorldModelConfig(PreTrainedConfig):
    r"""Configuration of [`VJEPA2WorldModel`]: a frozen V-JEPA 2 encoder and an action-conditioned predictor.

    Args:
        encoder_config (`VJEPA2Config` or `dict`): the encoder (only its encoder fields are used); ViT-g when omitted.
        predictor_config (`VJEPA2ACConfig` or `dict`): the predictor; its `encoder_hidden_size`, `crop_size` and
            `patch_size` must agree with the encoder; the paper's when omitted.

    `attn_implementation` (here or in `from_pretrained`) reaches both sub-configs, as transformers does for nested
    configs.
    """

    model_type = "vjepa2_world_model"
    sub_configs_defaults = {
        "encoder_config": SubConfigSpec(config_class=VJEPA2Config),
        "predictor_config": SubConfigSpec(config_class=VJEPA2ACConfig),
    }

    encoder_config: dict | PreTrainedConfig | None = None
    predictor_config: dict | PreTrainedConfig | None = None

    def __post_init__(self, **kwargs):
        # Omitted parts default to the paper's pair (ViT-g encoder), not to `VJEPA2Config()`'s ViT-L, whose features
        # the default predictor could not read (transformers builds a default config when it saves one).
        if self.encoder_config is None:
            self.encoder_config = VJEPA2Config.from_preset(WORLD_MODEL_PRESETS["vjepa2-ac-vitg"])
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        """Called by `@strict` on construction: the predictor must read what the encoder writes."""
        encoder, predictor = self.encoder_config, self.predictor_config
        for encoder_field, predictor_field in (
            ("hidden_size", "encoder_hidden_size"),
            ("crop_size", "crop_size"),
            ("patch_size", "patch_size"),
        ):
            if getattr(encoder, encoder_field) != getattr(predictor, predictor_field):
                raise ValueError(
                    f"VJEPA2WorldModelConfig: encoder_config.{encoder_field}={getattr(encoder, encoder_field)} but "
                    f"predictor_config.{predictor_field}={getattr(predictor, predictor_field)}; they must match"
                )

    @classmethod
    def from_preset(cls, name: str, **predictor_overrides) -> "VJEPA2WorldModelConfig":
        """The encoder and predictor of a named preset (see `WORLD_MODEL_PRESETS`); keywords override the predictor."""
        if name not in WORLD_MODEL_PRESETS:
            raise ValueError(
                f"unknown V-JEPA 2 world-model preset {name!r}; expected one of {sorted(WORLD_MODEL_PRESETS)}"
            )
        return cls(
            encoder_config=VJEPA2Config.from_preset(WORLD_MODEL_PRESETS[name]),
            predictor_config=VJEPA2ACConfig.from_preset(name, **predictor_overrides),
        )


__all__ = ["AC_PRESETS", "WORLD_MODEL_PRESETS", "VJEPA2ACConfig", "VJEPA2WorldModelConfig"]
