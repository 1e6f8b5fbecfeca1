"""The V-JEPA 2 predictor: oracle equality with transformers' predictor, mask tokens, bad input."""

import pytest
import torch
from vjepa2_oracle import max_diff, random_clip, random_split, tiny_config, twin_models

TOL = 1e-4


@pytest.fixture(scope="module")
def twins():
    return twin_models(tiny_config())


@torch.no_grad()
def test_model_forward_matches_transformers_predictor_output_with_masks(twins):
    ours, reference = twins
    clip = random_clip()
    context, target = random_split(2, 32, num_context=12, num_target=9, seed=1)
    got = ours(clip, context_mask=[context], target_mask=[target])
    expected = reference(clip, context_mask=[context], target_mask=[target])
    assert got.predictor_output.last_hidden_state.shape == (2, 9, 96)
    assert max_diff(got.predictor_output.last_hidden_state, expected.predictor_output.last_hidden_state) <= TOL
    assert max_diff(got.predictor_output.target_hidden_state, expected.predictor_output.target_hidden_state) <= TOL
    assert max_diff(got.masked_hidden_state, expected.masked_hidden_state) <= TOL


@torch.no_grad()
def test_model_forward_without_masks_predicts_every_token_like_transformers(twins):
    ours, reference = twins
    clip = random_clip()
    got, expected = ours(clip), reference(clip)
    assert max_diff(got.last_hidden_state, expected.last_hidden_state) <= TOL
    assert max_diff(got.predictor_output.last_hidden_state, expected.predictor_output.last_hidden_state) <= TOL
    assert ours(clip, skip_predictor=True).predictor_output is None


@torch.no_grad()
def test_predictor_called_directly_matches_transformers_predictor(twins):
    ours, reference = twins
    encoded = ours.encoder(random_clip())
    context, target = random_split(2, 32, num_context=7, num_target=11, seed=2)
    context_tokens = encoded.last_hidden_state.gather(1, context.unsqueeze(-1).expand(-1, -1, 96))
    got = ours.predictor(context_tokens, context, target, encoded.grid_size)
    expected = reference.predictor(encoded.last_hidden_state, [context], [target]).last_hidden_state
    assert got.shape == (2, 11, 96)
    assert max_diff(got, expected) <= TOL


@torch.no_grad()
def test_mask_index_selects_the_learnable_mask_token(twins):
    ours, _ = twins
    encoded = ours.encoder(random_clip(batch=1))
    context, target = random_split(1, 32, num_context=8, num_target=4)
    tokens = encoded.last_hidden_state.gather(1, context.unsqueeze(-1).expand(-1, -1, 96))
    first = ours.predictor(tokens, context, target, encoded.grid_size, mask_index=0)
    second = ours.predictor(tokens, context, target, encoded.grid_size, mask_index=1)
    wrapped = ours.predictor(tokens, context, target, encoded.grid_size, mask_index=11)  # 10 tokens: 11 -> 1
    assert max_diff(first, second) > TOL
    assert max_diff(second, wrapped) == 0.0


@torch.no_grad()
def test_predictions_follow_the_order_of_target_indices(twins):
    ours, _ = twins
    encoded = ours.encoder(random_clip(batch=1))
    context, target = random_split(1, 32, num_context=8, num_target=6)
    tokens = encoded.last_hidden_state.gather(1, context.unsqueeze(-1).expand(-1, -1, 96))
    flipped = target.flip(1)
    straight = ours.predictor(tokens, context, target, encoded.grid_size)
    assert max_diff(ours.predictor(tokens, context, flipped, encoded.grid_size), straight.flip(1)) <= TOL


def test_predictor_rejects_mismatched_inputs(twins):
    ours, _ = twins
    tokens = torch.zeros(2, 5, 96)
    context, target = random_split(2, 32, num_context=5, num_target=3)
    with pytest.raises(ValueError, match=r"\(B, Nc, 96\)"):
        ours.predictor(torch.zeros(2, 5, 48), context, target, (2, 4, 4))
    with pytest.raises(ValueError, match="context_indices has 4 tokens"):
        ours.predictor(tokens, context[:, :4], target, (2, 4, 4))
    with pytest.raises(ValueError, match=r"target_indices must lie in \[0, 16\)"):
        ours.predictor(tokens, context % 16, target + 16, (1, 4, 4))
    with pytest.raises(ValueError, match="together"):
        ours(random_clip(), context_mask=[context])
