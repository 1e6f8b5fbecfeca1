"""Pretraining under `accelerate launch` with DeepSpeed ZeRO-2 on 2 CPU processes: exact resume, ZeRO-3 refused."""

import pytest
import torch
from safetensors.torch import load_file
from test_deepspeed import REPO, _launch
from test_pretrain import TINY_RUN, _losses

from vjepa_vlm.train.checkpoint import latest_checkpoint


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from vjepa_vlm.data.synthetic_world import generate_world

    root = tmp_path_factory.mktemp("data") / "world"
    generate_world(root, n_train=8, n_test=2, seed=0, frames=16, size=64)
    return root


def _pretrain(run_dir, world, *overrides, zero="zero2"):
    return _launch(REPO / "train" / "pretrain.py", *TINY_RUN, f"synthetic_world.dir={world}", f"checkpoint.dir={run_dir}",
                   "distributed.backend=deepspeed", f"distributed.deepspeed_config={REPO}/train/deepspeed_{zero}.json",
                   *overrides, cwd=run_dir.parent)


@pytest.mark.slow
def test_zero2_pretraining_interrupted_and_resumed_matches_uninterrupted(tmp_path, world):
    _pretrain(tmp_path / "straight", world)
    _pretrain(tmp_path / "resumed", world, "stop_at_step=2")
    state = latest_checkpoint(tmp_path / "resumed") / "training_state"
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
