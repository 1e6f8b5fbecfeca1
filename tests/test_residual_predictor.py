"""The residual predictor (`pred_residual`): the copy it starts from, exactness in every path, the option off, loading."""

import json

import torch
import torch.nn.functional as F
from test_pretrain import _config, tiny_sources  # noqa: F401  (the fixture, shared with the pretraining tests)
from transformers import AutoModel

from vjepa_vlm import VJEPA2Config, VJEPA2Model
from vjepa_vlm.modeling_vjepa2_anticipation import VJEPA2ForActionAnticipation
from vjepa_vlm.train.checkpoint import latest_checkpoint
from vjepa_vlm.train.pretrain import train
from vjepa_vlm.vision.encoder import gather_tokens
from vjepa_vlm.vision.predictor import previous_context_positions
from vjepa_vlm.vision.pretraining import VJEPA2Pretrainer, jepa_l1_loss

torch.set_num_threads(1)

GRID = (6, 2, 2)  # 6 slices of 2 x 2 tokens: slice t holds indices 4t .. 4t + 3
TINY = {"hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4, "patch_size": 16, "pred_hidden_size": 32,
        "pred_num_attention_heads": 4, "pred_num_hidden_layers": 1}


def model(residual: bool, seed: int = 0) -> VJEPA2Model:
    torch.manual_seed(seed)
    return VJEPA2Model(VJEPA2Config(**TINY, pred_residual=residual)).eval()


def randomize_proj_(m: VJEPA2Model) -> VJEPA2Model:
    with torch.no_grad():
        m.predictor.proj.weight.normal_(0, 0.1)
        m.predictor.proj.bias.normal_(0, 0.1)
    return m


def test_copy_source_is_the_same_position_in_the_latest_earlier_context_slice():
    # Future mask: context slices 0-3, target slices 4-5 -> every target copies slice 3 (context positions 12-15).
    positions, found = previous_context_positions(torch.arange(16)[None], torch.arange(16, 24)[None], GRID)
    assert positions.tolist() == [[12, 13, 14, 15] * 2] and found.all()
    # Block mid-clip: context slices 0 and 2 (positions 0-7), targets in slices 1, 3 and 4 copy the slice before them
    # that is visible: slice 0 for slice 1, slice 2 for slices 3 and 4.
    context = torch.tensor([[0, 1, 2, 3, 8, 9, 10, 11]])
    positions, found = previous_context_positions(context, torch.tensor([[5, 7, 13, 16, 18]]), GRID)
    assert positions.tolist() == [[1, 3, 5, 4, 6]] and found.all()
    # Nothing visible earlier at the position: a block at the clip's start, or a position masked in every earlier slice.
    context = torch.tensor([[12, 13, 14, 16, 17, 18]])  # slices 3 and 4 without spatial position 3
    positions, found = previous_context_positions(context, torch.tensor([[0, 2, 21, 23]]), GRID)
    assert found.tolist() == [[False, False, True, False]] and positions[0, 2].item() == 4


@torch.no_grad()
def test_untrained_residual_predictor_is_exactly_the_copy_and_falls_back_to_the_plain_prediction():
    residual = model(True)
    assert residual.predictor.proj.weight.abs().max() == 0 and residual.predictor.proj.bias.abs().max() == 0
    tokens = torch.randn(2, 16, 64)
    predicted = residual.predictor(tokens, torch.arange(16).expand(2, -1), torch.arange(16, 24).expand(2, -1), GRID)
    assert torch.equal(predicted, F.layer_norm(tokens[:, 12:16], (64,)).repeat(1, 2, 1))
    # With any output head, residual = plain prediction (same weights) + copy where a copy exists, nothing elsewhere.
    residual = randomize_proj_(residual)
    plain = model(False)
    plain.load_state_dict(residual.state_dict())
    context, target = torch.tensor([[12, 13, 14, 16, 17, 18]]), torch.tensor([[0, 2, 21, 23]])
    tokens = torch.randn(1, 6, 64)
    difference = residual.predictor(tokens, context, target, GRID) - plain.predictor(tokens, context, target, GRID)
    torch.testing.assert_close(difference[:, 2], F.layer_norm(tokens[:, 4], (64,)))
    assert torch.equal(difference[:, [0, 1, 3]], torch.zeros(1, 3, 64))


@torch.no_grad()
def test_pretraining_loss_of_an_untrained_residual_predictor_is_the_copy_baselines():
    pretrainer = VJEPA2Pretrainer(model(True))
    clips = torch.randn(2, 8, 3, 32, 32)  # grid (4, 2, 2)
    masks = [{"context_indices": torch.arange(8).expand(2, -1), "target_indices": torch.arange(8, 16).expand(2, -1)}]
    targets, _ = pretrainer.target_features(clips)
    context = pretrainer.online.encoder(clips, context_indices=masks[0]["context_indices"]).last_hidden_state
    copy = F.layer_norm(context[:, 4:8], (64,)).repeat(1, 2, 1)
    expected = jepa_l1_loss([copy], [gather_tokens(targets, masks[0]["target_indices"])])
    assert torch.equal(pretrainer(clips, masks)["loss"], expected)


@torch.no_grad()
def test_anticipation_query_of_an_untrained_residual_predictor_copies_the_last_context_slice():
    anticipation = VJEPA2ForActionAnticipation.from_vjepa2(
        model(True), num_verbs=3, num_nouns=4, num_actions=6, frames_per_second=4.0, context_frames=4, max_frames=12,
        pooler_num_attention_heads=4).eval()
    assert anticipation.config.pred_residual
    encoded, predicted = anticipation.anticipation_tokens(torch.randn(2, 4, 3, 32, 32), torch.tensor([0.5, 1.0]))
    assert torch.equal(predicted, F.layer_norm(encoded[:, 4:8], (64,)))  # 2 context slices of 2 x 2 tokens


@torch.no_grad()
def test_option_off_keeps_init_and_outputs_of_configs_without_the_field(tmp_path):
    before = VJEPA2Config(**TINY)
    assert before.pred_residual is False
    torch.manual_seed(0)
    fresh = VJEPA2Model(before).eval()
    off = model(False)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), off.state_dict().values()))
    # An older checkpoint's config.json has no pred_residual: it loads as the plain predictor, weights unchanged.
    off.save_pretrained(tmp_path)
    config_file = tmp_path / "config.json"
    saved = json.loads(config_file.read_text())
    saved.pop("pred_residual")
    config_file.write_text(json.dumps(saved))
    loaded = VJEPA2Model.from_pretrained(tmp_path).eval()
    assert loaded.config.pred_residual is False and not loaded.predictor.residual
    tokens, context, target = torch.randn(1, 8, 64), torch.arange(8)[None], torch.arange(12, 16)[None]
    assert torch.equal(loaded.predictor(tokens, context, target, GRID), off.predictor(tokens, context, target, GRID))


@torch.no_grad()
def test_save_load_round_trip_keeps_the_option_and_a_trained_head(tmp_path):
    residual = randomize_proj_(model(True))
    residual.save_pretrained(tmp_path / "model")
    loaded = AutoModel.from_pretrained(tmp_path / "model").eval()
    assert loaded.config.pred_residual and loaded.predictor.residual
    torch.testing.assert_close(loaded.predictor.proj.weight, residual.predictor.proj.weight, rtol=0, atol=0)
    tokens, context, target = torch.randn(1, 8, 64), torch.arange(8)[None], torch.arange(12, 16)[None]
    assert torch.equal(loaded.predictor(tokens, context, target, GRID), residual.predictor(tokens, context, target, GRID))
    anticipation = VJEPA2ForActionAnticipation.from_vjepa2(
        loaded, num_verbs=3, num_nouns=4, num_actions=6, frames_per_second=4.0, context_frames=4, max_frames=12,
        pooler_num_attention_heads=4).eval()
    anticipation.save_pretrained(tmp_path / "anticipation")
    again = AutoModel.from_pretrained(tmp_path / "anticipation").eval()
    clips, times = torch.randn(1, 4, 3, 32, 32), torch.tensor([1.0])
    assert again.config.pred_residual
    assert torch.equal(again.anticipation_tokens(clips, times)[1], anticipation.anticipation_tokens(clips, times)[1])


def test_residual_run_initialized_from_a_plain_checkpoint_starts_from_a_zero_head(tmp_path, tiny_sources):  # noqa: F811
    plain = latest_checkpoint(train(_config(tmp_path / "plain", tiny_sources, "stop_at_step=2")))
    assert json.loads((plain / "online" / "config.json").read_text())["pred_residual"] is False
    # A learning rate of 1e-12 keeps the one step's change to the head far below the plain head's weights.
    residual = _config(
        tmp_path / "residual", tiny_sources, "model.config_overrides.pred_residual=true", "steps=1",
        "optim.warmup_steps=0", "optim.decay_steps=1", "optim.start_lr=1e-12", "optim.lr=1e-12", "optim.final_lr=1e-12",
        f"checkpoint.init_from={plain}",
    )
    step = latest_checkpoint(train(residual))
    for name in ("online", "target"):
        before = VJEPA2Model.from_pretrained(plain / name)
        after = VJEPA2Model.from_pretrained(step / name)
        assert after.config.pred_residual and before.predictor.proj.weight.abs().max() > 1e-3
        assert after.predictor.proj.weight.abs().max() < 1e-9 and after.predictor.proj.bias.abs().max() < 1e-9
        torch.testing.assert_close(after.predictor.layernorm.weight, before.predictor.layernorm.weight)


def test_copy_is_a_skip_connection_that_passes_gradients_to_the_context_tokens():
    # With the head at zero the trunk passes no gradient: what reaches the context tokens comes through the copy, and
    # only to the last context slice (positions 12-15), the one the targets copy.
    residual = model(True)
    tokens = torch.randn(1, 16, 64, requires_grad=True)
    predicted = residual.predictor(tokens, torch.arange(16)[None], torch.arange(16, 24)[None], GRID)
    (predicted - torch.randn_like(predicted)).abs().mean().backward()
    assert tokens.grad[0, 12:].abs().sum(-1).min() > 0 and torch.equal(tokens.grad[0, :12], torch.zeros(12, 64))
