"""lmms-eval for real on a tiny checkpoint and a small synthetic world, through `scripts/eval_vlm.py`.

The model resolves through the `lmms_eval.models` entry point, the local tasks load from YAMLs pointing at the
generated world, predictions are produced and scored, and a second run gives identical predictions and scores.
Every log-likelihood task's reported accuracy is recomputed from the per-sample log-likelihoods lmms-eval
itself logs. One clip's video is deleted: its questions are reported and scored as wrong while the run completes.
"""

import json

import pytest
import torch
from lmms_helpers import build_tiny_checkpoint

from vjepa_vlm.data.synthetic_world import generate_world
from vjepa_vlm.eval.local_tasks import LOCAL_TASKS
from vjepa_vlm.scripts import eval_vlm

torch.set_num_threads(2)
MISSING_VIDEO = "videos/test/000000.mp4"
# The options of each log-likelihood (`multiple_choice`) task, in the order lmms-eval scores them.
CHOICES = {"vjepa_synth_video_mc_ppl": lambda doc: list("ABCDE"[: len(doc["options"])]),
           "vjepa_synth_video_mc_cloze": lambda doc: doc["candidates"]}


def logged_log_likelihood(response) -> float:
    """An option's log-likelihood as lmms-eval logs it: 0.7.3 logs the model's (log_likelihood, is_greedy) as
    its text, '(-2.6858, False)'."""
    value = response[0] if isinstance(response, list) else response
    return float(value.strip("()").split(",")[0]) if isinstance(value, str) else float(value)


def check_against_logged_log_likelihoods(results: dict, task: str) -> None:
    """The prediction of every sample is the argmax of its logged log-likelihoods (none when all are -inf: an
    unreadable video), and the reported accuracy is the share of those predictions that are the target."""
    correct = []
    for sample in results["samples"][task]:
        scores = [logged_log_likelihood(r) for r in sample["resps"]]
        choices = CHOICES[task](sample["doc"])
        assert len(scores) == len(choices)
        best = None if max(scores) == float("-inf") else scores.index(max(scores))
        assert sample["accuracy"]["prediction"] == (None if best is None else choices[best]), sample["doc"]["id"]
        correct.append(best is not None and best == sample["target"])
        assert sample["accuracy"]["correct"] == correct[-1]
    assert results["results"][task]["accuracy,none"] == pytest.approx(100 * sum(correct) / len(correct), abs=1e-9)


@pytest.mark.slow
def test_local_suite_runs_in_lmms_eval_reproducibly(tmp_path):
    world = tmp_path / "world"
    generate_world(world, n_train=0, n_test=2, seed=0)
    (world / MISSING_VIDEO).unlink()
    checkpoint = build_tiny_checkpoint(tmp_path / "ckpt")
    runs = []
    for run in ("run0", "run1"):
        argv = ["--pretrained", str(checkpoint), "--world", str(world), "--out", str(tmp_path / run)]
        runs.append(eval_vlm.main(argv + ["--model_args", "num_frames=4,decode_workers=2", "--batch_size", "2"]))
    first, second = runs

    assert set(first["results"]) == set(LOCAL_TASKS) and first["vjepa2_vlm"]["failed_tasks"] == {}
    for task in LOCAL_TASKS:
        samples = first["samples"][task]
        assert len(samples) == first["n-samples"][task]["effective"] > 0
        assert 0.0 <= first["results"][task]["accuracy,none"] <= 100.0
        assert all("correct" in sample["accuracy"] for sample in samples)
        assert [s["resps"] for s in samples] == [s["resps"] for s in second["samples"][task]]
    assert first["results"] == second["results"]
    loglikelihood_tasks = {task for task, config in first["configs"].items() if config["output_type"] == "multiple_choice"}
    assert loglikelihood_tasks == set(CHOICES)
    for task in loglikelihood_tasks:
        check_against_logged_log_likelihoods(first, task)

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


@pytest.mark.slow
def test_a_failing_task_is_reported_and_the_command_exits_non_zero(tmp_path):
    world = tmp_path / "world"
    generate_world(world, n_train=0, n_test=1, seed=0)
    (world / MISSING_VIDEO).unlink()  # the only clip: every video request is unreadable, the task raises
    checkpoint = build_tiny_checkpoint(tmp_path / "ckpt")
    argv = ["--pretrained", str(checkpoint), "--world", str(world), "--out", str(tmp_path / "run"),
            "--tasks", "vjepa_synth_video_open,vjepa_synth_image_qa", "--model_args", "num_frames=4"]
    # SystemExit with a message: the process prints it and exits with status 1.
    with pytest.raises(SystemExit, match=r"1 task\(s\) failed: vjepa_synth_video_open: VideoDecodeError: .*000000.mp4"):
        eval_vlm.main(argv)
    table = (tmp_path / "run" / "results.md").read_text()
    assert "| vjepa_synth_image_qa |" in table and "Failed tasks (no result, see results.json): vjepa_synth_video_open." in table
