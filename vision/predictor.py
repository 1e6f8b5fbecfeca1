"""The V-JEPA 2 pretraining predictor: predicts encoder features of masked tokens from the context tokens.

Context tokens are projected to the predictor width, one learnable mask token is placed at every target position,
the joint sequence is sorted by grid position, run through RoPE blocks, unsorted, and the target tokens are projected
back to the encoder width (Sec. 2.1, Table 12: a ViT-s, 384 wide, 12 deep, 12 heads).

The residual predictor (`config.pred_residual`, not in the paper, off by default) predicts a change instead of the
whole feature. A target token's prediction starts from its "copy": the context token at the same spatial position in
the latest earlier slice that holds one, layer-normed without affine parameters as the pretraining targets are. For
the future masks of pretraining (`temporal_position="end"`, the context is the clip's first slices) and for the
anticipation query (`VJEPA2ForActionAnticipation`), that is the last context slice; for a target block that starts
mid-clip it is the slice just before the block. A target with no earlier context token at its position (a block at
the clip's start, or a position masked in every earlier slice) keeps the plain prediction from its mask token. The
output projection starts at zero, so an untrained residual predictor is exactly the copy baseline. The copy is a
skip connection of the predictor, gradients included: it keeps the online encoder's context features in the
targets' space. Detached, it let them drift: fine-tuning the shared-course checkpoint with a detached copy, the
online copy's L1 distance to the targets went from 0.14 to 0.72 in 200 steps and the loss rose (BENCHMARKS.md,
"Action anticipation, tiny scale", residual predictor).
"""

import torch
import torch.nn.functional as F
from torch import nn

from vjepa_vlm.vision.block import build_blocks
from vjepa_vlm.vision.encoder import check_token_indices
from vjepa_vlm.vision.rope import rope_tables, token_positions


class VJEPA2PredictorEmbeddings(nn.Module):
    """Context projection and mask tokens, under the module path of transformers' checkpoints.

    Args:
        config: a `VJEPA2Config` (`hidden_size`, `pred_hidden_size`, `pred_num_mask_tokens`,
            `pred_zero_init_mask_tokens`).
    """

    def __init__(self, config):
        super().__init__()
        self.zero_init_mask_tokens = config.pred_zero_init_mask_tokens
        self.predictor_embeddings = nn.Linear(config.hidden_size, config.pred_hidden_size)
        # One token per masking pattern of the multi-mask objective; (num, 1, 1, D) is the checkpoint shape.
        self.mask_tokens = nn.Parameter(torch.zeros(config.pred_num_mask_tokens, 1, 1, config.pred_hidden_size))

    def forward(self, context_tokens: torch.Tensor, num_targets: int, mask_index: int) -> torch.Tensor:
        """`(B, Nc + Nt, D_pred)`: projected context followed by `num_targets` copies of mask token `mask_index`."""
        context = self.predictor_embeddings(context_tokens)
        token = self.mask_tokens[mask_index % self.mask_tokens.shape[0]].to(context.dtype)
        targets = token.expand(context.shape[0], num_targets, -1)
        return torch.cat((context, targets), dim=1)


def previous_context_positions(
    context_indices: torch.Tensor, target_indices: torch.Tensor, grid_size: tuple[int, int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each target token's copy comes from (the residual predictor's start).

    Args:
        context_indices: `(B, Nc)` grid indices of the context tokens (t outermost, as everywhere).
        target_indices: `(B, Nt)` grid indices of the target tokens.
        grid_size: `(t, h, w)` grid the indices refer to.

    Returns:
        `(positions (B, Nt), found (B, Nt))`: the position in `context_indices` of the context token at the target's
        spatial position in the latest slice before the target's slice, and whether there is one (position 0 where
        not).
    """
    slices, height, width = grid_size
    per_slice = height * width
    batch, num_context = context_indices.shape
    device = context_indices.device
    position_at = torch.full((batch, slices * per_slice), -1, dtype=torch.long, device=device)
    position_at.scatter_(1, context_indices, torch.arange(num_context, device=device).expand(batch, -1))
    slice_ids = torch.arange(slices, device=device).view(1, -1, 1)
    # The latest context slice at or before each slice, per spatial position, then shifted one slice: strictly before.
    latest = torch.where(position_at.view(batch, slices, per_slice) >= 0, slice_ids, -1).cummax(dim=1).values
    before = torch.cat((latest.new_full((batch, 1, per_slice), -1), latest[:, :-1]), dim=1).flatten(1)
    source_slice = before.gather(1, target_indices)
    found = source_slice >= 0
    source = source_slice.clamp(min=0) * per_slice + target_indices % per_slice
    return position_at.gather(1, source).clamp(min=0), found


class VJEPA2Predictor(nn.Module):
    """Mask-denoising predictor.

    Args:
        config: a `VJEPA2Config` (the `pred_*` fields, plus `hidden_size` of the encoder it predicts);
            `pred_residual` makes it the residual predictor of the module docstring.
    """

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.head_dim = config.pred_hidden_size // config.pred_num_attention_heads
        self.embeddings = VJEPA2PredictorEmbeddings(config)
        self.layer = build_blocks(
            config,
            config.pred_num_hidden_layers,
            config.pred_hidden_size,
            config.pred_num_attention_heads,
            config.pred_mlp_ratio,
        )
        self.layernorm = nn.LayerNorm(config.pred_hidden_size, eps=config.layer_norm_eps)
        self.proj = nn.Linear(config.pred_hidden_size, config.hidden_size)
        self.residual = getattr(config, "pred_residual", False)
        # The model's weight init reads the mark: an untrained residual predictor is exactly the copy.
        self.proj.zero_init = self.residual

    def forward(
        self,
        context_tokens: torch.Tensor,
        context_indices: torch.Tensor,
        target_indices: torch.Tensor,
        grid_size: tuple[int, int, int],
        mask_index: int = 1,
    ) -> torch.Tensor:
        """Predict the encoder features of the target tokens.

        Args:
            context_tokens: `(B, Nc, D_encoder)` encoder outputs of the context tokens.
            context_indices: `(B, Nc)` grid indices of the context tokens.
            target_indices: `(B, Nt)` grid indices to predict.
            grid_size: `(t, h, w)` tubelet grid the indices refer to (the encoder output's `grid_size`).
            mask_index: which learnable mask token to use (the reference implementation defaults to 1).

        Returns:
            `(B, Nt, D_encoder)` predictions, in the order of `target_indices`.
        """
        if context_tokens.ndim != 3 or context_tokens.shape[-1] != self.config.hidden_size:
            raise ValueError(
                f"context_tokens must be (B, Nc, {self.config.hidden_size}), got {tuple(context_tokens.shape)}"
            )
        batch, num_context, _ = context_tokens.shape
        num_tokens = grid_size[0] * grid_size[1] * grid_size[2]
        context_indices = check_token_indices(context_indices, batch, num_tokens, "context_indices")
        target_indices = check_token_indices(target_indices, batch, num_tokens, "target_indices")
        if context_indices.shape[1] != num_context:
            raise ValueError(f"context_indices has {context_indices.shape[1]} tokens, context_tokens has {num_context}")
        device = context_tokens.device
        indices = torch.cat((context_indices, target_indices), dim=1).to(device)

        hidden_states = self.embeddings(context_tokens, target_indices.shape[1], mask_index)
        order = indices.argsort(dim=1)
        indices = indices.gather(1, order)
        hidden_states = hidden_states.gather(1, order.unsqueeze(-1).expand_as(hidden_states))

        rope = rope_tables(token_positions(grid_size, indices), self.head_dim, hidden_states.dtype)
        for block in self.layer:
            hidden_states = block(hidden_states, rope.cos, rope.signed_sin)
        hidden_states = self.layernorm(hidden_states)

        target_slots = order.argsort(dim=1)[:, num_context:]
        hidden_states = hidden_states.gather(1, target_slots.unsqueeze(-1).expand(-1, -1, hidden_states.shape[-1]))
        predicted = self.proj(hidden_states)
        if not self.residual:
            return predicted
        positions, found = previous_context_positions(context_indices.to(device), target_indices.to(device), grid_size)
        copied = context_tokens.gather(1, positions.unsqueeze(-1).expand(-1, -1, context_tokens.shape[-1]))
        copied = F.layer_norm(copied, copied.shape[-1:])
        return predicted + copied.to(predicted.dtype) * found.unsqueeze(-1).to(predicted.dtype)
