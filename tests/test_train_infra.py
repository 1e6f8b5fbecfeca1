import dataclasses

import pytest
import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from vjepa_vlm.train.checkpoint import (
    CheckpointArgs,
    DamagedCheckpointError,
    check_same_architecture,
    latest_checkpoint,
    load_checkpoint_state,
    load_model_weights,
    save_checkpoint,
)
from vjepa_vlm.train.config import load_config, parse_overrides, save_config, validate_config
from vjepa_vlm.train.loop import truncate_metrics
from vjepa_vlm.vision.masking import MaskArgs
from vjepa_vlm.vision.pretraining import weight_decay_param_groups
from vjepa_vlm.vision.schedules import (
    OptimArgs,
    OptimizerScheduler,
    ema_at,
    lr_at,
    warmup_cosine,
    warmup_stable_decay,
    weight_decay_at,
)

torch.set_num_threads(1)


@dataclasses.dataclass
class RunConfig:
    steps: int = 10
    name: str = "run"
    optim: OptimArgs = dataclasses.field(default_factory=OptimArgs)
    mask: MaskArgs = dataclasses.field(default_factory=MaskArgs)
    checkpoint: CheckpointArgs = dataclasses.field(default_factory=CheckpointArgs)

    def validate(self):
        return [] if self.steps > 0 else [f"steps must be > 0, got {self.steps}"]


class TinyConfig(PretrainedConfig):
    model_type = "tiny-test"

    def __init__(self, width=4, **kwargs):
        self.width = width
        super().__init__(**kwargs)


class TinyModel(PreTrainedModel):
    config_class = TinyConfig

    def __init__(self, config):
        super().__init__(config)
        self.linear = nn.Linear(config.width, config.width)
        self.norm = nn.LayerNorm(config.width)
        self.post_init()

    def forward(self, x):
        return self.norm(self.linear(x))


# --- schedules ------------------------------------------------------------------------------


def test_wsd_schedule_matches_table9_shape():
    kwargs = dict(start_lr=1e-4, peak_lr=5.25e-4, final_lr=1e-6, warmup_steps=100, total_steps=1000, decay_steps=200)
    assert warmup_stable_decay(0, **kwargs) == pytest.approx(1e-4)
    assert warmup_stable_decay(50, **kwargs) == pytest.approx((1e-4 + 5.25e-4) / 2)
    assert warmup_stable_decay(100, **kwargs) == pytest.approx(5.25e-4)
    assert warmup_stable_decay(799, **kwargs) == pytest.approx(5.25e-4)
    assert warmup_stable_decay(900, **kwargs) == pytest.approx((5.25e-4 + 1e-6) / 2)
    assert warmup_stable_decay(1000, **kwargs) == pytest.approx(1e-6)


def test_cosine_schedule_and_ramps_of_table10():
    assert warmup_cosine(10, 2e-4, 6.25e-4, 1e-6, 10, 110) == pytest.approx(6.25e-4)
    assert warmup_cosine(60, 2e-4, 6.25e-4, 1e-6, 10, 110) == pytest.approx((6.25e-4 + 1e-6) / 2)
    args = OptimArgs(schedule="cosine", weight_decay=0.04, final_weight_decay=0.4, ema=0.999, final_ema=1.0)
    assert weight_decay_at(args, 50, 100) == pytest.approx(0.22)
    assert ema_at(args, 100, 100) == pytest.approx(1.0)
    assert lr_at(args, 0, 100) == pytest.approx(args.start_lr)


def test_param_groups_exclude_biases_and_1d_params_from_weight_decay():
    model = TinyModel(TinyConfig())
    groups = weight_decay_param_groups(model)
    decayed = {id(p) for p in groups[0]["params"]}
    assert decayed == {id(model.linear.weight)}
    optimizer = torch.optim.AdamW(groups)
    scheduler = OptimizerScheduler(optimizer, lambda s: 0.1 * (s + 1), lambda s: 0.04)
    scheduler.step()
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.2, 0.2])
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.04, 0.0]
    restored = OptimizerScheduler(torch.optim.AdamW(weight_decay_param_groups(model)), scheduler.lr_fn, scheduler.weight_decay_fn)
    restored.load_state_dict(scheduler.state_dict())
    assert restored.get_last_lr() == scheduler.get_last_lr()


# --- config ---------------------------------------------------------------------------------


def test_config_defaults_yaml_then_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("steps: 5\noptim:\n  lr: 1.0e-3\nmask:\n  configs:\n    - {num_blocks: 3, spatial_scale: [0.2, 0.2]}\n")
    config = load_config(RunConfig, path, ["optim.lr=2e-3", "name=x"])
    assert config.steps == 5 and config.name == "x"
    assert config.optim.lr == pytest.approx(2e-3) and config.optim.warmup_steps == 12000
    assert config.mask.configs[0].num_blocks == 3 and config.mask.configs[0].spatial_scale == (0.2, 0.2)
    save_config(config, tmp_path / "saved.yaml")
    assert load_config(RunConfig, tmp_path / "saved.yaml") == config


def test_config_is_strict_about_unknown_keys_and_types(tmp_path):
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['lrr'\] in 'optim'"):
        load_config(RunConfig, overrides=["optim.lrr=1"])
    with pytest.raises(ValueError, match="'steps' must be int"):
        load_config(RunConfig, overrides=["steps=abc"])
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["steps"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("nope: 1\n")
    with pytest.raises(ValueError, match="bad.yaml"):
        load_config(RunConfig, bad)


def test_validate_config_reports_every_problem():
    config = load_config(RunConfig, overrides=["steps=0", "optim.schedule=linear", "checkpoint.every_steps=0"])
    with pytest.raises(ValueError) as error:
        validate_config(config)
    message = str(error.value)
    assert "steps must be > 0" in message and "optim.schedule" in message and "checkpoint.every_steps" in message


# --- checkpoints ----------------------------------------------------------------------------


def _prepared(seed=0, width=4):
    """A tiny model, its optimizer and scheduler, prepared by an accelerator of their own."""
    from accelerate import Accelerator

    torch.manual_seed(seed)
    accelerator = Accelerator(cpu=True)
    model = TinyModel(TinyConfig(width=width))
    optimizer = torch.optim.AdamW(weight_decay_param_groups(model), lr=1e-2)
    model, optimizer = accelerator.prepare(model, optimizer)
    scheduler = OptimizerScheduler(optimizer, lambda s: 1e-2 / (s + 1), lambda s: 0.04)
    return accelerator, model, optimizer, scheduler


def _save(run_dir, step, keep_last=0, width=4):
    accelerator, model, optimizer, scheduler = _prepared(width=width)
    state = {"totals": {"position": 12}, "scheduler": scheduler.state_dict()}
    return save_checkpoint(run_dir, step, accelerator, {"model": model}, state, RunConfig(), keep_last)


def test_checkpoint_roundtrip_restores_model_optimizer_scheduler_and_rng(tmp_path):
    accelerator, model, optimizer, scheduler = _prepared()
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    scheduler.step()
    state = {"totals": {"position": 12}, "scheduler": scheduler.state_dict()}
    path = save_checkpoint(tmp_path, 3, accelerator, {"model": model}, state, RunConfig())
    expected_random = torch.rand(3)

    assert path == latest_checkpoint(tmp_path) and (path / "config.yaml").is_file()
    assert sorted(p.name for p in path.iterdir()) == ["config.yaml", "model", "trainer_state.json", "training_state"]
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp")]
    assert TinyModel.from_pretrained(path / "model").linear.weight.allclose(model.linear.weight)

    fresh_accelerator, fresh, fresh_optimizer, fresh_scheduler = _prepared(seed=1)
    restored = load_checkpoint_state(path, fresh_accelerator, fresh_scheduler)
    assert (restored["step"], restored["world_size"], restored["totals"]) == (3, 1, {"position": 12})
    assert torch.equal(fresh.linear.weight, model.linear.weight)
    assert fresh_scheduler.step_count == 1
    assert torch.equal(fresh_optimizer.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    assert torch.equal(torch.rand(3), expected_random)


def test_keep_last_prunes_old_checkpoints(tmp_path):
    for step in (1, 2, 3):
        _save(tmp_path, step, keep_last=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step_00000002", "step_00000003"]


@pytest.mark.parametrize("damage", ["truncate", "delete", "state"])
def test_damaged_checkpoint_is_refused_naming_the_file(tmp_path, damage):
    path = _save(tmp_path, 1)
    weights = path / "training_state" / "model.safetensors"
    if damage == "truncate":  # what a full disk or an interrupted copy leaves
        weights.write_bytes(weights.read_bytes()[:-100])
        pattern = rf"checkpoint {path} is damaged: {weights} holds \d+ bytes, \d+ were written; delete {path}"
    elif damage == "delete":
        weights.unlink()
        pattern = rf"checkpoint {path} is damaged: {weights} is missing"
    else:
        state_file = path / "trainer_state.json"
        state_file.write_text(state_file.read_text()[:40])
        pattern = rf"checkpoint {path} is damaged: {state_file} is not valid JSON"
    accelerator, _, _, scheduler = _prepared()
    with pytest.raises(DamagedCheckpointError, match=pattern):
        load_checkpoint_state(path, accelerator, scheduler)


def test_damaged_weights_to_start_from_are_named(tmp_path):
    weights = _save(tmp_path, 1) / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:4])
    with pytest.raises(DamagedCheckpointError, match=rf"{weights} is damaged: it cannot be read as safetensors"):
        load_model_weights(TinyModel(TinyConfig()), weights.parent)


def test_metrics_truncation_is_atomic_and_keeps_rows_up_to_the_step(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(f'{{"step": {s}, "loss": 1.0}}\n' for s in range(1, 6)))
    original = path.read_text()

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr("os.replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        truncate_metrics(path, 2)
    assert path.read_text() == original  # an interruption leaves the old log whole
    monkeypatch.undo()
    truncate_metrics(path, 2)
    assert [line for line in path.read_text().splitlines()] == original.splitlines()[:2]


def test_resume_into_another_architecture_is_a_clear_error(tmp_path):
    path = _save(tmp_path, 1)
    with pytest.raises(ValueError, match=r"different architecture.*width=4 \(model: 8\)"):
        check_same_architecture(TinyModel(TinyConfig(width=8)), path / "model")
    with pytest.raises(ValueError, match="different architecture"):
        load_model_weights(TinyModel(TinyConfig(width=8)), path / "model")
