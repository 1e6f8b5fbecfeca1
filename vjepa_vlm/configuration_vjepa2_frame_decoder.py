"""Configuration of the V-JEPA 2 frame decoder (paper appendix B.3): from one frame's frozen encoder features to
its pixels, so that world-model predictions can be looked at."""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig


@strict(accept_kwargs=True)
class VJEPA2FrameDecoderConfig(PreTrainedConfig):
    r"""Configuration of [`VJEPA2FrameDecoder`]: a small ViT over the `(crop_size / patch_size)^2` feature tokens of
    one frame and a linear head from each token to its `patch_size` x `patch_size` x 3 pixels.

    The encoder side (`encoder_hidden_size`, `crop_size`, `patch_size`) must be the world model's, so that its
    features and its predictions decode unchanged (`from_world_model` copies them).

    Args:
        encoder_hidden_size (`int`): Width of the features decoded (the encoder's `hidden_size`).
        crop_size (`int`): Side of the decoded frame in pixels.
        patch_size (`int`): Encoder patch size: each token becomes one patch of pixels.
        hidden_size (`int`): Decoder width.
        num_hidden_layers (`int`): Decoder blocks.
        num_attention_heads (`int`): Decoder heads; the head dim must be >= 6 for the RoPE the blocks use.
        mlp_ratio (`float`): MLP width / `hidden_size`.
        num_channels (`int`): Output channels (3: RGB, normalized as the encoder's input).
        qkv_bias (`bool`): Bias on the query/key/value projections.
        layer_norm_eps (`float`): LayerNorm epsilon.
        drop_path_rate (`float`): Largest stochastic-depth rate.
        attention_probs_dropout_prob (`float`): Attention dropout during training.
        hidden_act (`str`): MLP activation.
        initializer_range (`float`): Std of the truncated-normal weight init.
    """

    model_type = "vjepa2_frame_decoder"

    encoder_hidden_size: int = 96
    crop_size: int = 64
    patch_size: int = 8
    hidden_size: int = 192
    num_hidden_layers: int = 4
    num_attention_heads: int = 6
    mlp_ratio: int | float = 4.0
    num_channels: int = 3
    qkv_bias: bool = True
    layer_norm_eps: float = 1e-6
    drop_path_rate: float | int = 0.0
    attention_probs_dropout_prob: float | int = 0.0
    hidden_act: str = "gelu"
    initializer_range: float = 0.02

    def validate_architecture(self):
        """Called by `@strict` on construction."""
        positive = ("encoder_hidden_size", "crop_size", "patch_size", "hidden_size", "num_hidden_layers",
                    "num_attention_heads", "num_channels")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"VJEPA2FrameDecoderConfig.{name} must be positive, got {getattr(self, name)}")
        if self.crop_size % self.patch_size:
            raise ValueError(
                f"VJEPA2FrameDecoderConfig.crop_size={self.crop_size} must be a multiple of patch_size={self.patch_size}"
            )
        if self.hidden_size % self.num_attention_heads or self.hidden_size // self.num_attention_heads < 6:
            raise ValueError(
                f"VJEPA2FrameDecoderConfig.hidden_size={self.hidden_size} must be a multiple of num_attention_heads="
                f"{self.num_attention_heads} with a head dim >= 6 (RoPE)"
            )

    @property
    def grid_side(self) -> int:
        return self.crop_size // self.patch_size

    @property
    def tokens_per_frame(self) -> int:
        return self.grid_side**2


__all__ = ["VJEPA2FrameDecoderConfig"]
