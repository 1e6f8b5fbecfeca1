import json

import pytest
from research_module import load_research_module
from tiny_anticipation import make_world_and_encoder
from vjepa_vlm.scripts import run_anticipation

probe_gap = load_research_module("anticipation_probe_gap")

SHARED = ["--val-fraction", "0.25", "--train-draws", "2", "--context-frames", "4", "--fps", "4", "--max-frames", "12",
          "--resolution", "32", "--num-heads", "4", "--num-blocks", "1", "--epochs", "2", "--batch-size", "8",
          "--learning-rates", "1e-3", "--weight-decays", "0.01", "--seeds", "0"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_world_and_encoder(tmp_path_factory.mktemp("gap"))


def test_probe_on_the_protocols_draws_is_run_anticipations_encoder_row(root):
    common = ["--world", str(root / "world"), "--encoder", str(root / "encoder"), *SHARED]
    gap = probe_gap.main(common + ["--max-iter", "20", "--output", str(root / "gap.json")])
    reference = run_anticipation.main(common + ["--features", "encoder", "--eval-times", "1.0",
                                                "--position-embedding", "sincos", "--output", str(root / "ant.json")])
    assert json.loads((root / "gap.json").read_text()) == gap
    best = reference["features"]["encoder"]["seeds"][0]["best"]
    row = gap["probe"]["draws"]["seeds"][0]
    for metric in probe_gap.METRICS:
        assert row[metric] == best[f"test@1s_{metric}"]
    # 24 training clips, a quarter of each action class held out; one context each at 1 s, two drawn ones each
    assert gap["num_items"]["at_time"] == gap["num_items"]["draws"] == reference["num_items"]["train"]
    assert gap["num_items"]["val"] == reference["num_items"]["val"] and gap["num_items"]["test"] == 8
    for reader in ("linear", "probe"):
        for name in ("at_time", "draws"):
            scores = gap[reader][name] if reader == "linear" else gap[reader][name]["mean"]
            assert set(scores) == set(probe_gap.METRICS) and all(0 <= v <= 1 for v in scores.values())
