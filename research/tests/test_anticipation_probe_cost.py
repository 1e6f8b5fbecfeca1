import json

import torch
from research_module import load_research_module
from vjepa_vlm.data.synthetic_world import generate_world

from vjepa_vlm import VJEPA2Config, VJEPA2Model

cost = load_research_module("anticipation_probe_cost")


def test_cost_times_every_depth_and_features_row_and_scales_to_the_run(tmp_path):
    world = tmp_path / "world"
    generate_world(world, n_train=6, n_test=2, seed=0, frames=32, size=64, fps=8.0,
                   motions=("start", "stop"), anticipation_s=0.5)
    config = VJEPA2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, patch_size=16, crop_size=32,
                          pred_hidden_size=16, pred_num_attention_heads=2, pred_num_hidden_layers=1)
    torch.manual_seed(0)
    VJEPA2Model(config).save_pretrained(tmp_path / "encoder")
    summary = cost.main(["--world", str(world), "--encoder", str(tmp_path / "encoder"), "--contexts", "4",
                         "--run-samples", "100", "--epochs", "2", "--batch-size", "8", "--steps", "1",
                         "--context-frames", "4", "--max-frames", "12", "--resolution", "32", "--num-heads", "4",
                         "--output", str(tmp_path / "cost.json")])
    assert json.loads((tmp_path / "cost.json").read_text()) == summary
    assert summary["run_steps"] == 2 * 13
    # 4 frames = 2 tubelet slices of 2 x 2 tokens; the predictor fills one slice.
    tokens = {(h["blocks"], h["features"]): h["tokens"] for h in summary["heads"]}
    assert tokens == {(b, f): n for b in (1, 2) for f, n in (("encoder", 8), ("predictor", 4), ("both", 12))}
    for head in summary["heads"]:
        assert head["step_s"] > 0 and abs(head["head_s"] - 26 * head["step_s"]) < 1e-9
    assert summary["run_encode_s"] == 5400 * summary["encode_s_per_context"] > 0
