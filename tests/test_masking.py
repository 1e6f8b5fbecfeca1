import pytest
import torch

from vjepa_vlm.vision.masking import (
    MaskConfig,
    MultiBlockMaskCollator,
    MultiBlockMaskGenerator,
    grid_size_for,
    sample_block_size,
)

torch.set_num_threads(1)


def _masks(grid=(8, 16, 16), batch=4, seed=0, configs=None):
    return MultiBlockMaskGenerator(grid, configs)(batch, torch.Generator().manual_seed(seed))


def test_context_and_target_partition_the_grid_and_stack_across_batch():
    grid = (8, 16, 16)
    masks = _masks(grid)
    assert len(masks) == 2
    for mask in masks:
        context, target = mask["context_indices"], mask["target_indices"]
        assert context.shape[0] == target.shape[0] == 4
        assert context.dtype == target.dtype == torch.long
        for c, t in zip(context, target):
            assert len(set(c.tolist()) & set(t.tolist())) == 0
            assert c.max() < 8 * 16 * 16 and t.max() < 8 * 16 * 16
            assert len(set(c.tolist())) == len(c)


def test_large_blocks_mask_more_than_small_blocks():
    grid = (4, 16, 16)
    small, large = _masks(grid, batch=8)
    ratio_small = small["target_indices"].shape[1] / (4 * 16 * 16)
    ratio_large = large["target_indices"].shape[1] / (4 * 16 * 16)
    assert ratio_large > ratio_small > 0.1


def test_untruncated_target_is_full_temporal_tube():
    grid = (4, 8, 8)
    generator = MultiBlockMaskGenerator(grid, [MaskConfig(num_blocks=1, spatial_scale=(0.25, 0.25))])
    target = generator(1, torch.Generator().manual_seed(3))[0]["target_indices"][0]
    positions = torch.stack(torch.unravel_index(target, grid), dim=1).tolist()
    spatial = {(h, w) for _, h, w in positions}
    assert len(positions) == len(spatial) * grid[0]


def test_block_size_follows_scale_and_aspect_ratio():
    config = MaskConfig(num_blocks=1, spatial_scale=(0.15, 0.15), aspect_ratio=(1.0, 1.0))
    t, h, w = sample_block_size(config, (8, 16, 16), torch.Generator().manual_seed(0))
    assert (t, h, w) == (8, 6, 6)  # int(256 * 0.15) = 38 patches -> 6x6


def test_masks_are_deterministic_given_seed_and_vary_with_it():
    a, b, c = _masks(seed=1), _masks(seed=1), _masks(seed=2)
    assert torch.equal(a[0]["target_indices"], b[0]["target_indices"])
    assert not torch.equal(a[0]["target_indices"], c[0]["target_indices"]) or not torch.equal(
        a[1]["target_indices"], c[1]["target_indices"]
    )


def test_collator_adds_masks_seeded_by_stream_position():
    collate = MultiBlockMaskCollator((2, 4, 4), seed=0)
    samples = [{"pixel_values": torch.zeros(4, 3, 8, 8), "index": i} for i in range(3)]
    batch = collate(samples)
    again = collate(samples)
    assert batch["pixel_values"].shape == (3, 4, 3, 8, 8)
    assert torch.equal(batch["masks"][1]["context_indices"], again["masks"][1]["context_indices"])


def test_grid_too_small_for_block_is_a_clear_error():
    with pytest.raises(ValueError, match="too small"):
        _masks(grid=(1, 2, 2), configs=[MaskConfig(num_blocks=1, spatial_scale=(0.15, 0.15))])


def test_mask_without_context_is_a_clear_error():
    with pytest.raises(ValueError, match="no context"):
        _masks(grid=(2, 4, 4), configs=[MaskConfig(num_blocks=2, spatial_scale=(1.0, 1.0))])


def test_bad_mask_config_and_grid_arguments():
    with pytest.raises(ValueError, match="spatial_scale"):
        MaskConfig(spatial_scale=(0.5, 0.2))
    with pytest.raises(ValueError, match="num_frames"):
        grid_size_for(15, 256)
    assert grid_size_for(16, 256) == (8, 16, 16)
