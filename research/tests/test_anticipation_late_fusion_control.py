import json

import pytest
import torch
from research_module import load_research_module
from tiny_anticipation import make_world_and_encoder
from vjepa_vlm.scripts import run_anticipation

control = load_research_module("anticipation_late_fusion_control")

SHARED = ["--val-fraction", "0.25", "--train-draws", "1", "--context-frames", "4", "--fps", "4", "--max-frames", "12",
          "--resolution", "32", "--num-heads", "4", "--num-blocks", "1", "--epochs", "1", "--batch-size", "8",
          "--learning-rates", "1e-3", "--weight-decays", "0.01", "--seeds", "0", "--features", "encoder", "both"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_world_and_encoder(tmp_path_factory.mktemp("late_control"))


def test_the_both_row_reads_the_context_and_its_last_slice_with_late_fusion(root, monkeypatch):
    common = ["--world", str(root / "world"), "--encoder", str(root / "encoder"), *SHARED]
    seen = {}
    sweep = run_anticipation.train_probe_sweep

    def record(config, train_features, *args):
        seen[train_features.shape[-2]] = (train_features, args[2].fusion)
        return sweep(config, train_features, *args)

    monkeypatch.setattr(run_anticipation, "train_probe_sweep", record)
    summary = control.main(["--output", str(root / "copy.json"), "--", *common])
    monkeypatch.undo()
    assert json.loads((root / "copy.json").read_text()) == summary
    assert summary["second_stream"] == "last context slice" and summary["fusion"] == "late"
    (context, early), (both, late) = seen[8], seen[12]  # 2 context slices of 2 x 2 tokens, then one more slice
    assert early == "early" and late == "late"
    assert torch.equal(both[..., :8, :], context) and torch.equal(both[..., 8:, :], context[..., 4:, :])
    assert run_anticipation.select_anticipation_features.__module__ == "vjepa_vlm.modeling_vjepa2_anticipation"
    plain = run_anticipation.main(common + ["--fusion", "late", "--output", str(root / "late.json")])
    assert plain["features"]["encoder"] == summary["features"]["encoder"]
    assert plain["features"]["both"] != summary["features"]["both"]
    with pytest.raises(SystemExit):
        control.main(["--output", str(root / "x.json"), "--", *common, "--fusion", "early"])
