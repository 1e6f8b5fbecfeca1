"""Projectors from V-JEPA 2 patch features to LLM input embeddings (appendix E).

Both take encoder features `(num_clips, t * h * w, vision_dim)` ordered (t, h, w) with the grid `(t, h, w)`
and return `(num_clips, t * tokens_per_tubelet, text_dim)`, still in temporal order.

The attentive pooler's attention is the one pooler attention (`vjepa_vlm.vision.attentive_pooler.PoolerAttention`),
dispatched by `vision_config._attn_implementation` like the encoder it reads. Decision on its saved layout: the state
dict keeps the keys of the `nn.MultiheadAttention` it replaced (`cross_attention.in_proj_weight`,
`cross_attention.in_proj_bias`, `cross_attention.out_proj.*`), in the same parameter order, so VLM checkpoints and
training states saved before load unchanged and no conversion step exists that could silently go wrong.
"""

import math

import torch
from torch import nn
from transformers.activations import ACT2FN

from vjepa_vlm.configuration_vjepa2_vlm import VJEPA2VLMConfig
from vjepa_vlm.vision.attentive_pooler import PoolerAttention


class VJEPA2VLMMLPProjector(nn.Module):
    """Two-layer MLP, then optional spatial average pooling of each tubelet's token grid.

    With `pooling_ratio` 1, one LLM token per patch token: the scaling setup (appendix E.3, "MLP projector without
    pooling"). With `pooling_ratio` k * k, PerceptionLM's projector (Cho et al., 2025): the MLP maps every patch
    token, then a k x k average over the (h, w) grid of each tubelet keeps `h * w / k^2` tokens, in (t, h, w) order.
    The MLP runs before the pooling, as in PerceptionLM, so the average is taken over LLM-space tokens.

    Args:
        config: the VLM config; reads the vision width, the number of feature layers, the text width and
            `pooling_ratio` (a square whose root divides the patch grid's side, checked by the config).
    """

    def __init__(self, config: VJEPA2VLMConfig):
        super().__init__()
        in_features = config.vision_config.hidden_size * len(config.feature_layers)
        text_dim = config.text_config.hidden_size
        self.linear_1 = nn.Linear(in_features, text_dim)
        self.act = ACT2FN[config.projector_hidden_act]
        self.linear_2 = nn.Linear(text_dim, text_dim)
        self.window = math.isqrt(config.pooling_ratio)

    def forward(self, features: torch.Tensor, grid_size: tuple[int, int, int]) -> torch.Tensor:
        tokens = self.linear_2(self.act(self.linear_1(features)))
        if self.window == 1:
            return tokens
        num_clips, _, dim = tokens.shape
        t, h, w = grid_size
        grids = tokens.reshape(num_clips * t, h, w, dim).permute(0, 3, 1, 2)
        pooled = nn.functional.avg_pool2d(grids, self.window)
        return pooled.flatten(2).transpose(1, 2).reshape(num_clips, -1, dim)


class VJEPA2VLMAttentivePooler(nn.Module):
    """Learnable queries cross-attending to the patch tokens of each tubelet: the controlled setup (Table 21).

    Every tubelet (two frames of a video, or one image tile) of `h * w` patch tokens becomes
    `h * w / pooling_ratio` tokens, so the token count scales with frames and tiles exactly like the MLP's,
    divided by the ratio. The block is V-JEPA's attentive probe (query cross-attention + residual MLP, Bardes
    et al., 2024) followed by a linear map to the LLM width.

    Args:
        config: the VLM config; reads the vision width/heads, `tokens_per_tubelet` and the text width.
    """

    def __init__(self, config: VJEPA2VLMConfig):
        super().__init__()
        vision = config.vision_config
        dim = vision.hidden_size * len(config.feature_layers)
        self.num_queries = config.tokens_per_tubelet
        self.queries = nn.Parameter(torch.zeros(1, self.num_queries, dim))
        nn.init.trunc_normal_(self.queries, std=vision.initializer_range)
        self.norm_keys = nn.LayerNorm(dim, eps=vision.layer_norm_eps)
        # Heads follow the encoder's (64-dim heads for every V-JEPA 2 size), scaled by the number of feature layers.
        self.cross_attention = PoolerAttention(
            vision, dim, vision.num_attention_heads, output_projection=True, packed_projection=True
        )
        self.norm_mlp = nn.LayerNorm(dim, eps=vision.layer_norm_eps)
        hidden = int(dim * vision.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), ACT2FN[config.projector_hidden_act], nn.Linear(hidden, dim))
        self.to_text = nn.Linear(dim, config.text_config.hidden_size)

    def forward(self, features: torch.Tensor, grid_size: tuple[int, int, int]) -> torch.Tensor:
        num_clips, _, dim = features.shape
        t, h, w = grid_size
        tubelets = features.reshape(num_clips * t, h * w, dim)
        keys = self.norm_keys(tubelets)
        queries = self.queries.expand(tubelets.shape[0], -1, -1)
        pooled = self.cross_attention(queries, keys)
        pooled = pooled + self.mlp(self.norm_mlp(pooled))
        return self.to_text(pooled).reshape(num_clips, t * self.num_queries, -1)


def build_projector(config: VJEPA2VLMConfig) -> nn.Module:
    if config.projector_type == "mlp":
        return VJEPA2VLMMLPProjector(config)
    if config.projector_type == "attentive_pooler":
        return VJEPA2VLMAttentivePooler(config)
    raise ValueError(f"projector_type must be 'mlp' or 'attentive_pooler', got {config.projector_type!r}")
