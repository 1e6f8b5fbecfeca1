"""vjepa-anticipation end to end on a tiny anticipation world: result JSON, recall tables, PNG."""

import json
import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from vjepa_vlm import VJEPA2Config, VJEPA2Model
from vjepa_vlm.data.synthetic_world import generate_world
from vjepa_vlm.modeling_vjepa2_anticipation import VJEPA2ForActionAnticipation
from vjepa_vlm.scripts import run_anticipation

TINY = {
    "hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4, "patch_size": 16, "pred_hidden_size": 32,
    "pred_num_attention_heads": 4, "pred_num_hidden_layers": 1,
}
TIMES = (0.5, 1.0)


def tiny_argv(root: Path, output: Path, *, features=("encoder",), seeds=("0",), eval_times=("1.0",)) -> list[str]:
    """run_anticipation's arguments for the tiny world and encoder under `root`: one probe block, one epoch."""
    return [
        "--encoder", str(root / "encoder"), "--world", str(root / "world"), "--features", *features, "--seeds", *seeds,
        "--train-draws", "1", "--val-fraction", "0.25", "--eval-times", *eval_times, "--context-frames", "4",
        "--fps", "4", "--max-frames", "12", "--resolution", "32", "--num-blocks", "1", "--num-heads", "4",
        "--epochs", "1", "--batch-size", "8", "--learning-rates", "1e-3", "--weight-decays", "0.01",
        "--output", str(output),
    ]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("anticipation")
    generate_world(root / "world", n_train=24, n_test=8, seed=0, frames=32, size=64, fps=8.0,
                   motions=("bounce", "start", "stop", "push", "collide"), anticipation_s=0.5)
    torch.manual_seed(0)
    VJEPA2Model(VJEPA2Config(**TINY)).save_pretrained(root / "encoder")
    argv = tiny_argv(root, root / "out.json", features=("encoder", "both"), seeds=("0", "1"),
                     eval_times=tuple(map(str, TIMES))) + ["--plot", str(root / "recall.png")]
    return root, run_anticipation.main(argv)


def test_result_json_has_every_row_time_and_seed(run):
    root, summary = run
    assert json.loads((root / "out.json").read_text()) == summary
    assert summary["complete"] is True
    assert summary["num_items"]["test@0.5s"] == summary["num_items"]["test@1s"] == 8
    assert set(summary["features"]) == {"encoder", "both"}
    for result in summary["features"].values():
        assert [seed["seed"] for seed in result["seeds"]] == [0, 1]
        for split in ("val", "test@0.5s", "test@1s"):
            stats = result["recall"][split]["action_recall@5"]
            assert 0 <= stats["mean"] <= 1 and stats["std"] is not None
    with Image.open(root / "recall.png") as image:
        colors = {color for _, color in image.convert("RGB").getcolors(1 << 20)}
    # One line per features row (encoder blue, both red), drawn in every panel: recall@1 and @5 of 3 tasks.
    assert {(31, 119, 180), (214, 39, 40)} <= colors and (44, 160, 44) not in colors


def test_tables_print_the_json_numbers(run):
    _, summary = run
    text = run_anticipation.recall_tables(summary, list(TIMES), 1.0)
    lines = text.splitlines()
    both = next(line for line in lines if line.startswith("| both |"))
    recall = summary["features"]["both"]["recall"]
    expected = f"{100 * recall['test@1s']['verb_recall@1']['mean']:.1f} ± {100 * recall['test@1s']['verb_recall@1']['std']:.1f}"
    assert both.split(" | ")[1] == expected
    per_time = [line for line in lines if line.startswith("| encoder |")][1]
    assert len(re.findall(r" / ", per_time)) == len(TIMES)
    # A reference time that was not evaluated falls back to the first evaluated one.
    assert "test@0.5s" in run_anticipation.recall_tables(summary, list(TIMES), 0.75).splitlines()[0]


def test_position_embedding_reaches_the_probe_and_the_saved_model(run, tmp_path):
    root, _ = run
    argv = tiny_argv(root, tmp_path / "out.json", features=("both",)) + [
        "--position-embedding", "sincos", "--save-model", str(tmp_path / "model")]
    summary = run_anticipation.main(argv)
    assert summary["position_embedding"] == "sincos"
    model = VJEPA2ForActionAnticipation.from_pretrained(tmp_path / "model").eval()
    assert model.head.pooler.position_embedding == "sincos" and model.config.anticipation_features == "both"
    with torch.no_grad():
        out = model(torch.randn(1, 4, 3, 32, 32), 1.0)
    assert torch.isfinite(out.action_logits).all()


def test_late_fusion_changes_only_the_both_row_and_reaches_the_saved_model(run, tmp_path):
    root, early = run
    argv = tiny_argv(root, tmp_path / "late.json", features=("encoder", "both"), seeds=("0", "1"),
                     eval_times=tuple(map(str, TIMES))) + ["--fusion", "late"]
    late = run_anticipation.main(argv)
    assert early["fusion"] == "early" and late["fusion"] == "late"
    assert late["features"]["encoder"] == early["features"]["encoder"]  # a single-stream row is read as before
    assert late["features"]["both"]["seeds"][0]["heads"] != early["features"]["both"]["seeds"][0]["heads"]
    argv = tiny_argv(root, tmp_path / "saved.json", features=("both",)) + [
        "--fusion", "late", "--position-embedding", "sincos", "--save-model", str(tmp_path / "model")]
    run_anticipation.main(argv)
    model = VJEPA2ForActionAnticipation.from_pretrained(tmp_path / "model").eval()
    assert model.config.anticipation_fusion == "late" and hasattr(model.head, "predicted_pooler")
    with torch.no_grad():
        assert torch.isfinite(model(torch.randn(1, 4, 3, 32, 32), 1.0).action_logits).all()


def test_late_delta_fusion_reaches_the_sweep_and_the_saved_model(run, tmp_path):
    root, _ = run
    argv = tiny_argv(root, tmp_path / "delta.json", features=("both",)) + [
        "--fusion", "late_delta", "--position-embedding", "sincos", "--save-model", str(tmp_path / "model")]
    summary = run_anticipation.main(argv)
    late = run_anticipation.main(tiny_argv(root, tmp_path / "late.json", features=("both",)) + [
        "--fusion", "late", "--position-embedding", "sincos"])
    assert summary["fusion"] == "late_delta"
    assert summary["features"]["both"]["seeds"][0]["heads"] != late["features"]["both"]["seeds"][0]["heads"]
    model = VJEPA2ForActionAnticipation.from_pretrained(tmp_path / "model").eval()
    assert model.config.anticipation_fusion == "late_delta" and hasattr(model.head, "change_projection")


def test_a_run_stopped_part_way_keeps_the_seeds_it_finished(run, tmp_path, monkeypatch):
    root, _ = run
    real_sweep = run_anticipation.train_probe_sweep
    calls = []

    def sweep_then_stop(*args, **kwargs):
        calls.append(1)
        if len(calls) > 3:  # encoder seeds 0 and 1, then both seed 0
            raise KeyboardInterrupt
        return real_sweep(*args, **kwargs)

    monkeypatch.setattr(run_anticipation, "train_probe_sweep", sweep_then_stop)
    argv = tiny_argv(root, tmp_path / "out.json", features=("encoder", "both"), seeds=("0", "1"))
    with pytest.raises(KeyboardInterrupt):
        run_anticipation.main(argv)
    partial = json.loads((tmp_path / "out.json").read_text())
    assert list(partial["features"]) == ["encoder", "both"] and partial["complete"] is False
    assert [seed["seed"] for seed in partial["features"]["encoder"]["seeds"]] == [0, 1]
    assert [seed["seed"] for seed in partial["features"]["both"]["seeds"]] == [0]
    assert partial["features"]["both"]["recall"]["test@1s"]["action_recall@5"]["std"] is None  # one seed so far


def test_a_checkpoint_folder_reads_the_model_the_predictor_was_trained_with(tmp_path):
    checkpoint = tmp_path / "step_00000800"
    for name in ("online", "target"):
        (checkpoint / name).mkdir(parents=True)
        (checkpoint / name / "config.json").write_text("{}")
    assert run_anticipation.resolve_encoder_dir(checkpoint, "online") == checkpoint / "online"
    assert run_anticipation.resolve_encoder_dir(checkpoint, "target") == checkpoint / "target"
    assert run_anticipation.resolve_encoder_dir(checkpoint / "target", "online") == checkpoint / "target"
    assert run_anticipation.parse_args(["--encoder", "x", "--world", "w", "--output", "o"]).checkpoint_model == "online"
    with pytest.raises(FileNotFoundError, match=r"neither a VJEPA2Model directory .* nor a pretraining checkpoint"):
        run_anticipation.resolve_encoder_dir(tmp_path, "online")


def test_train_clips_keep_every_action_class_share_and_are_nested():
    labels = torch.tensor([0] * 20 + [1] * 7 + [2] * 3 + [3] * 1 + [4] * 9)
    small = run_anticipation.stratified_subset(labels, 10, seed=3)
    large = run_anticipation.stratified_subset(labels, 25, seed=3)
    assert len(small) == 10 and len(large) == 25 and small.unique().numel() == 10
    assert set(small.tolist()) <= set(large.tolist())
    assert torch.equal(small, small.sort().values)
    assert torch.equal(small, run_anticipation.stratified_subset(labels, 10, seed=3))
    assert not torch.equal(large, run_anticipation.stratified_subset(labels, 25, seed=4))
    for subset in (small, large):
        share = len(subset) / len(labels)
        for label in range(5):
            size = int((labels == label).sum())
            taken = int((labels[subset] == label).sum())
            assert int(share * size) <= taken <= int(share * size) + 1, (label, taken)
    for count in (0, len(labels) + 1):
        with pytest.raises(ValueError, match=r"--train-clips .* must lie in 1\.\.40"):
            run_anticipation.stratified_subset(labels, count, seed=0)


def test_train_clips_shrink_only_the_probe_training_set(run, tmp_path):
    root, full = run
    argv = tiny_argv(root, tmp_path / "out.json")
    summary = run_anticipation.main(argv + ["--train-clips", "7"])
    assert summary["train_clips"] == 7 and summary["num_items"]["train"] == 7 < full["num_items"]["train"]
    assert summary["num_items"]["val"] == full["num_items"]["val"]
    assert summary["num_items"]["test@1s"] == full["num_items"]["test@1s"]
    with pytest.raises(ValueError, match="--train-clips 99: must lie in 1.."):
        run_anticipation.main(tiny_argv(root, tmp_path / "bad.json") + ["--train-clips", "99"])
    assert not (tmp_path / "bad.json").exists()
