"""The V-JEPA 2 video encoder: tubelet embedding, pre-norm ViT blocks with 3D RoPE, final LayerNorm, no CLS token.

Positions come from the grid of the actual input, so any clip length divisible by the tubelet size and any
(also non-square) resolution divisible by the patch size works. A masked forward embeds and encodes only the given
context tokens, at their true positions.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers.utils import ModelOutput

from vjepa_vlm.vision.attention import check_attn_implementation
from vjepa_vlm.vision.block import build_blocks
from vjepa_vlm.vision.rope import rope_tables, token_positions


@dataclass
class VJEPA2EncoderOutput(ModelOutput):
    """Output of [`VJEPA2VisionEncoder`].

    Args:
        last_hidden_state: `(B, N, D)` tokens after the final LayerNorm.
        intermediate_hidden_states: outputs of the requested blocks, each `(B, N, D)` and passed through the final
            LayerNorm (the reference implementation's `out_layers` convention), in the requested order.
        grid_size: `(t, h, w)` tubelet grid of the input.
    """

    last_hidden_state: torch.Tensor | None = None
    intermediate_hidden_states: tuple[torch.Tensor, ...] | None = None
    grid_size: tuple[int, int, int] | None = None


def as_video(pixel_values: torch.Tensor, tubelet_size: int, patch_size: int, in_chans: int) -> torch.Tensor:
    """Check `(B, T, C, H, W)` videos or `(B, C, H, W)` images and return `(B, C, T, H, W)`.

    Images, and single-frame videos, are repeated to one tubelet as in the paper's image evaluation.
    """
    if not isinstance(pixel_values, torch.Tensor):
        raise TypeError(f"pixel_values must be a torch.Tensor, got {type(pixel_values).__name__}")
    if pixel_values.ndim == 4:
        pixel_values = pixel_values.unsqueeze(1)
    if pixel_values.ndim != 5:
        raise ValueError(
            f"pixel_values must be (B, T, C, H, W) video or (B, C, H, W) image, got shape {tuple(pixel_values.shape)}"
        )
    _, frames, channels, height, width = pixel_values.shape
    if channels != in_chans:
        raise ValueError(f"pixel_values has {channels} channels at dim 2 (B, T, C, H, W); expected in_chans={in_chans}")
    if frames == 1:
        pixel_values = pixel_values.expand(-1, tubelet_size, -1, -1, -1)
    elif frames % tubelet_size != 0:
        raise ValueError(f"pixel_values has {frames} frames; expected 1 or a multiple of tubelet_size={tubelet_size}")
    if height % patch_size != 0 or width % patch_size != 0:
        raise ValueError(f"pixel_values is {height}x{width} (H x W); both must be multiples of patch_size={patch_size}")
    return pixel_values.transpose(1, 2)


def check_token_indices(
    indices: torch.Tensor, batch_size: int, num_tokens: int, name: str = "context_indices"
) -> torch.Tensor:
    """Validate `(B, N)` (or `(N,)`, shared by the batch) indices into a flattened grid of `num_tokens` tokens."""
    if not isinstance(indices, torch.Tensor) or indices.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name} must be an integer torch.Tensor of shape (B, N)")
    if indices.ndim == 1:
        indices = indices.unsqueeze(0).expand(batch_size, -1)
    if indices.ndim != 2 or indices.shape[0] != batch_size:
        raise ValueError(f"{name} must have shape (B={batch_size}, N), got {tuple(indices.shape)}")
    if indices.numel() and (indices.min() < 0 or indices.max() >= num_tokens):
        raise ValueError(
            f"{name} must lie in [0, {num_tokens}) for this input grid, got [{indices.min()}, {indices.max()}]"
        )
    return indices.long()


def gather_tokens(tokens: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """`(B, N, D)` tokens at `(B, K)` indices -> `(B, K, D)`."""
    return tokens.gather(1, indices.to(tokens.device).unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


class TubeletEmbedding(nn.Module):
    """Non-overlapping `tubelet x patch x patch` Conv3d patchifier.

    Args:
        in_chans: input channels.
        hidden_size: token width.
        tubelet_size: frames per tubelet.
        patch_size: pixels per patch side.
    """

    def __init__(self, in_chans: int, hidden_size: int, tubelet_size: int, patch_size: int):
        super().__init__()
        kernel = (tubelet_size, patch_size, patch_size)
        self.proj = nn.Conv3d(in_chans, hidden_size, kernel_size=kernel, stride=kernel)

    def forward(self, video: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        """Embed `(B, C, T, H, W)` into `(B, N, D)`; with `indices` `(B, N)`, only those tubelets are embedded."""
        video = video.to(self.proj.weight.dtype)
        if indices is None:
            return self.proj(video).flatten(2).transpose(1, 2)
        # A strided conv with kernel == stride is a linear map of each flattened tubelet, so selected tubelets can be
        # gathered first and projected alone.
        batch, channels, frames, height, width = video.shape
        kt, kh, kw = self.proj.kernel_size
        tubelets = video.reshape(batch, channels, frames // kt, kt, height // kh, kh, width // kw, kw)
        tubelets = tubelets.permute(0, 2, 4, 6, 1, 3, 5, 7).flatten(1, 3).flatten(2)
        tubelets = tubelets.gather(1, indices.unsqueeze(-1).expand(-1, -1, tubelets.shape[-1]))
        return F.linear(tubelets, self.proj.weight.flatten(1), self.proj.bias)


class VJEPA2Embeddings(nn.Module):
    """Holds the tubelet embedding under the module path of transformers' checkpoints.

    Args:
        config: a `VJEPA2Config`.
    """

    def __init__(self, config):
        super().__init__()
        self.patch_embeddings = TubeletEmbedding(
            config.in_chans, config.hidden_size, config.tubelet_size, config.patch_size
        )

    def forward(self, video: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        return self.patch_embeddings(video, indices)


class VJEPA2VisionEncoder(nn.Module):
    """V-JEPA 2 ViT encoder with 3D RoPE.

    Args:
        config: a `VJEPA2Config` (encoder fields: `hidden_size`, `num_hidden_layers`, `num_attention_heads`,
            `mlp_ratio`, `patch_size`, `tubelet_size`, `in_chans`, `qkv_bias`, `layer_norm_eps`,
            `drop_path_rate`, `attention_probs_dropout_prob`, `hidden_act`) and `_attn_implementation` (see
            `vjepa_vlm.vision.attention`), read at every forward.
    """

    def __init__(self, config):
        super().__init__()
        # A tower built inside another model (the VLM) gets no check from transformers: fail here, not at forward.
        check_attn_implementation(config._attn_implementation)
        self.config = config
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.embeddings = VJEPA2Embeddings(config)
        self.layer = build_blocks(
            config,
            config.num_hidden_layers,
            config.hidden_size,
            config.num_attention_heads,
            config.mlp_ratio,
        )
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block in backward instead of storing its activations (for using the encoder alone)."""
        for block in self.layer:
            block.gradient_checkpointing = enable
            block._gradient_checkpointing_func = lambda fn, *args: checkpoint(fn, *args, use_reentrant=False)

    def grid_size(self, pixel_values: torch.Tensor) -> tuple[int, int, int]:
        """`(t, h, w)` tubelet grid of an input, after the same validation as `forward`."""
        video = self._video(pixel_values)
        return self._grid(video)

    def _video(self, pixel_values: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        return as_video(pixel_values, cfg.tubelet_size, cfg.patch_size, cfg.in_chans)

    def _grid(self, video: torch.Tensor) -> tuple[int, int, int]:
        _, _, frames, height, width = video.shape
        cfg = self.config
        return frames // cfg.tubelet_size, height // cfg.patch_size, width // cfg.patch_size

    def _resolve_layers(self, output_layers: Sequence[int] | None) -> list[int]:
        depth = len(self.layer)
        resolved = []
        for index in output_layers or ():
            if not -depth <= index < depth:
                raise ValueError(f"output_layers entry {index} is out of range for an encoder of depth {depth}")
            resolved.append(index % depth)
        return resolved

    def forward(
        self,
        pixel_values: torch.Tensor,
        context_indices: torch.Tensor | None = None,
        output_layers: Sequence[int] | None = None,
    ) -> VJEPA2EncoderOutput:
        """Encode a clip, or only its context tokens.

        Args:
            pixel_values: `(B, T, C, H, W)` video or `(B, C, H, W)` image.
            context_indices: optional `(B, N)` indices into the flattened `(t, h, w)` token grid (t outermost);
                only those tokens are embedded and encoded.
            output_layers: 0-based block indices (negative allowed) whose normalized outputs are also returned.
        """
        video = self._video(pixel_values)
        grid = self._grid(video)
        if context_indices is not None:
            context_indices = check_token_indices(context_indices, video.shape[0], grid[0] * grid[1] * grid[2])
            context_indices = context_indices.to(video.device)
        wanted = self._resolve_layers(output_layers)

        hidden_states = self.embeddings(video, context_indices)
        rope = rope_tables(token_positions(grid, context_indices, video.device), self.head_dim, hidden_states.dtype)
        captured = {}
        for index, block in enumerate(self.layer):
            hidden_states = block(hidden_states, rope.cos, rope.signed_sin)
            if index in wanted:
                captured[index] = self.layernorm(hidden_states)
        return VJEPA2EncoderOutput(
            last_hidden_state=self.layernorm(hidden_states),
            intermediate_hidden_states=tuple(captured[i] for i in wanted) if wanted else None,
            grid_size=grid,
        )
