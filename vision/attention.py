"""Multi-head self-attention with 3D RoPE, dispatched to flash-attn on CUDA when installed, else torch SDPA."""

import torch
import torch.nn.functional as F
from torch import nn

from vjepa_vlm.vision.rope import RopeTables, apply_rope

try:  # optional `gpu` extra
    from flash_attn import flash_attn_func
except ImportError:
    flash_attn_func = None

_FLASH_DTYPES = (torch.float16, torch.bfloat16)


def attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, dropout_p: float = 0.0) -> torch.Tensor:
    """Bidirectional attention over `(B, H, N, head_dim)` tensors, returned in the same layout."""
    if flash_attn_func is not None and query.is_cuda and query.dtype in _FLASH_DTYPES:
        out = flash_attn_func(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), dropout_p=dropout_p)
        return out.transpose(1, 2)
    return F.scaled_dot_product_attention(query, key, value, dropout_p=dropout_p)


class RopeSelfAttention(nn.Module):
    """Self-attention whose queries and keys are rotated by precomputed 3D RoPE tables.

    The projections are separate `query`/`key`/`value` linears, the layout of transformers' checkpoints. (Fusing them
    per call costs a weight copy that outweighs the saved matmul launches when few tokens are encoded.)

    Args:
        hidden_size: token width.
        num_heads: number of attention heads; must divide `hidden_size`.
        qkv_bias: bias on the query/key/value projections.
        dropout: attention-probability dropout, applied in training only.
    """

    def __init__(self, hidden_size: int, num_heads: int, qkv_bias: bool = True, dropout: float = 0.0):
        super().__init__()
        if hidden_size % num_heads != 0:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.dropout = dropout
        self.query = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.key = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.value = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, hidden_states: torch.Tensor, rope: RopeTables) -> torch.Tensor:
        batch, tokens, width = hidden_states.shape

        def heads(projection: nn.Linear) -> torch.Tensor:
            return projection(hidden_states).view(batch, tokens, self.num_heads, self.head_dim).transpose(1, 2)

        query, key = apply_rope(heads(self.query), rope), apply_rope(heads(self.key), rope)
        out = attend(query, key, heads(self.value), dropout_p=self.dropout if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, width))
