import json

import numpy as np
import torch
from research_module import load_research_module
from vjepa_vlm.data.epic_kitchens import read_anticipation_manifest
from vjepa_vlm.data.synthetic_world import generate_world

from vjepa_vlm import VJEPA2Config, VJEPA2Model
from vjepa_vlm.modeling_vjepa2_anticipation import VJEPA2ForActionAnticipation

baseline = load_research_module("anticipation_pixel_baseline")


def test_pixel_baseline_sees_motion_only_where_the_context_moves(tmp_path):
    world = tmp_path / "world"
    generate_world(world, n_train=24, n_test=8, seed=0, frames=32, size=64, fps=8.0,
                   motions=("start", "stop", "bounce"), anticipation_s=0.5)
    segments = read_anticipation_manifest(world / "train" / "anticipation.jsonl", world)
    features = baseline.pixel_features(segments, 0.5, 4, 4.0, 64)
    assert features.shape == (len(segments), 3 * 3 * 256 + 3 * 256)
    motion = np.abs(features[:, : 3 * 3 * 256]).max(1)
    verbs = np.array([s.verb for s in segments])
    start = verbs == min(verbs, key=lambda v: motion[verbs == v].mean())  # "start": still until the event
    assert start.any() and (~start).any()
    assert motion[start].max() < 0.2 < motion[~start].min()  # codec noise vs a moving object

    summary = baseline.main(["--world", str(world), "--times", "0.25", "0.5", "--context-frames", "4",
                             "--output", str(tmp_path / "out.json")])
    assert json.loads((tmp_path / "out.json").read_text()) == summary
    assert set(summary["recall"]) == {"0.25", "0.5"}
    for scores in summary["recall"].values():
        assert set(scores) == {f"{t}_recall@{k}" for t in ("verb", "noun", "action") for k in (1, 5)}
        assert all(0 <= value <= 1 for value in scores.values())
        assert scores["verb_recall@5"] == 1.0  # three verbs: any top 5 holds them all


def test_token_read_out_has_one_block_per_slice_difference_and_the_last_slice(tmp_path):
    world = tmp_path / "world"
    generate_world(world, n_train=12, n_test=4, seed=1, frames=32, size=64, fps=8.0,
                   motions=("start", "stop"), anticipation_s=0.5)
    config = VJEPA2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, patch_size=16,
                          pred_hidden_size=16, pred_num_attention_heads=2, pred_num_hidden_layers=1)
    torch.manual_seed(0)
    VJEPA2Model(config).save_pretrained(tmp_path / "encoder")
    summary = baseline.main(["--world", str(world), "--times", "0.5", "--context-frames", "4", "--encoder",
                             str(tmp_path / "encoder"), "--output", str(tmp_path / "out.json")])
    assert summary["features"] == "pretrained encoder tokens"
    segments = read_anticipation_manifest(world / "test" / "anticipation.jsonl", world)
    model = VJEPA2ForActionAnticipation.from_vjepa2(VJEPA2Model(config), num_verbs=1, num_nouns=1, num_actions=1,
                                                    frames_per_second=4.0, context_frames=4, max_frames=12)
    features = baseline.token_features(model, segments, 0.5, 64)
    assert features.shape == (len(segments), (1 + 1) * 16 * 32)  # 2 slices: one difference and the last slice
    predicted = baseline.token_features(model, segments, 0.5, 64, tokens="predictor")
    assert predicted.shape == (len(segments), 16 * 32)  # the predicted slice alone: nothing to difference
    both = baseline.token_features(model, segments, 0.5, 64, tokens="both")
    assert both.shape == (len(segments), (2 + 1) * 16 * 32)  # 2 context slices + the predicted one
    np.testing.assert_allclose(both[:, : 16 * 32], features[:, : 16 * 32], atol=1e-6)  # the context's difference
    np.testing.assert_allclose(both[:, -16 * 32 :], predicted, atol=1e-6)  # the last slice is the predicted one
