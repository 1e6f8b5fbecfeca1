"""The V-JEPA 2 encoder: oracle equality with transformers, input handling, masked forward, intermediate layers."""

import itertools

import pytest
import torch
import transformers
from vjepa2_oracle import max_diff, random_clip, random_split, randomize_, tiny_config, twin_models

from vjepa_vlm import VJEPA2Model
from vjepa_vlm.vision.rope import rope_axis_dim, token_positions

TOL = 1e-4


@pytest.fixture(scope="module")
def twins():
    return twin_models(tiny_config())


@torch.no_grad()
def test_full_clip_matches_transformers_at_native_resolution(twins):
    ours, reference = twins
    clip = random_clip()
    expected = reference(clip, skip_predictor=True).last_hidden_state
    out = ours.encoder(clip)
    assert out.last_hidden_state.shape == (2, 2 * 4 * 4, 96)
    assert out.grid_size == (2, 4, 4)
    assert max_diff(out.last_hidden_state, expected) <= TOL


@torch.no_grad()
def test_positions_come_from_the_input_grid_not_the_config(twins):
    ours, reference = twins
    clip = random_clip(frames=6, height=96, width=96)  # grid (3, 6, 6); the config says crop 64, i.e. a 4x4 grid
    ours_out = ours.encoder(clip).last_hidden_state
    config_grid_out = reference(clip, skip_predictor=True).last_hidden_state
    # transformers derives positions from config.crop_size: rebuilt with the true crop it is the right oracle.
    rebuilt = transformers.VJEPA2Model(transformers.VJEPA2Config.from_dict({**ours.config.to_dict(), "crop_size": 96}))
    rebuilt.load_state_dict(ours.state_dict())
    true_grid_out = rebuilt.eval()(clip, skip_predictor=True).last_hidden_state
    assert max_diff(ours_out, true_grid_out) <= TOL
    assert max_diff(ours_out, config_grid_out) > 100 * TOL


def test_token_positions_of_a_non_square_grid_follow_t_h_w_order():
    grid = (2, 3, 5)
    expected = torch.tensor(list(itertools.product(range(2), range(3), range(5))))
    assert torch.equal(token_positions(grid)[0], expected)
    picked = torch.tensor([[29, 0, 7]])
    assert torch.equal(token_positions(grid, picked)[0], expected[picked[0]])


def test_rope_splits_head_dim_in_three_even_segments():
    assert [rope_axis_dim(d) for d in (64, 32, 24, 16)] == [20, 10, 8, 4]


@torch.no_grad()
def test_non_square_input_and_any_frame_count(twins):
    ours, _ = twins
    out = ours.encoder(random_clip(batch=1, frames=8, height=32, width=80))
    assert out.grid_size == (4, 2, 5)
    assert out.last_hidden_state.shape == (1, 40, 96)
    assert torch.isfinite(out.last_hidden_state).all()


@torch.no_grad()
def test_image_is_encoded_as_a_clip_of_repeated_frames(twins):
    ours, _ = twins
    image = random_clip(batch=2, frames=1)[:, 0]
    repeated = image.unsqueeze(1).repeat(1, 2, 1, 1, 1)
    assert max_diff(ours.encoder(image).last_hidden_state, ours.encoder(repeated).last_hidden_state) == 0.0
    assert ours.encoder(image).grid_size == (1, 4, 4)


@torch.no_grad()
def test_masked_forward_matches_reference_layers_fed_the_context_positions(twins):
    ours, reference = twins
    clip = random_clip()
    context, _ = random_split(2, 32, num_context=5, num_target=0, seed=3)
    # Meta's masked encoder: embed all tubelets, keep the context ones, run the blocks with their grid positions.
    hidden = reference.encoder.embeddings(clip)
    hidden = hidden.gather(1, context.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
    for layer in reference.encoder.layer:
        hidden = layer(hidden, context)[0]
    expected = reference.encoder.layernorm(hidden)
    out = ours.encoder(clip, context_indices=context)
    assert out.last_hidden_state.shape == (2, 5, 96)
    assert max_diff(out.last_hidden_state, expected) <= TOL


@torch.no_grad()
def test_masked_forward_with_every_token_is_a_permutation_of_the_full_forward(twins):
    ours, _ = twins
    clip = random_clip()
    permutation = torch.stack([torch.randperm(32, generator=torch.Generator().manual_seed(s)) for s in (0, 1)])
    full = ours.encoder(clip).last_hidden_state
    permuted = ours.encoder(clip, context_indices=permutation).last_hidden_state
    assert max_diff(permuted, full.gather(1, permutation.unsqueeze(-1).expand(-1, -1, 96))) <= TOL


@torch.no_grad()
def test_output_layers_match_transformers_hidden_states_after_the_final_norm(twins):
    ours, reference = twins
    clip = random_clip()
    out = ours.encoder(clip, output_layers=[1, -1, 0])
    ref_states = reference(clip, skip_predictor=True, output_hidden_states=True).hidden_states
    block_outputs = ref_states[-4:]  # one per block, in order
    layernorm = reference.encoder.layernorm
    assert len(out.intermediate_hidden_states) == 3
    for got, block in zip(out.intermediate_hidden_states, (1, 3, 0)):
        assert max_diff(got, layernorm(block_outputs[block])) <= TOL
    assert max_diff(out.intermediate_hidden_states[1], out.last_hidden_state) == 0.0
    assert ours.encoder(clip).intermediate_hidden_states is None


@pytest.mark.parametrize(
    "shape, message",
    [
        ((2, 4, 3, 64), "(B, T, C, H, W)"),
        ((2, 3, 3, 64, 64), "multiple of tubelet_size=2"),
        ((2, 4, 3, 64, 72), "multiples of patch_size=16"),
        ((2, 4, 1, 64, 64), "in_chans=3"),
    ],
)
def test_bad_pixel_shapes_raise_naming_the_expectation(twins, shape, message):
    ours, _ = twins
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ours.encoder(torch.zeros(shape))


def test_bad_context_indices_raise(twins):
    ours, _ = twins
    clip = random_clip()
    with pytest.raises(ValueError, match=r"\[0, 32\)"):
        ours.encoder(clip, context_indices=torch.tensor([[0, 32], [1, 2]]))
    with pytest.raises(ValueError, match="shape"):
        ours.encoder(clip, context_indices=torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        ours.encoder(clip, context_indices=torch.zeros(2, 2))
    with pytest.raises(ValueError, match="out of range"):
        ours.encoder(clip, output_layers=[4])


def test_every_parameter_gets_a_finite_gradient_and_checkpointing_gives_the_same_ones():
    torch.manual_seed(0)
    model = randomize_(VJEPA2Model(tiny_config())).train()
    clip = random_clip(batch=1)
    context, target = random_split(1, 32, num_context=10, num_target=6)

    def gradients():
        model.zero_grad()
        encoded = model.encoder(clip, context_indices=context, output_layers=[0])
        predicted = model.predictor(encoded.last_hidden_state, context, target, encoded.grid_size)
        (predicted.square().mean() + encoded.intermediate_hidden_states[0].mean()).backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    plain = gradients()
    assert set(plain) == {name for name, _ in model.named_parameters()}
    assert all(torch.isfinite(g).all() for g in plain.values())
    model.gradient_checkpointing_enable()
    assert all(block.gradient_checkpointing for block in model.encoder.layer)
    checkpointed = gradients()
    assert all(max_diff(plain[name], checkpointed[name]) <= 1e-5 for name in plain)


def test_encoder_alone_supports_gradient_checkpointing():
    model = randomize_(VJEPA2Model(tiny_config())).train()
    model.encoder.set_grad_checkpointing()
    clip = random_clip(batch=1).requires_grad_()
    model.encoder(clip).last_hidden_state.sum().backward()
    assert clip.grad is not None and torch.isfinite(clip.grad).all()


@torch.no_grad()
def test_bf16_forward_stays_close_to_fp32(twins):
    ours, _ = twins
    clip = random_clip()
    fp32 = ours.encoder(clip).last_hidden_state
    bf16_model = VJEPA2Model(tiny_config()).to(torch.bfloat16).eval()
    bf16_model.load_state_dict(ours.state_dict())
    bf16 = bf16_model.encoder(clip.to(torch.bfloat16)).last_hidden_state
    assert bf16.dtype == torch.bfloat16
    assert max_diff(bf16.float(), fp32) < 0.25
