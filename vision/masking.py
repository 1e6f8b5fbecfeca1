"""Multiblock 3D masking over a tubelet grid (V-JEPA, section 2.1; Table 9 mask parameters).

A mask config places a few rectangular spatial blocks that span a fraction of the clip in time. The
union of a config's blocks is the prediction target; everything else is the context the encoder sees.
A block starts anywhere in time (the paper's masks), or ends at the clip's last slice
(`temporal_position="end"`): then the context is the start of the clip and the target its future, the
geometry of the anticipation query (section 6), where the predictor fills slices after the context.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch.utils.data import default_collate

TEMPORAL_POSITIONS = ("random", "end")


@dataclass
class MaskConfig:
    """One multiblock mask config.

    Args:
        num_blocks: blocks whose union forms the target.
        spatial_scale: (min, max) fraction of the H×W grid covered by one block.
        temporal_scale: (min, max) fraction of the T grid spanned by one block.
        aspect_ratio: (min, max) block height / width.
        temporal_position: "random" (a block starts anywhere in time) or "end" (it ends at the clip's last
            tubelet slice, so the target lies after the context).
    """

    num_blocks: int = 8
    spatial_scale: tuple[float, float] = (0.15, 0.15)
    temporal_scale: tuple[float, float] = (1.0, 1.0)  # Table 9: blocks span the whole clip
    aspect_ratio: tuple[float, float] = (0.75, 1.5)  # Table 9
    temporal_position: str = "random"

    def __post_init__(self):
        self.spatial_scale = tuple(self.spatial_scale)
        self.temporal_scale = tuple(self.temporal_scale)
        self.aspect_ratio = tuple(self.aspect_ratio)
        if self.num_blocks < 1:
            raise ValueError(f"MaskConfig.num_blocks must be >= 1, got {self.num_blocks}")
        for name in ("spatial_scale", "temporal_scale", "aspect_ratio"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"MaskConfig.{name} must be (min, max) with 0 < min <= max, got {(low, high)}")
        if self.spatial_scale[1] > 1 or self.temporal_scale[1] > 1:
            raise ValueError("MaskConfig.spatial_scale and temporal_scale must be <= 1")
        if self.temporal_position not in TEMPORAL_POSITIONS:
            raise ValueError(
                f"MaskConfig.temporal_position must be one of {TEMPORAL_POSITIONS}, got {self.temporal_position!r}"
            )


def default_mask_configs() -> list[MaskConfig]:
    """The paper's two configs per batch: 8 small blocks and 2 large ones (Table 9 spatial scale [0.15, 0.7])."""
    return [MaskConfig(num_blocks=8, spatial_scale=(0.15, 0.15)), MaskConfig(num_blocks=2, spatial_scale=(0.7, 0.7))]


@dataclass
class MaskArgs:
    """Masking section of a training config (the list of mask configs applied to every batch)."""

    configs: list[MaskConfig] = field(default_factory=default_mask_configs)
    max_tries: int = 20


def sample_block_size(
    config: MaskConfig, grid_size: tuple[int, int, int], generator: torch.Generator
) -> tuple[int, int, int]:
    """Draw one (t, h, w) block size for `config` on a (T, H, W) grid."""
    duration, height, width = grid_size
    u = torch.rand(3, generator=generator).tolist()
    temporal = config.temporal_scale[0] + u[0] * (config.temporal_scale[1] - config.temporal_scale[0])
    spatial = config.spatial_scale[0] + u[1] * (config.spatial_scale[1] - config.spatial_scale[0])
    aspect = config.aspect_ratio[0] + u[2] * (config.aspect_ratio[1] - config.aspect_ratio[0])
    area = int(height * width * spatial)
    t = max(1, int(duration * temporal))
    h = min(height, int(round(math.sqrt(area * aspect))))
    w = min(width, int(round(math.sqrt(area / aspect))))
    if area == 0 or h == 0 or w == 0:
        raise ValueError(
            f"tubelet grid (T, H, W)={grid_size} is too small for a block of spatial scale {spatial:.3f}: "
            f"the block would cover {area} patches ({h}x{w}); use a larger crop or a larger spatial_scale"
        )
    return t, h, w


def sample_block_mask(
    block_sizes: list[tuple[int, int, int]],
    grid_size: tuple[int, int, int],
    generator: torch.Generator,
    temporal_position: str = "random",
) -> torch.Tensor:
    """Place each block at a random position (in time too, unless `temporal_position` is "end": then it ends at
    the last slice); return a bool (T, H, W) grid, True = target."""
    duration, height, width = grid_size
    covered = torch.zeros(grid_size, dtype=torch.bool)
    for t, h, w in block_sizes:
        if temporal_position == "end":
            start = duration - t
        else:
            start = torch.randint(0, duration - t + 1, (1,), generator=generator).item()
        top = torch.randint(0, height - h + 1, (1,), generator=generator).item()
        left = torch.randint(0, width - w + 1, (1,), generator=generator).item()
        covered[start : start + t, top : top + h, left : left + w] = True
    return covered


class MultiBlockMaskGenerator:
    """Samples context/target index pairs for a batch, one pair per mask config.

    Block sizes are drawn once per batch and config; positions per sample. Each sample's context and
    target index lists are truncated to the shortest in the batch so they stack into (B, N) tensors.

    Args:
        grid_size: (T, H, W) tubelet grid, e.g. (8, 16, 16) for 16 frames at 256px with 2×16×16 tubelets.
        configs: mask configs (default: the paper's 8×0.15 + 2×0.7).
        max_tries: resamples of a sample's positions before an empty context or target is an error.
    """

    def __init__(
        self,
        grid_size: tuple[int, int, int],
        configs: list[MaskConfig] | None = None,
        max_tries: int = 20,
    ):
        if len(grid_size) != 3 or min(grid_size) < 1:
            raise ValueError(f"grid_size must be (T, H, W) of positive ints, got {grid_size}")
        self.grid_size = tuple(int(x) for x in grid_size)
        self.configs = configs if configs is not None else default_mask_configs()
        if not self.configs:
            raise ValueError("MultiBlockMaskGenerator needs at least one MaskConfig")
        self.max_tries = max_tries

    def _sample_one(self, block_sizes, generator, temporal_position) -> tuple[torch.Tensor, torch.Tensor]:
        for _ in range(self.max_tries):
            target = sample_block_mask(block_sizes, self.grid_size, generator, temporal_position).flatten()
            if target.any() and not target.all():
                return torch.nonzero(~target).squeeze(1), torch.nonzero(target).squeeze(1)
        raise ValueError(
            f"multiblock mask with blocks {block_sizes} on grid {self.grid_size} left no context (or no "
            f"target) after {self.max_tries} tries; lower num_blocks or spatial_scale"
        )

    def __call__(self, batch_size: int, generator: torch.Generator) -> list[dict[str, torch.Tensor]]:
        """Return one dict per config with "context_indices" and "target_indices", each a LongTensor (B, N)."""
        masks = []
        for config in self.configs:
            block_sizes = [sample_block_size(config, self.grid_size, generator) for _ in range(config.num_blocks)]
            pairs = [self._sample_one(block_sizes, generator, config.temporal_position) for _ in range(batch_size)]
            num_context = min(len(context) for context, _ in pairs)
            num_target = min(len(target) for _, target in pairs)
            masks.append(
                {
                    "context_indices": torch.stack([context[:num_context] for context, _ in pairs]),
                    "target_indices": torch.stack([target[:num_target] for _, target in pairs]),
                }
            )
        return masks


class MultiBlockMaskCollator:
    """DataLoader collate_fn: stacks samples and adds `masks` (a list of per-config index dicts).

    The mask randomness is seeded from `seed` and the first sample's `index`, so a batch's masks are a
    pure function of its data position; resuming at the same position reproduces them exactly.

    Args:
        grid_size: (T, H, W) tubelet grid of the clips in the batch.
        configs: mask configs, see `MultiBlockMaskGenerator`.
        seed: base seed of the mask randomness.
        max_tries: see `MultiBlockMaskGenerator`.
    """

    def __init__(
        self, grid_size: tuple[int, int, int], configs: list[MaskConfig] | None = None, seed: int = 0, max_tries: int = 20
    ):
        self.generator = MultiBlockMaskGenerator(grid_size, configs, max_tries)
        self.seed = seed

    def __call__(self, samples: list[dict]) -> dict:
        batch = default_collate(samples)
        position = int(samples[0]["index"]) if "index" in samples[0] else 0
        rng = torch.Generator().manual_seed(self.seed * 1_000_003 + position)
        batch["masks"] = self.generator(len(samples), rng)
        return batch


def grid_size_for(num_frames: int, crop_size: int, tubelet_size: int = 2, patch_size: int = 16) -> tuple[int, int, int]:
    """The (T, H, W) tubelet grid of a clip; errors name the field that does not divide."""
    if num_frames % tubelet_size:
        raise ValueError(f"num_frames={num_frames} must be a multiple of tubelet_size={tubelet_size}")
    if crop_size % patch_size:
        raise ValueError(f"crop_size={crop_size} must be a multiple of patch_size={patch_size}")
    return num_frames // tubelet_size, crop_size // patch_size, crop_size // patch_size
