import numpy as np
import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError
from transformers import AutoModel

from vjepa_vlm import VJEPA2Config, VJEPA2Model
from vjepa_vlm.data.epic_kitchens import ActionSegment
from vjepa_vlm.eval.anticipation import AnticipationTask, context_indices, mean_class_recall
from vjepa_vlm.eval.probe import ProbeArgs, train_probe_sweep
from vjepa_vlm.modeling_vjepa2_anticipation import (
    VJEPA2ForActionAnticipation,
    anticipation_grid,
    anticipation_masks,
    anticipation_steps,
    sigmoid_focal_loss,
)

torch.set_num_threads(1)

TINY = dict(
    hidden_size=64, num_hidden_layers=1, num_attention_heads=4, patch_size=16, pred_hidden_size=32,
    pred_num_attention_heads=4, pred_num_hidden_layers=1,
)
HEADS = dict(num_verbs=3, num_nouns=4, num_actions=6, frames_per_second=4.0, context_frames=4, max_frames=12,
             pooler_num_attention_heads=4)


def tiny_model(**overrides) -> VJEPA2ForActionAnticipation:
    torch.manual_seed(0)
    return VJEPA2ForActionAnticipation.from_vjepa2(VJEPA2Model(VJEPA2Config(**TINY)), **{**HEADS, **overrides})


def test_masks_follow_the_reference_equations():
    # facebookresearch/vjepa2 AnticipativeWrapper: steps = int(t * fps / tubelet); context = arange(N);
    # target = N + grid**2 * steps + arange(grid**2 * output_frames // tubelet).
    times, fps, tubelet, grid, context_slices, output_frames = torch.tensor([0.25, 1.0, 1.75]), 8.0, 2, 3, 16, 2
    steps = anticipation_steps(times, fps, tubelet)
    assert steps.tolist() == [int(t * fps / tubelet) for t in (0.25, 1.0, 1.75)] == [1, 4, 7]
    n = context_slices * grid**2
    context, target, slices = anticipation_masks(steps, context_slices, grid**2, output_frames // tubelet)
    for row, step in enumerate(steps.tolist()):
        assert context[row].tolist() == list(range(n))
        assert target[row].tolist() == [n + grid**2 * step + k for k in range(grid**2 * output_frames // tubelet)]
    assert slices == context_slices + 7 + 1


def test_model_predicts_the_future_slice_with_the_pretraining_predictor_and_round_trips(tmp_path):
    model = tiny_model().eval()
    clips, times = torch.randn(2, 4, 3, 32, 32), torch.tensor([0.5, 1.0])
    encoded, predicted = model.anticipation_tokens(clips, times)
    assert encoded.shape == (2, 2 * 2 * 2, 64) and predicted.shape == (2, 2 * 2, 64)
    # Sample 1 skips int(1.0 * 4 / 2) = 2 slices after its 2 context slices: grid slice 4 of a 5-slice grid.
    alone = model.vjepa2.predictor(encoded[1:], torch.arange(8)[None], 16 + torch.arange(4)[None], (5, 2, 2), 1)
    torch.testing.assert_close(predicted[1:], alone)
    labels = torch.tensor([[0, 1, 2], [2, 3, 5]])
    out = model(clips, times, labels=labels)
    assert out.verb_logits.shape == (2, 3) and out.noun_logits.shape == (2, 4) and out.action_logits.shape == (2, 6)
    expected = sum(sigmoid_focal_loss(logits, labels[:, i], 0.25, 2.0)
                   for i, logits in enumerate((out.verb_logits, out.noun_logits, out.action_logits)))
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    assert all(p.grad is not None for n, p in model.head.named_parameters() if "k_proj.bias" not in n)
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, VJEPA2ForActionAnticipation)
    with torch.no_grad():
        torch.testing.assert_close(loaded(clips, times).action_logits, model(clips, times).action_logits)


@pytest.mark.parametrize("features, tokens", [("encoder", 8), ("predictor", 4), ("both", 12)])
def test_table_20_switch_chooses_the_tokens_the_probe_reads(features, tokens):
    model = tiny_model(anticipation_features=features).eval()
    seen = {}
    model.head.pooler.cross_attention_layer.register_forward_hook(lambda m, i, o: seen.update(n=i[1].shape[1]))
    model(torch.randn(1, 4, 3, 32, 32), 1.0)
    assert seen["n"] == tokens


def test_sigmoid_focal_loss_matches_its_definition():
    logits, target = torch.tensor([[2.0, -1.0, 0.5]]), torch.tensor([0])
    p = torch.sigmoid(logits)[0]
    terms = [-0.25 * (1 - p[0]) ** 2 * torch.log(p[0])] + [-0.75 * p[k] ** 2 * torch.log(1 - p[k]) for k in (1, 2)]
    torch.testing.assert_close(sigmoid_focal_loss(logits, target, 0.25, 2.0), sum(terms))


def test_bad_inputs_fail_before_anything_runs():
    model = tiny_model()
    clips = torch.randn(1, 4, 3, 32, 32)
    # 4 context + int(2.5 * 4 / 2) * 2 = 10 skipped + 2 predicted frames > max_frames = 12
    with pytest.raises(ValueError, match="frame budget max_frames=12"):
        model(clips, 2.5)
    with pytest.raises(ValueError, match="context has 1 frames"):
        model(torch.randn(1, 1, 3, 32, 32), 1.0)
    with pytest.raises(ValueError, match=r"noun ids must lie in \[0, 4\)"):
        model(clips, 1.0, labels=torch.tensor([[0, 4, 1]]))
    with pytest.raises(StrictDataclassClassValidationError, match="anticipation_features must be one of"):
        tiny_model(anticipation_features="future")


def test_context_ends_anticipation_time_before_the_anticipation_point():
    # facebookresearch/vjepa2 epickitchens.py: af = int(start * p + (1 - p) * stop - int(t * video_fps)), one frame
    # every int(video_fps / fps), frames before the video start repeat frame 0.
    segment = ActionSegment(source=None, fps=50.0, start_frame=400, stop_frame=500, verb=0, noun=0, action=0)
    indices = context_indices(segment, time=1.0, point=0.25, num_frames=8, fps=8.0)
    end = int(400 * 0.25 + 0.75 * 500 - 50)
    assert indices.tolist() == list(range(end - 8 * 6, end, 6))
    early = ActionSegment(source=None, fps=8.0, start_frame=10, stop_frame=10, verb=0, noun=0, action=0)
    assert context_indices(early, time=1.0, point=0.0, num_frames=4, fps=4.0).tolist() == [0, 0, 0, 0]


def test_mean_class_recall_averages_over_the_classes_present():
    logits = torch.tensor([[5.0, 1, 0], [5.0, 1, 0], [0, 5.0, 1], [0, 1, 5.0]])
    labels = torch.tensor([0, 1, 1, 2])
    assert mean_class_recall(logits, labels, 1) == pytest.approx((1 + 0.5 + 1) / 3)
    assert mean_class_recall(logits, labels, 2) == pytest.approx((1 + 1 + 1) / 3)


def test_sweep_learns_anticipation_labels_from_cached_tokens():
    torch.manual_seed(0)
    model = tiny_model()
    task = AnticipationTask(model.config)
    centers = torch.randn(6, 64) * 3
    actions = torch.arange(60) % 6
    labels = torch.stack((actions // 2, actions % 4, actions), dim=1)
    features = centers[actions][:, None, None, :] + torch.randn(60, 2, 5, 64)
    args = ProbeArgs(learning_rates=(3e-3,), weight_decays=(0.01,), epochs=8, batch_size=16, num_heads=4, num_blocks=1)
    result = train_probe_sweep(model.config, features[:40], labels[:40], {"val": (features[40:], labels[40:])}, task,
                               args, select_on="val")
    assert result["best"]["val_action_recall@1"] == 1.0 and result["best"]["val_verb_recall@1"] == 1.0
    with pytest.raises(ValueError, match=r"train labels: action ids must lie in \[0, 6\)"):
        train_probe_sweep(model.config, features[:2], torch.tensor([[0, 0, 6], [0, 0, 0]]),
                          {"val": (features[40:], labels[40:])}, task, args, select_on="val")
    assert np.isfinite(result["heads"][0]["val_noun_recall@5"])


def when_tokens(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Bags of tokens that differ only in when they sit: a marker added to slice 0 (verb 0) or slice 1 (verb 1) of a
    2 x 2 x 2 grid ("moving, then still" vs "still, then moving"); a position-blind probe sees the same bag."""
    generator = torch.Generator().manual_seed(seed)
    marker = torch.randn(64, generator=torch.Generator().manual_seed(99))
    verbs = torch.arange(count) % 2
    tokens = 0.1 * torch.randn(count, 8, 64, generator=generator)
    tokens.view(count, 2, 4, 64)[torch.arange(count), verbs] += marker
    return tokens[:, None], torch.stack((verbs, verbs, verbs), dim=1)


@pytest.mark.parametrize("position_embedding, learns", [(None, False), ("sincos", True)])
def test_sweep_reads_where_tokens_are_only_with_a_position_embedding(position_embedding, learns):
    # The anticipation head once dropped ProbeArgs.position_embedding, so every anticipation probe was position-blind
    # and could not tell "moving, then still" from "still, then moving" in RoPE tokens that do not carry positions.
    model = tiny_model()
    train, train_labels = when_tokens(64, 0)
    test, test_labels = when_tokens(64, 1)
    args = ProbeArgs(learning_rates=(3e-3,), weight_decays=(0.01,), epochs=10, batch_size=16, num_heads=4,
                     num_blocks=1, position_embedding=position_embedding)
    result = train_probe_sweep(model.config, train, train_labels, {"test": (test, test_labels)},
                               AnticipationTask(model.config), args, select_on="test", grid_size=(2, 2, 2))
    verb = result["best"]["test_verb_recall@1"]
    assert verb == 1.0 if learns else verb < 0.75


def test_model_with_a_position_embedding_places_predicted_tokens_after_the_context(tmp_path):
    model = tiny_model(anticipation_features="both", probe_position_embedding="sincos").eval()
    seen = {}
    model.head.pooler.register_forward_hook(lambda m, i, o: seen.update(grid=i[1]))
    clips = torch.randn(2, 4, 3, 32, 32)
    logits = model(clips, 1.0).action_logits
    assert seen["grid"] == (3, 2, 2)  # 2 context slices of 2 x 2 tokens, then the predicted slice
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert loaded.head.pooler.position_embedding == "sincos"
    with torch.no_grad():
        torch.testing.assert_close(loaded(clips, 1.0).action_logits, logits)
    with pytest.raises(ValueError, match="not whole slices of a 2 x 2 token grid"):
        anticipation_grid(6, 2, 2)
