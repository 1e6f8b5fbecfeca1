"""research/diagnose_smollm2_vlm.py: its spread measure, and every read-out on a tiny VLM folder and a tiny world."""

import math
import statistics
from pathlib import Path

import pytest
import torch
from research_module import load_research_module
from vjepa_vlm.data.manifests import read_jsonl
from vjepa_vlm.data.synthetic_world import generate_world

RESEARCH = Path(__file__).parents[1]
torch.set_num_threads(1)



diagnosis = load_research_module("diagnose_smollm2_vlm")
tiny_vlm = load_research_module("diagnose_vlm_mc")


def test_token_spread_separates_a_soft_prompt_from_clip_dependent_tokens():
    constant = [torch.ones(3, 4) * 5.0 for _ in range(4)]
    same = diagnosis.token_spread(constant)
    assert same["across_clips"] == pytest.approx(0.0) and same["within_clip"] == pytest.approx(0.0)
    assert same["clip_cosine"] == pytest.approx(1.0) and same["token_norm"] == pytest.approx(10.0)
    # Two clips mirror each other around the mean (1, 1): each sits sqrt(2) away from a mean of norm sqrt(2).
    mirrored = diagnosis.token_spread([torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 2.0]])])
    assert mirrored["across_clips"] == pytest.approx(1.0) and mirrored["clip_cosine"] == pytest.approx(0.0)
    tokens = diagnosis.token_spread([torch.tensor([[1.0, 0.0], [3.0, 0.0]])])
    assert tokens["within_clip"] == pytest.approx(0.5) and tokens["across_clips"] == pytest.approx(0.0)


@pytest.fixture(scope="module")
def vlm_and_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("smollm2_diagnosis")
    world = root / "world"
    generate_world(world, n_train=6, n_test=4, seed=3)
    args = tiny_vlm.parse_args(["--world", str(world), "--proj", "attentive_pooler", "--pool", "16"])
    model, processor = tiny_vlm.build_model(args, tiny_vlm.tiny_tokenizer(world, args.vocab))
    model.save_pretrained(root / "vlm")
    processor.save_pretrained(root / "vlm")
    return root / "vlm", world


def test_every_read_out_runs_on_a_vlm_folder(vlm_and_world):
    vlm, world = vlm_and_world
    captions = read_jsonl(world / "test" / "video_captions.jsonl")[:3]
    videos = {row["video"] for row in captions}
    mc = [r for r in read_jsonl(world / "test" / "video_qa.jsonl") if r["format"] == "mc" and r["video"] in videos]
    results = diagnosis.diagnose_vlm(vlm, world, captions, mc)
    assert results["caption_video_gap"] == pytest.approx(results["caption_nll_other"] - results["caption_nll_own"])
    gaps = results["caption_video_gap_per_caption"]
    assert len(gaps) == 3 and results["caption_video_gap_se"] == pytest.approx(statistics.stdev(gaps) / 3 ** 0.5)
    # Another clip's video reaches the LLM: the caption NLL changes.
    assert results["caption_nll_own"] != results["caption_nll_other"]
    for readout in ("letter", "letter_with_hint"):
        assert 0 <= results[readout]["accuracy"] <= 1 and 1 / len(mc) <= results[readout]["most_common_letter_share"] <= 1
    visual = results["visual_tokens"]
    for part in ("projector", "encoder"):
        assert all(math.isfinite(v) for v in visual[part].values())
        assert visual[part]["across_clips"] > 0 and -1 <= visual[part]["clip_cosine"] <= 1
    assert visual["text_embedding_norm"] > 0
