"""Two processes under `accelerate launch`: DeepSpeed ZeRO-2 / ZeRO-3 and DDP on CPU (gloo).

These are the CI runs of the issue: a 2-process ZeRO-3 stage through the real entry point, with the
projector-only stage-1 handoff and LoRA, and the same loss curve as one process.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from trainer_fixtures import CountingVideoQA, collate, tiny_trainer_args, tiny_vlm

from vjepa_vlm.modeling_vjepa2_vlm import VJEPA2VLMForConditionalGeneration
from vjepa_vlm.train.trainer import VLMTrainer

REPO = Path(__file__).resolve().parents[1]
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--multi_gpu",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
BACKENDS = {
    "zero3": ["distributed.backend=deepspeed", f"distributed.deepspeed_config={REPO}/train/deepspeed_zero3.json"],
    "zero2": ["distributed.backend=deepspeed", f"distributed.deepspeed_config={REPO}/train/deepspeed_zero2.json"],
    "ddp": ["distributed.backend=ddp"],
}


def _launch(script, *args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([*ACCELERATE, str(script), *args], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return result.stdout + result.stderr


def _metrics(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["zero3", "zero2", "ddp"])
def test_two_processes_follow_the_single_process_loss_curve(tmp_path, backend):
    torch.set_num_threads(2)
    single = tiny_trainer_args(tmp_path / "single", steps=3, **{"checkpoint.every_steps": 3})
    VLMTrainer(single, tiny_vlm(), CountingVideoQA(), collate).train()
    log = _launch(REPO / "tests" / "trainer_fixtures.py", str(tmp_path / "two"), "steps=3", "checkpoint.every_steps=3",
                  *BACKENDS[backend], cwd=tmp_path)
    assert f"2 processes ({'DEEPSPEED' if backend != 'ddp' else 'MULTI_CPU'})" in log
    expected, got = _metrics(tmp_path / "single"), _metrics(tmp_path / "two")
    assert [m["step"] for m in got] == [1, 2, 3]
    assert [m["loss"] for m in got] == pytest.approx([m["loss"] for m in expected], rel=1e-4)
    a = VJEPA2VLMForConditionalGeneration.from_pretrained(tmp_path / "single" / "output").state_dict()
    b = VJEPA2VLMForConditionalGeneration.from_pretrained(tmp_path / "two" / "output").state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


@pytest.mark.slow
def test_zero3_stages_hand_off_from_projector_only_stage1_with_lora(tmp_path):
    tiny = ["embedded.world_train=8", "embedded.world_test=2", "batch_size=4", "micro_batch_size=2",
            "logging.progress_bar=false", "logging.tracker=none", *BACKENDS["zero3"]]
    _launch(REPO / "train" / "stage1.py", "steps=2", *tiny, cwd=tmp_path)
    stage1 = tmp_path / "runs" / "vlm_tiny" / "stage1" / "output"
    assert json.loads((stage1 / "stage.json").read_text())["weights"] == "tunable"
    # Stage 3 decodes its videos in a DataLoader worker per rank (`data.num_workers`).
    _launch(REPO / "train" / "stage3.py", "steps=2", f"model.init_from={stage1}", "lora.enabled=true",
            "stage.tunable=[model.multi_modal_projector,model.language_model]", "data.num_workers=1", *tiny,
            cwd=tmp_path)
    run = tmp_path / "runs" / "vlm_tiny" / "stage3"
    assert all(torch.isfinite(torch.tensor(m["loss"])) for m in _metrics(run))
    model = VJEPA2VLMForConditionalGeneration.from_pretrained(run / "output")
    assert not any("lora" in name for name in model.state_dict())
    assert (run / "output" / "tokenizer.json").is_file()
