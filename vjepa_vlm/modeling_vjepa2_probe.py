"""V-JEPA 2 with a frozen-feature attentive probe (section 5, appendix C.1) as a Hugging Face model.

The probe is four transformer blocks: three self-attention blocks over the encoder tokens, then one whose
attention is a cross-attention from a single learnable query, followed by a linear classifier. Module
names follow transformers' `VJEPA2ForVideoClassification` (`vjepa2.*`, `pooler.*`, `classifier.*`), so
its published checkpoints load here and ours load there when the probe reads only the last layer.

Three optional config attributes extend the transformers layout:
- `pooler_num_attention_heads`: probe heads (paper: 16); default `num_attention_heads`, as transformers.
- `probe_output_layers`: encoder blocks whose tokens the probe attends to, concatenated along the token
  axis (Table 16 multi-layer input); default None = the last layer only.
- `probe_position_embedding`: None (default; the reference probe, whose blocks see no token position) or
  "sincos": a fixed 3D sin/cos embedding of each token's (t, h, w) added to the probe's input tokens. The
  encoder's only positional signal is RoPE, which is relative, so its output tokens barely say where they
  are; a position-blind pooler then cannot read "the object is here at t and there at t+1". The embedding
  has no parameters, so the state dict keeps transformers' layout (transformers' class ignores the
  attribute, so its logits differ from ours for such a checkpoint).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_outputs import ImageClassifierOutput

from vjepa_vlm.configuration_vjepa2 import VJEPA2Config
from vjepa_vlm.modeling_vjepa2 import VJEPA2Model, VJEPA2PreTrainedModel
from vjepa_vlm.vision.rope import token_positions

POSITION_EMBEDDINGS = (None, "sincos")
SINCOS_BASE = 10000.0  # wavelength base of the sin/cos embedding (Vaswani et al., 2017; MAE/V-JEPA 1's 3D version)


def pooler_heads(config: VJEPA2Config) -> int:
    heads = getattr(config, "pooler_num_attention_heads", None) or config.num_attention_heads
    if config.hidden_size % heads:
        raise ValueError(f"pooler_num_attention_heads={heads} must divide hidden_size={config.hidden_size}")
    return heads


def probe_position_embedding(config: VJEPA2Config) -> str | None:
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


class PoolerMLP(nn.Module):
    """Two-layer MLP with one activation (named like transformers' `VJEPA2MLP`)."""

    def __init__(self, hidden_size: int, mlp_ratio: float, hidden_act: str):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, int(hidden_size * mlp_ratio))
        self.activation = ACT2FN[hidden_act]
        self.fc2 = nn.Linear(int(hidden_size * mlp_ratio), hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1(hidden_states)))


class PoolerAttention(nn.Module):
    """Multi-head attention of the probe; the cross-attention variant has no output projection, as in
    the reference implementation.

    Args:
        hidden_size: token width.
        num_heads: attention heads.
        output_projection: add `out_proj` (self-attention blocks) or not (the final cross-attention).
    """

    def __init__(self, hidden_size: int, num_heads: int, output_projection: bool):
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = nn.Linear(hidden_size, hidden_size)
        self.k_proj = nn.Linear(hidden_size, hidden_size)
        self.v_proj = nn.Linear(hidden_size, hidden_size)
        if output_projection:
            self.out_proj = nn.Linear(hidden_size, hidden_size)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)

    def _few_query_attention(self, queries: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The same attention, computed in token space: for a handful of queries, folding each query
        into the key projection and pooling tokens before the value projection avoids projecting all
        N tokens (N·D² work) and costs N·D per query and head. The key bias only shifts every score of
        a query equally, so softmax ignores it; the value bias passes through since weights sum to 1."""
        heads, width = self.num_heads, tokens.shape[-1]
        query = self._split(self.q_proj(queries))  # (B, H, M, d)
        key_weight = self.k_proj.weight.view(heads, -1, width)  # (H, d, D)
        folded = torch.einsum("bhmd,hdc->bhmc", query, key_weight)
        scores = torch.einsum("bhmc,bnc->bhmn", folded, tokens) * key_weight.shape[1] ** -0.5
        pooled = torch.einsum("bhmn,bnc->bhmc", scores.softmax(dim=-1), tokens)
        values = torch.einsum("bhmc,hdc->bhmd", pooled, self.v_proj.weight.view(heads, -1, width))
        values = values + self.v_proj.bias.view(heads, 1, -1)
        return values.transpose(1, 2).flatten(2)

    def forward(self, queries: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        if 2 * queries.shape[1] * self.num_heads <= tokens.shape[-1] and not hasattr(self, "out_proj"):
            return self._few_query_attention(queries, tokens)
        attended = F.scaled_dot_product_attention(
            self._split(self.q_proj(queries)), self._split(self.k_proj(tokens)), self._split(self.v_proj(tokens))
        )
        attended = attended.transpose(1, 2).flatten(2)
        return self.out_proj(attended) if hasattr(self, "out_proj") else attended


class PoolerSelfAttentionLayer(nn.Module):
    """Pre-norm self-attention block (`layer_norm1`, `self_attn`, `layer_norm2`, `mlp`)."""

    def __init__(self, config: VJEPA2Config):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attn = PoolerAttention(config.hidden_size, pooler_heads(config), output_projection=True)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = PoolerMLP(config.hidden_size, 4.0, config.hidden_act)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        normed = self.layer_norm1(hidden_states)
        hidden_states = hidden_states + self.self_attn(normed, normed)
        return hidden_states + self.mlp(self.layer_norm2(hidden_states))


class PoolerCrossAttentionLayer(nn.Module):
    """The final block: the query attends to the normalized tokens; its output is added back to the
    query (residual) before LayerNorm and MLP (appendix C.1)."""

    def __init__(self, config: VJEPA2Config):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.cross_attn = PoolerAttention(config.hidden_size, pooler_heads(config), output_projection=False)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = PoolerMLP(config.hidden_size, 4.0, config.hidden_act)

    def forward(self, queries: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        hidden_states = queries + self.cross_attn(queries, self.layer_norm1(tokens))
        return hidden_states + self.mlp(self.layer_norm2(hidden_states))


class VJEPA2AttentivePooler(nn.Module):
    """`num_pooler_layers` self-attention blocks, then cross-attention from one learnable query token.

    Args:
        config: a `VJEPA2Config`; reads `hidden_size`, `num_pooler_layers` (3 -> a 4-block probe),
            `pooler_num_attention_heads`, `probe_position_embedding`, `layer_norm_eps`, `hidden_act`.
    """

    def __init__(self, config: VJEPA2Config):
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


class VJEPA2ProbeHead(nn.Module):
    """Attentive pooler + linear classifier: the trainable part of a frozen-encoder probe.

    Args:
        config: a `VJEPA2Config` with `num_labels`.
    """

    def __init__(self, config: VJEPA2Config):
        super().__init__()
        self.pooler = VJEPA2AttentivePooler(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, tokens: torch.Tensor, grid_size: tuple[int, int, int] | None = None) -> torch.Tensor:
        return self.classifier(self.pooler(tokens, grid_size))


def probe_tokens(encoder: nn.Module, pixel_values: torch.Tensor, output_layers: list[int] | None) -> torch.Tensor:
    """Encoder tokens the probe reads: the last layer, or several layers concatenated along tokens."""
    if not output_layers:
        return encoder(pixel_values).last_hidden_state
    return torch.cat(encoder(pixel_values, output_layers=output_layers).intermediate_hidden_states, dim=1)


class VJEPA2ForVideoClassification(VJEPA2PreTrainedModel):
    """V-JEPA 2 encoder + attentive probe for video (and image, via frame repetition) classification.

    Args:
        config: a `VJEPA2Config` with `num_labels` (and optionally `id2label`,
            `pooler_num_attention_heads`, `probe_output_layers`, `probe_position_embedding`).
    """

    _no_split_modules = ["VJEPA2Block", "PoolerSelfAttentionLayer", "PoolerCrossAttentionLayer"]

    def __init__(self, config: VJEPA2Config):
        super().__init__(config)
        self.vjepa2 = VJEPA2Model(config)
        self.pooler = VJEPA2AttentivePooler(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, VJEPA2AttentivePooler):
            init.trunc_normal_(module.query_tokens, std=self.config.initializer_range)

    def load_probe_head(self, head: VJEPA2ProbeHead) -> None:
        """Copy a trained probe head (e.g. the best of a sweep) into this model."""
        self.pooler.load_state_dict(head.pooler.state_dict())
        self.classifier.load_state_dict(head.classifier.state_dict())

    def forward(
        self, pixel_values_videos: torch.Tensor, labels: torch.Tensor | None = None, **kwargs
    ) -> ImageClassifierOutput:
        """Classify `(B, T, C, H, W)` clips (or `(B, C, H, W)` images); cross-entropy loss when `labels`.

        For multi-clip × multi-view inference, run each clip/view and average the logits
        (`vjepa_vlm.eval.probe.average_logits`).
        """
        if kwargs:
            raise TypeError(f"VJEPA2ForVideoClassification.forward got unsupported arguments {sorted(kwargs)}")
        encoder = self.vjepa2.encoder
        tokens = probe_tokens(encoder, pixel_values_videos, getattr(self.config, "probe_output_layers", None))
        logits = self.classifier(self.pooler(tokens, encoder.grid_size(pixel_values_videos)))
        loss = None
        if labels is not None:
            if labels.shape != logits.shape[:1]:
                raise ValueError(f"labels must have shape (B={logits.shape[0]},), got {tuple(labels.shape)}")
            loss = F.cross_entropy(logits, labels)
        return ImageClassifierOutput(loss=loss, logits=logits)


__all__ = ["VJEPA2AttentivePooler", "VJEPA2ForVideoClassification", "VJEPA2ProbeHead", "probe_tokens"]
