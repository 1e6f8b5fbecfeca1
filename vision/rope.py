"""3D rotary position embedding (Sec. 2.1): the one place where token positions and their sin/cos are computed.

Each head dimension is split into three equal even segments for the time, height and width axes (what is left over
passes through unrotated). Within a segment of width `d`, the reference implementation pairs adjacent features
`(x[2i], x[2i+1])` for the rotation but lays the angles out as `[f_0 .. f_{d/2-1}, f_0 .. f_{d/2-1}]` instead of
repeating each angle twice. The published checkpoints were trained with that layout, so it is reproduced here.
"""

from dataclasses import dataclass

import torch

ROPE_THETA = 10000.0  # base of the 1D RoPE frequencies (Su et al., 2024), as in the reference implementation


@dataclass(frozen=True)
class RopeTables:
    """Per-token rotation tables, shared by every attention layer of one forward pass.

    Args:
        cos: `(B or 1, 1, N, R)` cosines, `R` = number of rotated features per head.
        signed_sin: `(B or 1, 1, N, R)` sines, negated at even features so that a rotation is
            `x * cos + swap_pairs(x) * signed_sin`.
    """

    cos: torch.Tensor
    signed_sin: torch.Tensor


def rope_axis_dim(head_dim: int) -> int:
    """Width of each of the three rotated segments: the largest even number <= head_dim / 3."""
    return 2 * ((head_dim // 3) // 2)


def token_positions(
    grid_size: tuple[int, int, int], indices: torch.Tensor | None = None, device: torch.device | None = None
) -> torch.Tensor:
    """(t, h, w) coordinates of tokens of a flattened tubelet grid (t outermost, then h, then w).

    Args:
        grid_size: `(t, h, w)` number of tubelets along each axis of the actual input.
        indices: optional `(B, N)` indices into the flattened grid; all `t*h*w` tokens when None.
        device: device of the result when `indices` is None.

    Returns:
        Integer tensor `(B or 1, N, 3)`.
    """
    _, height, width = grid_size
    if indices is None:
        indices = torch.arange(grid_size[0] * height * width, device=device).unsqueeze(0)
    tokens_per_frame = height * width
    within_frame = indices % tokens_per_frame
    return torch.stack((indices // tokens_per_frame, within_frame // width, within_frame % width), dim=-1)


def rope_tables(positions: torch.Tensor, head_dim: int, dtype: torch.dtype) -> RopeTables:
    """sin/cos of every token for every rotated feature, computed in fp32 and cast once to `dtype`.

    Args:
        positions: `(B, N, 3)` coordinates from `token_positions`.
        head_dim: attention head dimension.
        dtype: dtype of the queries/keys the tables will rotate.
    """
    axis_dim = rope_axis_dim(head_dim)
    exponents = torch.arange(axis_dim // 2, dtype=torch.float32, device=positions.device) / (axis_dim / 2.0)
    inv_freq = 1.0 / ROPE_THETA**exponents
    angles = positions.to(torch.float32).unsqueeze(-1) * inv_freq  # (B, N, 3, axis_dim / 2)
    angles = torch.cat((angles, angles), dim=-1).flatten(-2).unsqueeze(1)  # (B, 1, N, 3 * axis_dim)
    signs = torch.tensor([-1.0, 1.0], device=positions.device).repeat(angles.shape[-1] // 2)
    return RopeTables(cos=angles.cos().to(dtype), signed_sin=(angles.sin() * signs).to(dtype))


def apply_rope(x: torch.Tensor, tables: RopeTables) -> torch.Tensor:
    """Rotate the leading `R` features of every head of `x` (`(..., B, H, N, head_dim)`); the rest pass through."""
    rotated_dim = tables.cos.shape[-1]
    rotated, passthrough = x[..., :rotated_dim], x[..., rotated_dim:]
    swapped = rotated.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)  # (x1, x0, x3, x2, ...)
    rotated = rotated * tables.cos + swapped * tables.signed_sin
    if passthrough.shape[-1] == 0:
        return rotated
    return torch.cat((rotated, passthrough), dim=-1)
