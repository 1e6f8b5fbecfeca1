import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from research_module import load_research_module
from tiny_anticipation import TINY, make_world_and_encoder
from vjepa_vlm.data.epic_kitchens import read_anticipation_manifest
from vjepa_vlm.eval.anticipation import context_indices, load_context
from vjepa_vlm.scripts import run_anticipation

from vjepa_vlm import VJEPA2Config, VJEPA2Model
from vjepa_vlm.modeling_vjepa2_anticipation import change_stream

control = load_research_module("anticipation_late_fusion_control")

SHARED = ["--val-fraction", "0.25", "--train-draws", "1", "--context-frames", "4", "--fps", "4", "--max-frames", "12",
          "--resolution", "32", "--num-heads", "4", "--num-blocks", "1", "--epochs", "1", "--batch-size", "8",
          "--learning-rates", "1e-3", "--weight-decays", "0.01", "--seeds", "0", "--features", "encoder", "both"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = make_world_and_encoder(tmp_path_factory.mktemp("late_control"))
    torch.manual_seed(1)  # a target encoder other than the online one, as a checkpoint's target/ is
    VJEPA2Model(VJEPA2Config(**TINY)).save_pretrained(root / "target")
    return root


def run_recording(root, monkeypatch, argv):
    """The control's summary and the training tokens of each row, keyed by their number of tokens."""
    seen = {}
    sweep = run_anticipation.train_probe_sweep

    def record(config, train_features, *args):
        seen[train_features.shape[-2]] = (train_features, args[2].fusion)
        return sweep(config, train_features, *args)

    monkeypatch.setattr(run_anticipation, "train_probe_sweep", record)
    summary = control.main(argv)
    monkeypatch.undo()
    return summary, seen


def test_the_both_row_reads_the_context_and_its_last_slice_with_late_fusion(root, monkeypatch):
    common = ["--world", str(root / "world"), "--encoder", str(root / "encoder"), *SHARED]
    summary, seen = run_recording(root, monkeypatch, ["--output", str(root / "copy.json"), "--", *common])
    assert json.loads((root / "copy.json").read_text()) == summary
    assert summary["second_stream"] == "last context slice" and summary["fusion"] == "late"
    (context, early), (both, late) = seen[8], seen[12]  # 2 context slices of 2 x 2 tokens, then one more slice
    assert early == "early" and late == "late"
    assert torch.equal(both[..., :8, :], context) and torch.equal(both[..., 8:, :], context[..., 4:, :])
    assert run_anticipation.extract_anticipation_tokens.__module__ == "vjepa_vlm.eval.anticipation"
    plain = run_anticipation.main(common + ["--fusion", "late", "--output", str(root / "late.json")])
    assert plain["features"]["encoder"] == summary["features"]["encoder"]
    assert plain["features"]["both"] != summary["features"]["both"]
    with pytest.raises(SystemExit):
        control.main(["--output", str(root / "x.json"), "--", *common, "--fusion", "early"])
    with pytest.raises(SystemExit):  # the copy needs no target encoder
        control.main(["--target-encoder", str(root / "target"), "--output", str(root / "x.json"), "--", *common])


def test_a_late_delta_reader_reads_the_copy_with_no_change(root, monkeypatch):
    common = ["--world", str(root / "world"), "--encoder", str(root / "encoder"), *SHARED]
    summary, seen = run_recording(root, monkeypatch, ["--fusion", "late_delta", "--output", str(root / "delta.json"),
                                                      "--", *common])
    assert summary["fusion"] == "late_delta" and summary["second_stream"] == "last context slice"
    (_, early), (both, fusion) = seen[8], seen[12]
    assert early == "early" and fusion == "late_delta"
    # The head's change input for the copy is zero by construction: under this reader the copy row reads the
    # context alone.
    assert change_stream(both[:, 0, :8], both[:, 0, 8:], 4).abs().max() == 0
    with pytest.raises(SystemExit):  # the control's readers are the late fusions
        control.main(["--fusion", "early", "--output", str(root / "x.json"), "--", *common])


def test_the_real_stream_is_the_target_encoders_future_slice_of_each_training_context(root, monkeypatch):
    common = ["--world", str(root / "world"), "--encoder", str(root / "encoder"), *SHARED]
    summary, seen = run_recording(root, monkeypatch, ["--second-stream", "real", "--target-encoder",
                                                      str(root / "target"), "--output", str(root / "real.json"), "--",
                                                      *common])
    assert summary["second_stream"].startswith("real future slice") and summary["target_encoder"] == str(root / "target")
    (context, _), (both, late) = seen[8], seen[12]
    assert late == "late" and torch.equal(both[..., :8, :], context)
    # Rebuild two training contexts by hand: the run's split and draws, the context's frames and the frames after it
    # to the end of the slice the predictor fills, the target encoder's last slice, layer-normed.
    segments = read_anticipation_manifest(root / "world" / "train" / "anticipation.jsonl", root / "world")
    kept, _ = run_anticipation.stratified_split(run_anticipation.segment_labels(segments)[:, 2], 0.25, 0)
    draws = run_anticipation.AnticipationSampling(train_draws=1).draws(len(kept), 0)
    target = VJEPA2Model.from_pretrained(root / "target").eval()
    for item in (0, len(kept) - 1):
        seconds, point = draws[item, 0]
        segment = segments[kept[item]]
        skipped = int(seconds * 4 / 2)  # slices between the context and the predicted one (4 fps, tubelet 2)
        frames = context_indices(segment, seconds, point, 4, 4.0)
        frames = np.concatenate((frames, frames[-1] + 2 * np.arange(1, 2 * (skipped + 1) + 1)))  # 8 fps video
        with torch.no_grad():
            tokens = target.encoder(load_context(segment, frames, 32)[None]).last_hidden_state[0, -4:]
        torch.testing.assert_close(both[item, 0, 8:], F.layer_norm(tokens, (64,)))
    assert run_anticipation.extract_anticipation_tokens.__module__ == "vjepa_vlm.eval.anticipation"
    with pytest.raises(SystemExit):
        control.main(["--second-stream", "real", "--output", str(root / "x.json"), "--", *common])


def test_a_future_slice_past_the_clip_end_is_refused(root):
    segment = read_anticipation_manifest(root / "world" / "test" / "anticipation.jsonl", root / "world")[0]
    at_end = dataclasses.replace(segment, start_frame=31, stop_frame=31)  # the last of the clip's 32 frames
    model = control.future_slice.VJEPA2ForActionAnticipation.from_vjepa2(
        VJEPA2Model.from_pretrained(root / "encoder"), num_verbs=1, num_nouns=1, num_actions=1, frames_per_second=4.0,
        context_frames=4, max_frames=12)
    encoder = model.vjepa2.encoder
    real = control.future_slice.real_future_slices(encoder, model.config, [at_end], np.array([[[0.25, 0.0]]]), 32)
    assert real.shape == (1, 1, 4, 64)  # t = 0.25 s: the slice ends on the event frame, inside the clip
    with pytest.raises(ValueError, match="needs frame 33"):  # t = 0: it would end two frames past it
        control.future_slice.real_future_slices(encoder, model.config, [at_end], np.array([[[0.0, 0.0]]]), 32)
