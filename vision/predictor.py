"""The V-JEPA 2 pretraining predictor: predicts encoder features of masked tokens from the context tokens.

Context tokens are projected to the predictor width, one learnable mask token is placed at every target position,
the joint sequence is sorted by grid position, run through RoPE blocks, unsorted, and the target tokens are projected
back to the encoder width (Sec. 2.1, Table 12: a ViT-s, 384 wide, 12 deep, 12 heads).
"""

import torch
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


class VJEPA2Predictor(nn.Module):
    """Mask-denoising predictor.

    Args:
        config: a `VJEPA2Config` (the `pred_*` fields, plus `hidden_size` of the encoder it predicts).
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
        return self.proj(hidden_states)
