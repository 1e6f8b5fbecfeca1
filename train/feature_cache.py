"""Cache the frozen encoder's tokens across the steps of a stage: the same clip is encoded once.

When a stage does not train the vision tower (stages 1 to 3 of the frozen setup, appendix E.2), the tokens the
projector reads are a pure function of the pixels, so they can be kept instead of recomputed at every step
(each clip is revisited every epoch). Keys are the pixels themselves (shape, dtype and a BLAKE2 digest of the
bytes), so any preprocessing that changes the pixels (a random crop, another frame count) is a miss, never a
stale hit. Each item is encoded on its own on a miss; a batch the encoder ran at once can differ from that in
the last float bits (tested equal within 1e-6), nothing else.

The trainer installs it (`TrainerArgs.cache_vision_features`); `VJEPA2VLMModel.vision_features` consults it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import torch


def pixel_key(pixels: torch.Tensor) -> tuple:
    """A key that is equal exactly when two items' pixels are: shape, dtype and a digest of the bytes."""
    data = pixels.detach().contiguous().cpu()
    digest = hashlib.blake2b(data.view(torch.uint8).numpy().tobytes(), digest_size=16).hexdigest()
    return tuple(data.shape), str(data.dtype), digest


class VisionFeatureCache:
    """Per-item memo of `(features, grid)` from a deterministic (frozen, dropout-free) encoder.

    Args:
        max_bytes: stop adding entries beyond this many bytes of cached features (lookups still hit); the
            synthetic world's 2000 training clips take about 100 MB with the tiny encoder.
    """

    def __init__(self, max_bytes: int = 4 << 30):
        self.max_bytes = max_bytes
        self.entries: dict[tuple, tuple[torch.Tensor, tuple]] = {}
        self.bytes = self.hits = self.misses = 0

    def __call__(self, pixel_values: torch.Tensor, encode: Callable) -> tuple[torch.Tensor, tuple]:
        """`encode(pixel_values) -> (features (N, tokens, C), grid)` for the batch, item by item through the cache."""
        rows, grid = [], None
        for item in pixel_values:
            key = pixel_key(item)
            entry = self.entries.get(key)
            if entry is None:
                self.misses += 1
                with torch.no_grad():
                    features, item_grid = encode(item.unsqueeze(0))
                entry = (features[0].detach(), tuple(item_grid))
                if self.bytes + entry[0].nbytes <= self.max_bytes:
                    self.entries[key] = entry
                    self.bytes += entry[0].nbytes
            else:
                self.hits += 1
            if grid is not None and entry[1] != grid:
                raise ValueError(f"items of one batch encode to different token grids: {grid} vs {entry[1]}")
            rows.append(entry[0])
            grid = entry[1]
        return torch.stack(rows), grid


__all__ = ["VisionFeatureCache", "pixel_key"]
