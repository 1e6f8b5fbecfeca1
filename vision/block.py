"""Pre-norm transformer block shared by the V-JEPA 2 encoder and predictor."""

import torch
from torch import nn
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer

from vjepa_vlm.vision.attention import RopeSelfAttention
from vjepa_vlm.vision.rope import RopeTables


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch of a sample with probability `drop_prob` in training.

    Args:
        drop_prob: probability of dropping the branch.
    """

    def __init__(self, drop_prob: float):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, branch: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return branch
        keep_prob = 1.0 - self.drop_prob
        keep = branch.new_empty((branch.shape[0],) + (1,) * (branch.ndim - 1)).bernoulli_(keep_prob)
        return branch * keep / keep_prob


class MLP(nn.Module):
    """Two-layer feed-forward network.

    Args:
        hidden_size: input and output width.
        mlp_ratio: inner width / `hidden_size` (Table 12).
        hidden_act: activation name understood by transformers' `ACT2FN` ("gelu" in the paper).
    """

    def __init__(self, hidden_size: int, mlp_ratio: float, hidden_act: str = "gelu"):
        super().__init__()
        inner = int(hidden_size * mlp_ratio)
        self.fc1 = nn.Linear(hidden_size, inner)
        self.activation = ACT2FN[hidden_act]
        self.fc2 = nn.Linear(inner, hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1(hidden_states)))


class VJEPA2Block(GradientCheckpointingLayer):
    """LayerNorm -> RoPE self-attention -> residual, LayerNorm -> MLP -> residual.

    Args:
        config: the model config, whose `_attn_implementation` the attention follows.
        hidden_size: token width.
        num_heads: attention heads.
        mlp_ratio: MLP inner width / `hidden_size`.
        depth_index: 1-based position of the block in its stack; scales the init of its residual projections.
        qkv_bias: bias on the query/key/value projections.
        layer_norm_eps: LayerNorm epsilon.
        drop_path: stochastic-depth probability of this block.
        attention_dropout: attention-probability dropout.
        hidden_act: MLP activation.
    """

    def __init__(
        self,
        config,
        hidden_size: int,
        num_heads: int,
        mlp_ratio: float,
        depth_index: int,
        qkv_bias: bool = True,
        layer_norm_eps: float = 1e-6,
        drop_path: float = 0.0,
        attention_dropout: float = 0.0,
        hidden_act: str = "gelu",
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.attention = RopeSelfAttention(config, hidden_size, num_heads, qkv_bias=qkv_bias, dropout=attention_dropout)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.mlp = MLP(hidden_size, mlp_ratio, hidden_act)
        # Read by the model's weight init: the reference scales residual output projections by 1 / sqrt(2 * depth).
        for projection in (self.attention.proj, self.mlp.fc2):
            projection.residual_depth = depth_index

    def forward(
        self,
        hidden_states: torch.Tensor,
        rope_cos: torch.Tensor,
        rope_signed_sin: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`attention_mask`: optional boolean `(N, N)` pattern, True where a token may attend (None: all tokens)."""
        # The tables (and the mask) travel as positional tensors so gradient checkpointing can replay the block.
        rope = RopeTables(cos=rope_cos, signed_sin=rope_signed_sin)
        attended = self.attention(self.norm1(hidden_states), rope, attention_mask)
        hidden_states = hidden_states + self.drop_path(attended)
        return hidden_states + self.drop_path(self.mlp(self.norm2(hidden_states)))


def drop_path_schedule(max_rate: float, depth: int) -> list[float]:
    """Linear stochastic-depth ramp from 0 at the first block to `max_rate` at the last."""
    if depth == 1:
        return [0.0]
    return [max_rate * i / (depth - 1) for i in range(depth)]


def build_blocks(config, depth: int, hidden_size: int, num_heads: int, mlp_ratio: float) -> nn.ModuleList:
    """A stack of `depth` blocks with the stochastic-depth ramp applied, attending as `config` says.

    Width, depth, heads and MLP ratio differ between the encoder and the predictors that share one config, so they are
    arguments; the remaining block settings (`drop_path_rate`, `qkv_bias`, `layer_norm_eps`,
    `attention_probs_dropout_prob`, `hidden_act`) are read from `config`.
    """
    rates = drop_path_schedule(config.drop_path_rate, depth)
    return nn.ModuleList(
        VJEPA2Block(
            config,
            hidden_size,
            num_heads,
            mlp_ratio,
            depth_index=i + 1,
            drop_path=rates[i],
            qkv_bias=config.qkv_bias,
            layer_norm_eps=config.layer_norm_eps,
            attention_dropout=config.attention_probs_dropout_prob,
            hidden_act=config.hidden_act,
        )
        for i in range(depth)
    )
