"""The world-model trainer under `accelerate launch` with 2 CPU processes (DDP on gloo): the clip stream is shared
out by rank, so two processes with batch B follow the loss curve of one process with batch 2B, and resume exactly."""

import json

import numpy as np
import pytest
import torch
from test_deepspeed import REPO, _launch
from test_train_ac import TINY_RUN, robot_dataset  # noqa: F401  (the fixture)
from vjepa_vlm.train.ac_trainer import ACTrainConfig, train
from vjepa_vlm.train.checkpoint import latest_checkpoint
from vjepa_vlm.train.config import load_config

from vjepa_vlm.modeling_vjepa2_ac import VJEPA2WorldModel

KEYS = ("loss", "teacher_forcing_loss", "rollout_loss")


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _two_processes(run_dir, root, *overrides):
    # A recipe without a `play_data:` section: the run must not record Fetch play next to the test.
    recipe = run_dir.parent / "recipe.yaml"
    recipe.write_text("model: {preset: vjepa2-ac-tiny}\n")
    return _launch(REPO / "train" / "train_ac.py", str(recipe), *TINY_RUN, f"data.root={root}",
                   f"checkpoint.dir={run_dir}", "distributed.backend=ddp", "data.batch_size=1", *overrides,
                   cwd=run_dir.parent)


@pytest.mark.slow
@pytest.mark.parametrize("cache", [False, True])
def test_two_processes_follow_one_process_with_the_whole_batch_and_resume_exactly(tmp_path, robot_dataset, cache):  # noqa: F811
    single = load_config(ACTrainConfig, overrides=[*TINY_RUN, f"data.root={robot_dataset}",
                                                   f"checkpoint.dir={tmp_path / 'single'}", "data.batch_size=2",
                                                   f"data.cache_features={cache}"])
    train(single)
    _two_processes(tmp_path / "two", robot_dataset, f"data.cache_features={cache}")
    _two_processes(tmp_path / "resumed", robot_dataset, f"data.cache_features={cache}", "stop_at_step=2")
    interrupted = latest_checkpoint(tmp_path / "resumed")
    assert interrupted.name == "step_00000002"
    assert {p.name for p in (interrupted / "training_state").glob("random_states_*.pkl")} == {
        "random_states_0.pkl", "random_states_1.pkl"}
    assert "resumed from" in _two_processes(tmp_path / "resumed", robot_dataset, f"data.cache_features={cache}")

    expected, two, resumed = _rows(tmp_path / "single"), _rows(tmp_path / "two"), _rows(tmp_path / "resumed")
    assert [r["step"] for r in two] == [1, 2, 3, 4] and two[-1]["position"] == expected[-1]["position"] == 8
    for key in KEYS:
        np.testing.assert_allclose([r[key] for r in two], [r[key] for r in expected], rtol=1e-4)
        np.testing.assert_allclose([r[key] for r in resumed], [r[key] for r in two], rtol=1e-6)
    assert [r["skipped_clips"] for r in two] == [r["skipped_clips"] for r in expected]
    a = VJEPA2WorldModel.from_pretrained(latest_checkpoint(tmp_path / "single") / "model").state_dict()
    for run in ("two", "resumed"):
        b = VJEPA2WorldModel.from_pretrained(latest_checkpoint(tmp_path / run) / "model").state_dict()
        assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a), run
