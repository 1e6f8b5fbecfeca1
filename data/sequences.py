"""Token sequences of training samples: padding into batches and the error for samples too long to keep.

They live in the data layer because both the processor (which builds a sample) and the conversation dataset
(which skips and collates samples) need them, and the data layer must not import the processor.
"""

from collections.abc import Sequence

import torch


class SequenceTooLongError(ValueError):
    """A sample whose tokens, after placeholder expansion, exceed the maximum sequence length."""


def pad_sequences(sequences: Sequence[Sequence[int]], value: int, side: str = "right") -> torch.Tensor:
    """Stack variable-length int sequences into a (B, L) tensor padded with `value` on `side`."""
    if side not in ("left", "right"):
        raise ValueError(f"padding side must be 'left' or 'right', got {side!r}")
    length = max(len(s) for s in sequences)
    out = torch.full((len(sequences), length), value, dtype=torch.long)
    for row, seq in enumerate(sequences):
        if len(seq):
            start = length - len(seq) if side == "left" else 0
            out[row, start : start + len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    return out
