import json

import numpy as np
import torch
from research_module import load_research_module
from vjepa_vlm.data.epic_kitchens import read_anticipation_manifest
from vjepa_vlm.data.synthetic_world import generate_world
from vjepa_vlm.eval.anticipation import context_indices, load_context

from vjepa_vlm import VJEPA2Config, VJEPA2Model
from vjepa_vlm.modeling_vjepa2_anticipation import VJEPA2ForActionAnticipation

future_slice = load_research_module("anticipation_future_slice")

CONFIG = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "patch_size": 16, "pred_hidden_size": 16,
          "pred_num_attention_heads": 2, "pred_num_hidden_layers": 1}


def test_real_slice_is_the_encoded_frames_where_the_predictor_is_asked_to_look(tmp_path):
    world = tmp_path / "world"
    generate_world(world, n_train=4, n_test=2, seed=0, frames=32, size=64, fps=8.0, motions=("start", "stop"),
                   anticipation_s=0.5)
    segments = read_anticipation_manifest(world / "train" / "anticipation.jsonl", world)[:3]
    torch.manual_seed(0)
    model = VJEPA2ForActionAnticipation.from_vjepa2(VJEPA2Model(VJEPA2Config(**CONFIG)), num_verbs=1, num_nouns=1,
                                                    num_actions=1, frames_per_second=4.0, context_frames=4,
                                                    max_frames=12).eval()
    torch.manual_seed(1)
    other = VJEPA2Model(VJEPA2Config(**CONFIG)).eval()
    seconds = 1.0  # int(1 * 4 / 2) = 2 slices skipped: the predicted slice is the context's 2 slices + 2
    out = future_slice.slices_at(model, segments, seconds, 64, target=other)
    assert out["context"].shape == (3, 2, 16, 32) and out["predicted"].shape == out["real"].shape == (3, 1, 16, 32)
    with torch.no_grad():
        for i, segment in enumerate(segments):
            frames = context_indices(segment, seconds, 0.0, 4, 4.0)
            frames = np.concatenate((frames, frames[-1] + 2 * np.arange(1, 7)))  # 6 more frames at 4 fps
            clip = load_context(segment, frames, 64)[None]
            real = other.encoder(clip).last_hidden_state.unflatten(1, (5, 16))[:, 4]
            torch.testing.assert_close(out["real"][i, 0], real[0])
            last = other.encoder(clip[:, :4]).last_hidden_state.unflatten(1, (2, 16))[:, 1]
            torch.testing.assert_close(out["last"][i, 0], last[0])
            own = model.vjepa2.encoder(clip[:, :4]).last_hidden_state.unflatten(1, (2, 16))
            torch.testing.assert_close(out["context"][i], own[0])


def test_summary_has_distances_and_read_outs_per_time(tmp_path):
    world = tmp_path / "world"
    generate_world(world, n_train=12, n_test=4, seed=1, frames=32, size=64, fps=8.0, motions=("start", "stop"),
                   anticipation_s=0.5)
    torch.manual_seed(0)
    VJEPA2Model(VJEPA2Config(**CONFIG)).save_pretrained(tmp_path / "encoder")
    summary = future_slice.main(["--world", str(world), "--encoder", str(tmp_path / "encoder"), "--times", "0.5",
                                 "--context-frames", "4", "--max-iter", "20", "--output", str(tmp_path / "out.json")])
    assert json.loads((tmp_path / "out.json").read_text()) == summary
    result = summary["results"]["0.5"]
    assert set(result["l1_to_real_slice"]) == {"predicted", "last context slice copied", "training mean of the real slice"}
    assert all(value > 0 for value in result["l1_to_real_slice"].values())
    assert set(result["recall"]) == {"context", "predicted slice", "real slice", "context + predicted slice",
                                     "context + real slice"}
    for scores in result["recall"].values():
        assert scores["verb_recall@5"] == 1.0 and 0 <= scores["action_recall@1"] <= 1  # two verbs: a top 5 holds both
