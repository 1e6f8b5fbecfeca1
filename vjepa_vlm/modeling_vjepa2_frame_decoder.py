"""The V-JEPA 2 frame decoder (paper appendix B.3): a feed-forward map from one frame's frozen encoder features to
its pixels, trained with a pixel MSE on real frames and then applied unchanged to a world model's predicted features,
which turns imagined rollouts into pictures.

Tokens are embedded, passed through the shared pre-norm blocks (`vjepa_vlm.vision.block`, 2-D RoPE over the patch
grid) and mapped by a linear head to their `patch_size` x `patch_size` x 3 pixels. Pixels are in the encoder's input
space (ImageNet-normalized); `to_unit_pixels` brings them back to [0, 1].
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from vjepa_vlm.configuration_vjepa2_frame_decoder import VJEPA2FrameDecoderConfig
from vjepa_vlm.data.normalization import IMAGENET_MEAN, IMAGENET_STD
from vjepa_vlm.modeling_vjepa2 import init_vjepa2_projection
from vjepa_vlm.vision.attention import check_attn_implementation
from vjepa_vlm.vision.block import build_blocks
from vjepa_vlm.vision.rope import rope_tables, token_positions


def to_unit_pixels(pixel_values: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalized `(..., 3, H, W)` pixels -> [0, 1] (clamped), the space pixel MSE is reported in."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=pixel_values.dtype, device=pixel_values.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=pixel_values.dtype, device=pixel_values.device).view(3, 1, 1)
    return (pixel_values * std + mean).clamp(0.0, 1.0)


@dataclass
class VJEPA2FrameDecoderOutput(ModelOutput):
    """Output of [`VJEPA2FrameDecoder`].

    Args:
        loss: pixel MSE against `pixel_values`, when they were given.
        pixel_values: `(B, 3, crop_size, crop_size)` decoded frames, ImageNet-normalized.
    """

    loss: torch.Tensor | None = None
    pixel_values: torch.Tensor | None = None


class VJEPA2FrameDecoder(PreTrainedModel):
    """Decodes one frame's encoder features `(B, H*W, D)` into its pixels; see the module docstring.

    Args:
        config: a [`VJEPA2FrameDecoderConfig`].
    """

    config: VJEPA2FrameDecoderConfig
    config_class = VJEPA2FrameDecoderConfig
    base_model_prefix = "frame_decoder"
    main_input_name = "features"
    supports_gradient_checkpointing = True
    _no_split_modules = ["VJEPA2Block"]
    _supports_sdpa = True
    _supports_flash_attn = False

    def __init__(self, config: VJEPA2FrameDecoderConfig):
        super().__init__(config)
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.embed = nn.Linear(config.encoder_hidden_size, config.hidden_size)
        self.blocks = build_blocks(
            config, config.num_hidden_layers, config.hidden_size, config.num_attention_heads, config.mlp_ratio
        )
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.head = nn.Linear(config.hidden_size, config.patch_size**2 * config.num_channels)
        self.post_init()

    @classmethod
    def from_world_model(cls, world_model, **overrides) -> "VJEPA2FrameDecoder":
        """A fresh decoder for the features of `world_model` (a `VJEPA2WorldModel`); keywords set the decoder's
        own sizes (hidden_size, num_hidden_layers, ...)."""
        predictor = world_model.config.predictor_config
        config = VJEPA2FrameDecoderConfig(**{
            **overrides, "encoder_hidden_size": predictor.encoder_hidden_size, "crop_size": predictor.crop_size,
            "patch_size": predictor.patch_size,
        })
        return cls(config)

    def _check_and_adjust_attn_implementation(
        self, attn_implementation: str | None, is_init_check: bool = False, allow_all_kernels: bool = False
    ) -> str:
        check_attn_implementation(attn_implementation)
        return super()._check_and_adjust_attn_implementation(attn_implementation, is_init_check, allow_all_kernels)

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, nn.Linear):
            init_vjepa2_projection(module, self.config.initializer_range)

    def forward(self, features: torch.Tensor, pixel_values: torch.Tensor | None = None, **kwargs) -> VJEPA2FrameDecoderOutput:
        """Decode features; with `pixel_values` (the frames they came from), also the pixel MSE.

        Args:
            features: `(B, H*W, D)` features of one frame (`VJEPA2WorldModel.encode_frames(...)[:, t]` or a
                prediction).
            pixel_values: `(B, 3, crop_size, crop_size)` normalized target frames.
        """
        if kwargs:
            raise TypeError(f"VJEPA2FrameDecoder.forward got unsupported arguments {sorted(kwargs)}")
        cfg = self.config
        expected = (cfg.tokens_per_frame, cfg.encoder_hidden_size)
        if features.ndim != 3 or tuple(features.shape[1:]) != expected:
            raise ValueError(
                f"features must be (B, {expected[0]}, {expected[1]}) (the patches of one {cfg.crop_size}px frame at "
                f"patch_size={cfg.patch_size}, encoder width), got {tuple(features.shape)}"
            )
        batch, side, patch = features.shape[0], cfg.grid_side, cfg.patch_size
        hidden_states = self.embed(features.to(self.embed.weight.dtype))
        positions = token_positions((1, side, side), device=features.device)
        rope = rope_tables(positions, self.head_dim, hidden_states.dtype)
        for block in self.blocks:
            hidden_states = block(hidden_states, rope.cos, rope.signed_sin)
        patches = self.head(self.norm(hidden_states))  # (B, side*side, patch*patch*C), channels innermost
        pixels = (
            patches.view(batch, side, side, patch, patch, cfg.num_channels)
            .permute(0, 5, 1, 3, 2, 4)
            .reshape(batch, cfg.num_channels, side * patch, side * patch)
        )
        loss = None
        if pixel_values is not None:
            if tuple(pixel_values.shape) != tuple(pixels.shape):
                raise ValueError(f"pixel_values must be {tuple(pixels.shape)}, got {tuple(pixel_values.shape)}")
            loss = F.mse_loss(pixels.float(), pixel_values.float())
        return VJEPA2FrameDecoderOutput(loss=loss, pixel_values=pixels)


__all__ = ["VJEPA2FrameDecoder", "VJEPA2FrameDecoderOutput", "to_unit_pixels"]
