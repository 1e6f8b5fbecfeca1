"""Pretraining under `accelerate launch` with DeepSpeed ZeRO-2 on 2 CPU processes: exact resume, ZeRO-3 refused."""

import json

import pytest
import torch
from safetensors.torch import load_file
from test_deepspeed import REPO, _launch

from vjepa_vlm.train.checkpoint import latest_checkpoint

TINY = [
    "model.preset=vjepa2-tiny",
    "model.config_overrides={patch_size: 8, hidden_size: 48, num_hidden_layers: 2, pred_hidden_size: 24}",
    "data.num_frames=4",
    "data.crop_size=32",
    "data.batch_size=2",
    "optim.warmup_steps=1",
    "optim.decay_steps=2",
    "optim.ema=0.9",
    "optim.final_ema=0.9",
    "steps=4",
    "checkpoint.every_steps=2",
    "distributed.backend=deepspeed",
]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from vjepa_vlm.data.synthetic_world import generate_world

    root = tmp_path_factory.mktemp("data") / "world"
    generate_world(root, n_train=8, n_test=2, seed=0, frames=16, size=64)
    return root


def _pretrain(run_dir, world, *overrides, zero="zero2"):
    return _launch(REPO / "train" / "pretrain.py", *TINY, f"synthetic_world.dir={world}", f"checkpoint.dir={run_dir}",
                   f"distributed.deepspeed_config={REPO}/train/deepspeed_{zero}.json", *overrides, cwd=run_dir.parent)


def _losses(run_dir):
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_zero2_pretraining_interrupted_and_resumed_matches_uninterrupted(tmp_path, world):
    _pretrain(tmp_path / "straight", world)
    _pretrain(tmp_path / "resumed", world, "stop_at_step=2")
    state = latest_checkpoint(tmp_path / "resumed") / "training_state" / "accelerate"
    assert {p.name for p in state.glob("random_states_*.pkl")} == {"random_states_0.pkl", "random_states_1.pkl"}
    log = _pretrain(tmp_path / "resumed", world)
    assert "resumed from" in log and "at step 2" in log

    assert len(_losses(tmp_path / "straight")) == 4
    assert _losses(tmp_path / "resumed") == _losses(tmp_path / "straight")
    for name in ("online", "target"):
        a = load_file(latest_checkpoint(tmp_path / "straight") / name / "model.safetensors")
        b = load_file(latest_checkpoint(tmp_path / "resumed") / name / "model.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a), name


@pytest.mark.slow
def test_zero3_pretraining_is_refused_before_any_step(tmp_path, world):
    with pytest.raises(AssertionError, match="not ZeRO-3"):
        _pretrain(tmp_path / "run", world, zero="zero3")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
