"""lmms-eval for real on a tiny checkpoint and a small synthetic world, through `scripts/eval_vlm.py`.

The model resolves through the `lmms_eval.models` entry point, the local tasks load from YAMLs pointing at the
generated world, predictions are produced and scored, and a second run gives identical predictions and scores.
One clip's video is deleted: its questions are reported and scored as wrong while the run completes.
"""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("lmms_eval")

from lmms_helpers import build_tiny_checkpoint  # noqa: E402

from vjepa_vlm.data.synthetic_world import generate_world  # noqa: E402
from vjepa_vlm.eval.local_tasks import LOCAL_TASKS  # noqa: E402

torch.set_num_threads(2)
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "eval_vlm.py"
MISSING_VIDEO = "videos/test/000000.mp4"


def _load_script():
    spec = importlib.util.spec_from_file_location("eval_vlm_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_local_suite_runs_in_lmms_eval_reproducibly(tmp_path):
    world = tmp_path / "world"
    generate_world(world, n_train=0, n_test=2, seed=0)
    (world / MISSING_VIDEO).unlink()
    checkpoint = build_tiny_checkpoint(tmp_path / "ckpt")
    script = _load_script()
    runs = []
    for run in ("run0", "run1"):
        argv = ["--pretrained", str(checkpoint), "--world", str(world), "--out", str(tmp_path / run)]
        runs.append(script.main(argv + ["--model_args", "num_frames=4,decode_workers=2", "--batch_size", "2"]))
    first, second = runs

    assert set(first["results"]) == set(LOCAL_TASKS)
    for task in LOCAL_TASKS:
        samples = first["samples"][task]
        assert len(samples) == first["n-samples"][task]["effective"] > 0
        assert 0.0 <= first["results"][task]["accuracy,none"] <= 100.0
        assert all("correct" in sample["accuracy"] for sample in samples)
        assert [s["resps"] for s in samples] == [s["resps"] for s in second["samples"][task]]
    assert first["results"] == second["results"]

    missing = first["vjepa2_vlm"]["missing_visuals"]
    assert missing and all(MISSING_VIDEO in line for line in missing)
    unreadable = [s for s in first["samples"]["vjepa_synth_video_open"] if s["doc"]["video"] == MISSING_VIDEO]
    assert unreadable and all(s["resps"] == [[""]] and not s["accuracy"]["correct"] for s in unreadable)

    written = json.loads((tmp_path / "run0" / "results.json").read_text())
    settings = written["vjepa2_vlm"]["run_settings"]
    assert settings["frames"]["num_frames"] == 4 and settings["frames"]["sampling"] == "uniform"
    assert settings["generation"]["decoding"].startswith("greedy") and "<video>" in settings["prompt"]["placeholders"]["video"]
    table = (tmp_path / "run0" / "results.md").read_text()
    assert all(f"| {task} |" in table for task in LOCAL_TASKS) and f"Unreadable visuals (scored as wrong): {len(missing)}." in table
