"""The one attention dispatch of the vision modules, and the encoder/predictor's RoPE self-attention.

Every attention of the encoder, the predictor and the attentive poolers goes through `attention_function(config)`,
which follows `config._attn_implementation` as transformers' models do: `ALL_ATTENTION_FUNCTIONS.get_interface`
picks transformers' own "sdpa" / "flash_attention_2" functions, and "eager" is `eager_attention_forward`, the
explicit softmax(QK^T)V reference path. A config that never went through a `PreTrainedModel` (a module built
alone) has no implementation set; it gets "sdpa", transformers' default. flash-attn is used only when asked for.
"""

from collections.abc import Callable

import torch
from torch import nn
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import is_flash_attn_2_available

from vjepa_vlm.vision.rope import RopeTables, apply_rope

ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2")
DEFAULT_IMPLEMENTATION = "sdpa"


def check_attn_implementation(implementation: str | None) -> str:
    """The implementation the vision modules will run for a requested `attn_implementation` (None -> "sdpa").

    Raises ValueError for an implementation they do not support and ImportError for "flash_attention_2" without the
    `flash_attn` package (transformers would instead fetch a kernel from the Hub, which this project never does).
    """
    implementation = implementation or DEFAULT_IMPLEMENTATION
    if implementation not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(
            f"attn_implementation={implementation!r} is not supported by the V-JEPA 2 vision modules (encoder, "
            f"predictor, attentive poolers); expected one of {ATTENTION_IMPLEMENTATIONS}. For a VLM whose LLM should "
            "use it, pass a dict such as {'text_config': ..., 'vision_config': 'sdpa'}"
        )
    if implementation == "flash_attention_2" and not is_flash_attn_2_available():
        raise ImportError(
            "attn_implementation='flash_attention_2' needs the flash-attn package (the `gpu` extra: "
            "pip install -e .[gpu]) and a CUDA device; use 'sdpa' or 'eager' otherwise"
        )
    return implementation


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(Q K^T * scaling) V over `(B, H, N, d)` tensors, the reference every other implementation must match.

    `attention_mask` is None (every query sees every key) or a boolean `(Nq, Nk)` (or broadcastable) tensor, True where
    a query may attend, as `torch.nn.functional.scaled_dot_product_attention` reads it.

    Returns `((B, N, H, d) output, (B, H, Nq, Nk) attention probabilities)`, transformers' attention-interface layout.
    """
    weights = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if attention_mask is not None:
        if attention_mask.dtype != torch.bool:
            raise TypeError(f"attention_mask must be a boolean tensor (True = attend), got {attention_mask.dtype}")
        weights = weights.masked_fill(~attention_mask, torch.finfo(weights.dtype).min)
    # Softmax in fp32 as transformers' eager paths do, so bf16/fp16 runs stay comparable with the fused kernels.
    weights = nn.functional.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


def attention_function(config) -> Callable:
    """The attention function `config._attn_implementation` asks for, read at every call so that
    `model.set_attn_implementation(...)` takes effect on a built model."""
    implementation = check_attn_implementation(config._attn_implementation)
    return ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)


def attend(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    dropout: float,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention of `(B, H, N, d)` heads through the dispatch of `module.config`; returns `(B, N, H * d)`.

    `module` must carry `config`, read by the dispatch and by transformers' flash path. `attention_mask` (boolean,
    True = attend; see `eager_attention_forward`) restricts which keys each query sees; None is bidirectional.
    """
    implementation = check_attn_implementation(module.config._attn_implementation)
    if attention_mask is not None and implementation == "flash_attention_2":
        # transformers' flash path reads a mask as key padding, so an attention pattern would be silently wrong.
        raise ValueError(
            "attn_implementation='flash_attention_2' cannot apply an attention pattern (the action-conditioned "
            "predictor's block-causal mask); use 'sdpa' or 'eager'"
        )
    out, _ = attention_function(module.config)(
        module,
        query,
        key,
        value,
        attention_mask,
        scaling=query.shape[-1] ** -0.5,
        dropout=dropout if module.training else 0.0,
        is_causal=False,
    )
    return out.flatten(2)


class RopeSelfAttention(nn.Module):
    """Self-attention whose queries and keys are rotated by precomputed 3D RoPE tables.

    The projections are separate `query`/`key`/`value` linears, the layout of transformers' checkpoints. (Fusing them
    per call costs a weight copy that outweighs the saved matmul launches when few tokens are encoded.)

    Args:
        config: the model config; its `_attn_implementation` selects the attention function at every call.
        hidden_size: token width.
        num_heads: number of attention heads; must divide `hidden_size`.
        qkv_bias: bias on the query/key/value projections.
        dropout: attention-probability dropout, applied in training only.
    """

    def __init__(self, config, hidden_size: int, num_heads: int, qkv_bias: bool = True, dropout: float = 0.0):
        super().__init__()
        if hidden_size % num_heads != 0:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of num_heads {num_heads}")
        self.config = config
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.dropout = dropout
        self.query = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.key = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.value = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.proj = nn.Linear(hidden_size, hidden_size)

    def forward(
        self, hidden_states: torch.Tensor, rope: RopeTables, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        batch, tokens, _ = hidden_states.shape

        def heads(projection: nn.Linear) -> torch.Tensor:
            return projection(hidden_states).view(batch, tokens, self.num_heads, self.head_dim).transpose(1, 2)

        query, key = apply_rope(heads(self.query), rope), apply_rope(heads(self.key), rope)
        return self.proj(attend(self, query, key, heads(self.value), self.dropout, attention_mask))
