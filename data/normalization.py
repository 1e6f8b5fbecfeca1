"""Pixel normalization shared by every reader of images and videos (VLM processor, pretraining, probes, demo).

V-JEPA 2 is pretrained on ImageNet-normalized pixels, so each consumer must produce exactly the same values;
keeping the statistics and the arithmetic here means they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def frames_to_unit_float(frames) -> torch.Tensor:
    """uint8 channel-last frames `(..., H, W, 3)` (array or tensor) -> float `(..., 3, H, W)` in [0, 1].

    Decoders hand out channel-last uint8; callers that resize do it on this [0, 1] tensor, then normalize.
    """
    tensor = frames if isinstance(frames, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(frames))
    if tensor.ndim < 3 or tensor.shape[-1] != 3 or tensor.dtype != torch.uint8:
        raise ValueError(f"frames must be uint8 of shape (..., H, W, 3), got dtype {tensor.dtype} shape {tuple(tensor.shape)}")
    dims = list(range(tensor.ndim - 3)) + [tensor.ndim - 1, tensor.ndim - 3, tensor.ndim - 2]
    return tensor.permute(*dims).float().div_(255.0)


def normalize_frames(frames, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """Normalize pixels with per-channel `mean` / `std` (ImageNet by default) into a float `(..., 3, H, W)` tensor.

    Args:
        frames: either uint8 channel-last `(..., H, W, 3)` frames as decoded (converted with
            `frames_to_unit_float` first), or a floating-point channel-first `(..., 3, H, W)` tensor in [0, 1]
            (frames already converted and resized).
        mean, std: per-channel statistics of [0, 1] pixels.
    """
    if isinstance(frames, torch.Tensor) and frames.is_floating_point():
        if frames.ndim < 3 or frames.shape[-3] != 3:
            raise ValueError(f"float pixels must have shape (..., 3, H, W), got {tuple(frames.shape)}")
        pixels = frames
    else:
        pixels = frames_to_unit_float(frames)
    mean_t = torch.tensor(mean, dtype=pixels.dtype).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=pixels.dtype).view(3, 1, 1)
    return (pixels - mean_t) / std_t
