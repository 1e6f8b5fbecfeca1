"""Late fusion of the anticipation probe (`anticipation_fusion`): each stream pooled alone, the pooled features
concatenated, the second pooler optionally also reading each predicted token's change from the context's last slice
(`late_delta`); the reference's early fusion (one pooler over the concatenated tokens) stays the
default."""

import pytest
import torch
import torch.nn.functional as F
from huggingface_hub.errors import StrictDataclassClassValidationError
from test_anticipation import tiny_model
from transformers import AutoModel
from vjepa_vlm.eval.anticipation import AnticipationTask
from vjepa_vlm.eval.probe import ProbeArgs, train_probe_sweep

from vjepa_vlm.modeling_vjepa2_anticipation import (
    VJEPA2AnticipationHead,
    change_stream,
    select_anticipation_features,
)

torch.set_num_threads(1)


def test_early_fusion_is_the_default_and_one_pooler_over_the_concatenation():
    model = tiny_model(probe_position_embedding="sincos").eval()
    assert model.config.anticipation_fusion == "early"
    assert not hasattr(model.head, "predicted_pooler") and model.head.verb_classifier.in_features == 64
    encoded, predicted = torch.randn(2, 8, 64), torch.randn(2, 4, 64)
    tokens = select_anticipation_features(encoded, predicted, "both")
    assert torch.equal(tokens, torch.cat((encoded, predicted), dim=1))
    with torch.no_grad():
        pooled = model.head.pooler(tokens, (3, 2, 2))
        expected = torch.cat((model.head.verb_classifier(pooled[:, 0]), model.head.noun_classifier(pooled[:, 1]),
                              model.head.action_classifier(pooled[:, 2])), dim=-1)
        assert torch.equal(model.head(tokens, (3, 2, 2)), expected)


def test_late_fusion_pools_each_stream_alone_and_concatenates():
    model = tiny_model(anticipation_fusion="late", probe_position_embedding="sincos").eval()
    head = model.head
    early = tiny_model().head
    # Two poolers of the early head's size, classifiers of twice its input width.
    pooler_size = sum(p.numel() for p in early.pooler.parameters())
    assert sum(p.numel() for p in head.predicted_pooler.parameters()) == pooler_size
    assert head.verb_classifier.weight.shape == (3, 128)
    assert not torch.equal(head.pooler.query_tokens, head.predicted_pooler.query_tokens)
    encoded, predicted = torch.randn(2, 8, 64), torch.randn(2, 4, 64)
    tokens = select_anticipation_features(encoded, predicted, "both", "late")
    with torch.no_grad():
        # 2 context slices then 1 predicted slice of 2 x 2 tokens; each stream with its own grid, as if read alone.
        pooled = torch.cat((head.pooler(encoded, (2, 2, 2)), head.predicted_pooler(predicted, (1, 2, 2))), dim=-1)
        expected = torch.cat((head.verb_classifier(pooled[:, 0]), head.noun_classifier(pooled[:, 1]),
                              head.action_classifier(pooled[:, 2])), dim=-1)
        torch.testing.assert_close(head(tokens, (3, 2, 2)), expected, rtol=0, atol=0)
        # The context half of the classifiers alone gives a single-stream encoder head's logits.
        single = VJEPA2AnticipationHead(tiny_model(probe_position_embedding="sincos").config).eval()
        single.pooler.load_state_dict(head.pooler.state_dict())
        for name in ("verb_classifier", "noun_classifier", "action_classifier"):
            source, target = getattr(head, name), getattr(single, name)
            target.weight.copy_(source.weight[:, :64])
            target.bias.copy_(source.bias)
            source.weight[:, 64:] = 0
        torch.testing.assert_close(head(tokens, (3, 2, 2)), single(encoded, (2, 2, 2)))


def test_change_stream_is_each_predicted_tokens_change_from_the_same_position_in_the_last_context_slice():
    context, predicted = 3 * torch.randn(2, 8, 64) + 1, torch.randn(2, 8, 64)  # 2 context slices, 2 predicted ones
    change = change_stream(context, predicted, 4)
    last = context[:, 4:]
    for k in range(8):  # predicted token k sits at position k % 4 of its slice
        expected = F.layer_norm(predicted[:, k], (64,)) - F.layer_norm(last[:, k % 4], (64,))
        torch.testing.assert_close(change[:, k], expected, rtol=0, atol=0)
    # The copy control's slice (the context's last slice itself, at any scale) has no change at all.
    assert change_stream(context, last, 4).abs().max() == 0
    assert change_stream(context, 2 * last, 4).abs().max() < 1e-5


def test_late_delta_head_gives_the_second_pooler_each_predicted_token_with_its_change():
    head = tiny_model(anticipation_fusion="late_delta", probe_position_embedding="sincos").eval().head
    late = tiny_model(anticipation_fusion="late").head
    extra = sum(p.numel() for p in head.parameters()) - sum(p.numel() for p in late.parameters())
    assert extra == 2 * 64 * 64 + 64  # the channel pair's projection
    encoded, predicted = torch.randn(2, 8, 64), torch.randn(2, 4, 64)
    tokens = select_anticipation_features(encoded, predicted, "both", "late_delta")
    change = change_stream(encoded, predicted, 4)
    with torch.no_grad():
        second = head.predicted_pooler(head.change_projection(torch.cat((predicted, change), -1)), (1, 2, 2))
        pooled = torch.cat((head.pooler(encoded, (2, 2, 2)), second), dim=-1)
        expected = torch.cat((head.verb_classifier(pooled[:, 0]), head.noun_classifier(pooled[:, 1]),
                              head.action_classifier(pooled[:, 2])), dim=-1)
        torch.testing.assert_close(head(tokens, (3, 2, 2)), expected, rtol=0, atol=0)
        # The second pooler sees the context's last slice through the change: moving it moves that pooler's output.
        moved = torch.cat((encoded[:, :4], encoded[:, 4:] + 1), 1)
        assert not torch.equal(head(torch.cat((moved, predicted), 1), (3, 2, 2)), head(tokens, (3, 2, 2)))


@pytest.mark.parametrize("fusion", ["late", "late_delta"])
def test_saved_late_fusion_models_reload_with_identical_logits(tmp_path, fusion):
    model = tiny_model(anticipation_fusion=fusion, probe_position_embedding="sincos").eval()
    clips, labels = torch.randn(2, 4, 3, 32, 32), torch.tensor([[0, 1, 2], [2, 3, 5]])
    out = model(clips, torch.tensor([0.5, 1.0]), labels=labels)
    out.loss.backward()
    assert model.head.predicted_pooler.query_tokens.grad.abs().sum() > 0
    if fusion == "late_delta":
        assert model.head.change_projection.weight.grad.abs().sum() > 0
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert loaded.config.anticipation_fusion == fusion and hasattr(loaded.head, "predicted_pooler")
    with torch.no_grad():
        again = loaded(clips, torch.tensor([0.5, 1.0]))
    for name in ("verb_logits", "noun_logits", "action_logits"):
        torch.testing.assert_close(getattr(again, name), getattr(out, name).detach(), rtol=0, atol=0)


def test_late_fusion_with_a_single_stream_feature_set_is_refused():
    for fusion in ("late", "late_delta"):
        with pytest.raises(StrictDataclassClassValidationError, match="needs anticipation_features='both'"):
            tiny_model(anticipation_features="encoder", anticipation_fusion=fusion)
        with pytest.raises(ValueError, match="late fusion .* needs the 'both' features, got 'encoder'"):
            select_anticipation_features(torch.randn(2, 8, 64), torch.randn(2, 4, 64), "encoder", fusion)
    with pytest.raises(StrictDataclassClassValidationError, match="anticipation_fusion must be one of"):
        tiny_model(anticipation_fusion="middle")
    encoded, predicted = torch.randn(2, 8, 64), torch.randn(2, 4, 64)
    with pytest.raises(ValueError, match="late fusion .* needs the 'both' features, got 'predictor'"):
        select_anticipation_features(encoded, predicted, "predictor", "late")
    head = tiny_model(anticipation_fusion="late").head
    with pytest.raises(ValueError, match="got 8 tokens: a single-stream feature set"):
        head(encoded, (2, 2, 2))
    with pytest.raises(ValueError, match="needs the tokens' grid_size"):
        head(torch.cat((encoded, predicted), dim=1))


def streams(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(count, 1, 12, 64) "both" tokens whose verb is marked only in the predicted slice (4 tokens) and whose noun
    only in the context (8 tokens)."""
    generator = torch.Generator().manual_seed(seed)
    markers = torch.randn(7, 64, generator=torch.Generator().manual_seed(99)) * 2
    verbs, nouns = torch.arange(count) % 3, (torch.arange(count) // 3) % 4
    tokens = 0.1 * torch.randn(count, 12, 64, generator=generator)
    tokens[:, :8] += markers[3 + nouns][:, None]
    tokens[:, 8:] += markers[verbs][:, None]
    return tokens[:, None], torch.stack((verbs, nouns, verbs * 2 + nouns % 2), dim=1)


@pytest.mark.parametrize("fusion", ["late", "late_delta"])
def test_sweep_trains_late_fusion_heads_on_the_both_features(fusion):
    model = tiny_model()
    train, train_labels = streams(72, 0)
    test, test_labels = streams(36, 1)
    args = ProbeArgs(learning_rates=(3e-3,), weight_decays=(0.01,), epochs=8, batch_size=16, num_heads=4,
                     num_blocks=1, position_embedding="sincos")
    result = train_probe_sweep(model.config, train, train_labels, {"test": (test, test_labels)},
                               AnticipationTask(model.config, fusion), args, select_on="test", grid_size=(3, 2, 2))
    assert result["probe"].heads[0].fusion == fusion
    assert result["best"]["test_verb_recall@1"] == 1.0 and result["best"]["test_noun_recall@1"] == 1.0
