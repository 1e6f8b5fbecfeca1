"""Masks that hide the clip's end (`temporal_position="end"`): the pretraining geometry of action anticipation."""

import pytest
import torch

from vjepa_vlm.modeling_vjepa2_anticipation import anticipation_masks
from vjepa_vlm.train.config import load_config
from vjepa_vlm.train.pretrain import TINY_RECIPE, PretrainConfig, load_recipe
from vjepa_vlm.vision.masking import (
    MaskConfig,
    MultiBlockMaskCollator,
    MultiBlockMaskGenerator,
    default_mask_configs,
    grid_size_for,
)

torch.set_num_threads(1)

FUTURE = MaskConfig(num_blocks=1, spatial_scale=(1.0, 1.0), temporal_scale=(0.5, 0.5), aspect_ratio=(1.0, 1.0),
                    temporal_position="end")


def _slices(indices: torch.Tensor, grid) -> set[int]:
    return set(torch.unravel_index(indices, grid)[0].tolist())


def test_end_mask_hides_the_last_slices_and_keeps_the_first_as_context():
    grid = (8, 4, 4)
    mask = MultiBlockMaskGenerator(grid, [FUTURE])(5, torch.Generator().manual_seed(0))[0]
    context, target = mask["context_indices"], mask["target_indices"]
    assert context.shape == target.shape == (5, 4 * 16)
    for c, t in zip(context, target):
        assert _slices(c, grid) == {0, 1, 2, 3} and _slices(t, grid) == {4, 5, 6, 7}
        assert sorted(c.tolist() + t.tolist()) == list(range(8 * 16))


def test_end_blocks_with_a_spatial_extent_touch_the_last_slice_and_move_only_in_space():
    grid = (8, 8, 8)
    config = MaskConfig(num_blocks=1, spatial_scale=(0.25, 0.25), temporal_scale=(0.25, 0.25), aspect_ratio=(1.0, 1.0),
                        temporal_position="end")
    targets = MultiBlockMaskGenerator(grid, [config])(16, torch.Generator().manual_seed(1))[0]["target_indices"]
    corners = set()
    for target in targets:
        t, h, w = torch.unravel_index(target, grid)
        assert set(t.tolist()) == {6, 7} and len(target) == 2 * 4 * 4
        corners.add((int(h.min()), int(w.min())))
    assert len(corners) > 1


def test_default_position_reproduces_the_masks_of_existing_recipes():
    """Recorded with the masking code before `temporal_position` existed (commit b9812d4): the motion recipe's block
    and the paper's two configs draw exactly the same context and target indices for the same seed and position."""
    motion = MaskConfig(num_blocks=1, spatial_scale=(1.0, 1.0), temporal_scale=(0.5, 0.5), aspect_ratio=(1.0, 1.0))
    assert motion.temporal_position == "random"
    batch = MultiBlockMaskCollator((8, 8, 8), [motion, *default_mask_configs()], seed=3)(
        [{"index": 5, "x": torch.zeros(1)} for _ in range(3)]
    )
    recorded = [
        ([81792, 65408, 98176], 256, [[192, 193, 194], [128, 129, 130], [256, 257, 258]]),
        ([63447, 77856, 73874], 144, [[0, 1, 2], [3, 4, 5], [3, 4, 5]]),
        ([106496, 106416, 96424], 48, [[2, 3, 4], [1, 2, 3], [3, 4, 5]]),
    ]
    for mask, (target_sums, num_context, first_targets) in zip(batch["masks"], recorded, strict=True):
        assert mask["target_indices"].sum(1).tolist() == target_sums
        assert mask["context_indices"].shape[1] == num_context
        assert mask["target_indices"][:, :3].tolist() == first_targets


def test_unknown_temporal_position_is_a_clear_error():
    with pytest.raises(ValueError, match=r"MaskConfig.temporal_position must be one of \('random', 'end'\), got 'future'"):
        MaskConfig(temporal_position="future")
    with pytest.raises(ValueError, match="temporal_position"):
        load_config(PretrainConfig, overrides=["mask.configs=[{num_blocks: 1, temporal_position: start}]"])


def test_future_recipe_matches_the_anticipation_query_it_trains_for():
    """The recipe's second mask (mask token 1, the anticipation model's default `predictor_mask_index`) has the
    published anticipation runs' context (8 frames at 4 fps = the first 4 of 8 slices) and its target holds every
    slice those runs ask the predictor for (t up to 1.75 s: 0 to 3 slices skipped)."""
    recipe = load_recipe(TINY_RECIPE.with_name("pretrain_tiny_motion_future.yaml"))
    motion = load_recipe(TINY_RECIPE.with_name("pretrain_tiny_motion.yaml"))
    assert recipe.mask.configs[0] == motion.mask.configs[0]
    assert [c.temporal_position for c in recipe.mask.configs] == ["random", "end"]
    assert (recipe.data.num_frames, recipe.data.fps, recipe.steps) == (16, 4.0, 800)
    grid = grid_size_for(recipe.data.num_frames, recipe.data.crop_size, 2, recipe.model.config_overrides["patch_size"])
    mask = MultiBlockMaskGenerator(grid, recipe.mask.configs)(2, torch.Generator().manual_seed(0))[1]
    tokens_per_slice = grid[1] * grid[2]
    steps = torch.arange(4)
    context, target, slices = anticipation_masks(steps, 4, tokens_per_slice, 1)
    assert slices <= grid[0]
    assert torch.equal(mask["context_indices"][0], context[0])
    assert set(target.flatten().tolist()) == set(mask["target_indices"][0].tolist())


def test_fast_predictor_recipe_is_the_published_command():
    """The recipe file equals the future recipe with the overrides of the BENCHMARKS commands it stands for."""
    recipe = load_recipe(TINY_RECIPE.with_name("pretrain_tiny_motion_future_fastpred.yaml"))
    overrides = [
        "steps=1600", "optim.warmup_steps=200", "optim.decay_steps=400", "optim.ema=0.998", "optim.final_ema=0.998",
        "predictor_lr_scale=10", "checkpoint.dir=runs/ant/pt_future_ema998_plr10", "checkpoint.every_steps=400",
        "log_every=100",
    ]
    assert recipe == load_recipe(TINY_RECIPE.with_name("pretrain_tiny_motion_future.yaml"), overrides)
