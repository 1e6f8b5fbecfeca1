"""The attentive pooler of V-JEPA 2's frozen-feature probe (section 5, appendix C.1) and the one pooler attention.

`PoolerAttention` is the multi-head attention of every attentive pooler: the probe's
(`VJEPA2AttentivePooler`, below) and the VLM projector's (`vjepa_vlm.projector_vjepa2_vlm`). It runs through the
vision attention dispatch (`vjepa_vlm.vision.attention`), so `config._attn_implementation` chooses eager, sdpa or
flash-attn for poolers as for the encoder.

Checkpoint layouts are kept, not converted: the probe's parameters are those of transformers'
`VJEPA2ForVideoClassification` pooler (`q_proj`/`k_proj`/`v_proj`), and the projector's are those of the
`nn.MultiheadAttention` it was first saved with (`in_proj_weight`/`in_proj_bias` stacking q, k, v, and `out_proj`),
selected by `packed_projection`. Old projector checkpoints and training states (whose optimizer moments are per
parameter) therefore load as they are.

The probe pooler is four transformer blocks: three self-attention blocks over the encoder tokens, then one whose
attention is a cross-attention from a single learnable query. `probe_position_embedding` (None or "sincos") and
`pooler_num_attention_heads` are optional config attributes that transformers' class ignores (see
`vjepa_vlm.modeling_vjepa2_probe`).
"""

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.activations import ACT2FN

from vjepa_vlm.vision.attention import attend
from vjepa_vlm.vision.rope import token_positions

POSITION_EMBEDDINGS = (None, "sincos")
SINCOS_BASE = 10000.0  # wavelength base of the sin/cos embedding (Vaswani et al., 2017; MAE/V-JEPA 1's 3D version)


def pooler_heads(config) -> int:
    heads = getattr(config, "pooler_num_attention_heads", None) or config.num_attention_heads
    if config.hidden_size % heads:
        raise ValueError(f"pooler_num_attention_heads={heads} must divide hidden_size={config.hidden_size}")
    return heads


def probe_position_embedding(config) -> str | None:
    kind = getattr(config, "probe_position_embedding", None)
    if kind not in POSITION_EMBEDDINGS:
        raise ValueError(f"probe_position_embedding must be one of {POSITION_EMBEDDINGS}, got {kind!r}")
    return kind


def sincos_position_embedding(grid_size: tuple[int, int, int], dim: int, device=None) -> torch.Tensor:
    """(t*h*w, dim) fixed embedding of a flattened (t, h, w) token grid (t outermost).

    Each axis gets `2 * (dim // 6)` features, half sines and half cosines of the coordinate at geometrically
    spaced frequencies from 1 to 1/SINCOS_BASE; features left over (dim not a multiple of 6) are zero.
    """
    axis_dim = 2 * (dim // 6)
    if axis_dim == 0:
        raise ValueError(f"a 3D sin/cos position embedding needs hidden_size >= 6, got {dim}")
    frequencies = SINCOS_BASE ** -(torch.arange(axis_dim // 2, dtype=torch.float32, device=device) / (axis_dim // 2))
    angles = token_positions(grid_size, device=device)[0].to(torch.float32).unsqueeze(-1) * frequencies  # (N, 3, F)
    embedding = torch.cat((angles.sin(), angles.cos()), dim=-1).flatten(1)  # (N, 3 * axis_dim)
    return F.pad(embedding, (0, dim - embedding.shape[-1]))


class PoolerAttention(nn.Module):
    """Multi-head attention of queries over tokens (self-attention when they are the same tensor).

    Args:
        config: the config whose `_attn_implementation` selects the attention function at every call.
        hidden_size: token width.
        num_heads: attention heads; must divide `hidden_size`.
        output_projection: add `out_proj` (the probe's cross-attention has none, as in the reference implementation).
        packed_projection: hold the q/k/v projections stacked in `in_proj_weight`/`in_proj_bias`
            (`nn.MultiheadAttention`'s layout) instead of `q_proj`/`k_proj`/`v_proj`.
    """

    def __init__(
        self, config, hidden_size: int, num_heads: int, output_projection: bool, packed_projection: bool = False
    ):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of num_heads {num_heads}")
        self.config = config
        self.num_heads = num_heads
        self.packed_projection = packed_projection
        # Registration and init order are those of the modules each layout replaced, so parameter order and a
        # seeded fresh init stay as they were.
        if packed_projection:
            self.in_proj_weight = nn.Parameter(torch.empty(3 * hidden_size, hidden_size))
            self.in_proj_bias = nn.Parameter(torch.zeros(3 * hidden_size))
        else:
            self.q_proj = nn.Linear(hidden_size, hidden_size)
            self.k_proj = nn.Linear(hidden_size, hidden_size)
            self.v_proj = nn.Linear(hidden_size, hidden_size)
        if output_projection:
            self.out_proj = nn.Linear(hidden_size, hidden_size)
        if packed_projection:
            self.reset_packed_projection()

    def reset_packed_projection(self) -> None:
        """`nn.MultiheadAttention`'s init of the packed layout: Xavier-uniform weights, zero biases."""
        init.xavier_uniform_(self.in_proj_weight)
        init.zeros_(self.in_proj_bias)
        if hasattr(self, "out_proj"):
            init.zeros_(self.out_proj.bias)

    def projections(self) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        """(weight, bias) of the query, key and value projections, whichever the layout."""
        if self.packed_projection:
            return tuple(zip(self.in_proj_weight.chunk(3), self.in_proj_bias.chunk(3)))
        return tuple((linear.weight, linear.bias) for linear in (self.q_proj, self.k_proj, self.v_proj))

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)

    def _few_query_attention(self, queries: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The same softmax attention, computed in token space: for a handful of queries, folding each query
        into the key projection and pooling tokens before the value projection avoids projecting all
        N tokens (N·D² work) and costs N·D per query and head. The key bias only shifts every score of
        a query equally, so softmax ignores it; the value bias passes through since weights sum to 1."""
        (query_weight, query_bias), (key_weight, _), (value_weight, value_bias) = self.projections()
        heads, width = self.num_heads, tokens.shape[-1]
        query = self._split(F.linear(queries, query_weight, query_bias))  # (B, H, M, d)
        key_weight = key_weight.view(heads, -1, width)  # (H, d, D)
        folded = torch.einsum("bhmd,hdc->bhmc", query, key_weight)
        scores = torch.einsum("bhmc,bnc->bhmn", folded, tokens) * key_weight.shape[1] ** -0.5
        pooled = torch.einsum("bhmn,bnc->bhmc", scores.softmax(dim=-1), tokens)
        values = torch.einsum("bhmc,hdc->bhmd", pooled, value_weight.view(heads, -1, width))
        values = values + value_bias.view(heads, 1, -1)
        return values.transpose(1, 2).flatten(2)

    def forward(self, queries: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """`(B, M, D)` queries attend to `(B, N, D)` tokens -> `(B, M, D)`."""
        has_output_projection = hasattr(self, "out_proj")
        # The token-space path is exact softmax attention too; it is the probe's speed path (one query, many
        # frozen tokens), taken whatever the implementation, since no fused kernel avoids projecting every token.
        if 2 * queries.shape[1] * self.num_heads <= tokens.shape[-1] and not has_output_projection:
            return self._few_query_attention(queries, tokens)
        (query_weight, query_bias), (key_weight, key_bias), (value_weight, value_bias) = self.projections()
        attended = attend(
            self,
            self._split(F.linear(queries, query_weight, query_bias)),
            self._split(F.linear(tokens, key_weight, key_bias)),
            self._split(F.linear(tokens, value_weight, value_bias)),
            dropout=0.0,
        )
        return self.out_proj(attended) if has_output_projection else attended


class PoolerMLP(nn.Module):
    """Two-layer MLP with one activation (named like transformers' `VJEPA2MLP`)."""

    def __init__(self, hidden_size: int, mlp_ratio: float, hidden_act: str):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, int(hidden_size * mlp_ratio))
        self.activation = ACT2FN[hidden_act]
        self.fc2 = nn.Linear(int(hidden_size * mlp_ratio), hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1(hidden_states)))


class PoolerSelfAttentionLayer(nn.Module):
    """Pre-norm self-attention block (`layer_norm1`, `self_attn`, `layer_norm2`, `mlp`)."""

    def __init__(self, config):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attn = PoolerAttention(config, config.hidden_size, pooler_heads(config), output_projection=True)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = PoolerMLP(config.hidden_size, 4.0, config.hidden_act)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        normed = self.layer_norm1(hidden_states)
        hidden_states = hidden_states + self.self_attn(normed, normed)
        return hidden_states + self.mlp(self.layer_norm2(hidden_states))


class PoolerCrossAttentionLayer(nn.Module):
    """The final block: the query attends to the normalized tokens; its output is added back to the
    query (residual) before LayerNorm and MLP (appendix C.1)."""

    def __init__(self, config):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.cross_attn = PoolerAttention(config, config.hidden_size, pooler_heads(config), output_projection=False)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = PoolerMLP(config.hidden_size, 4.0, config.hidden_act)

    def forward(self, queries: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        hidden_states = queries + self.cross_attn(queries, self.layer_norm1(tokens))
        return hidden_states + self.mlp(self.layer_norm2(hidden_states))


class VJEPA2AttentivePooler(nn.Module):
    """`num_pooler_layers` self-attention blocks, then cross-attention from one learnable query token.

    Args:
        config: a `VJEPA2Config`; reads `hidden_size`, `num_pooler_layers` (3 -> a 4-block probe),
            `pooler_num_attention_heads`, `probe_position_embedding`, `layer_norm_eps`, `hidden_act` and
            `_attn_implementation`.
    """

    def __init__(self, config):
        super().__init__()
        self.position_embedding = probe_position_embedding(config)
        self.query_tokens = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.cross_attention_layer = PoolerCrossAttentionLayer(config)
        self.self_attention_layers = nn.ModuleList(
            [PoolerSelfAttentionLayer(config) for _ in range(config.num_pooler_layers)]
        )

    def forward(self, tokens: torch.Tensor, grid_size: tuple[int, int, int] | None = None) -> torch.Tensor:
        """(B, N, D) tokens -> (B, D) pooled feature.

        `grid_size` is the encoder's `(t, h, w)` token grid, needed with a position embedding; N may be
        several grids (multi-layer input), each getting the same positions.
        """
        if self.position_embedding is not None:
            tokens = tokens + self._positions(tokens, grid_size)
        for layer in self.self_attention_layers:
            tokens = layer(tokens)
        queries = self.query_tokens.expand(tokens.shape[0], -1, -1)
        return self.cross_attention_layer(queries, tokens).squeeze(1)

    def _positions(self, tokens: torch.Tensor, grid_size: tuple[int, int, int] | None) -> torch.Tensor:
        if grid_size is None:
            raise ValueError(f"probe_position_embedding={self.position_embedding!r} needs the tokens' grid_size")
        per_grid = grid_size[0] * grid_size[1] * grid_size[2]
        if tokens.shape[1] % per_grid:
            raise ValueError(f"{tokens.shape[1]} tokens are not whole copies of a {grid_size} grid")
        embedding = sincos_position_embedding(grid_size, tokens.shape[-1], tokens.device).to(tokens.dtype)
        return embedding.repeat(tokens.shape[1] // per_grid, 1)
