"""The pretraining options that the anticipation study varies (issue 22): the predictor's own learning rate, and the
anticipation world its recipes generate or check."""

import json
from pathlib import Path

import pytest
import torch

from vjepa_vlm import VJEPA2Config, VJEPA2Model
from vjepa_vlm.data.synthetic_world import generate_world
from vjepa_vlm.train.config import load_config, validate_config
from vjepa_vlm.train.pretrain import (
    PretrainConfig,
    SyntheticWorldArgs,
    ensure_synthetic_world,
    load_recipe,
    pretrain_param_groups,
)
from vjepa_vlm.vision.pretraining import weight_decay_param_groups
from vjepa_vlm.vision.schedules import OptimizerScheduler

torch.set_num_threads(1)


def _model() -> VJEPA2Model:
    torch.manual_seed(0)
    config = VJEPA2Config.from_preset(
        "vjepa2-tiny", patch_size=8, hidden_size=48, num_hidden_layers=2, pred_hidden_size=24, pred_num_hidden_layers=1
    )
    return VJEPA2Model(config)


def _ids(groups):
    return [[id(p) for p in group["params"]] for group in groups]


def test_default_predictor_lr_keeps_the_optimizer_layout_of_earlier_checkpoints():
    model = _model()
    groups = pretrain_param_groups(model)
    assert _ids(groups) == _ids(weight_decay_param_groups(model))
    assert [g["lr_scale"] for g in groups] == [1.0, 1.0]


def test_predictor_lr_scale_gives_only_the_predictor_a_larger_rate():
    model = _model()
    groups = pretrain_param_groups(model, 10.0)
    every = [id(p) for p in model.parameters()]
    covered = [i for ids in _ids(groups) for i in ids]
    assert sorted(covered) == sorted(every)  # every parameter once
    optimizer = torch.optim.AdamW(groups)
    OptimizerScheduler(optimizer, lambda step: 1e-4, lambda step: 0.04)
    predictor = {id(p) for p in model.predictor.parameters()}
    for group in optimizer.param_groups:
        in_predictor = {id(p) in predictor for p in group["params"]}
        assert len(in_predictor) == 1
        assert group["lr"] == pytest.approx(1e-3 if in_predictor.pop() else 1e-4)
        assert group["weight_decay"] == (0.04 if group["apply_weight_decay"] else 0.0)


def test_a_predictor_that_would_not_train_is_refused():
    config = load_config(PretrainConfig, overrides=["predictor_lr_scale=0", "data.sources=[{manifest: m.jsonl}]"])
    with pytest.raises(ValueError, match=r"predictor_lr_scale 0.0: must be > 0"):
        validate_config(config)


def test_world4k_recipe_is_the_fast_predictor_recipe_on_the_larger_world():
    """Only the pretraining world (and where the checkpoints go) differ from the recipe it is compared with."""
    recipes = Path(__file__).resolve().parents[1] / "train" / "recipes"
    recipe = load_recipe(recipes / "pretrain_tiny_motion_future_fastpred_world4k.yaml")
    overrides = ["synthetic_world.dir=runs/ant/world4k", "synthetic_world.seed=1", "synthetic_world.n_train=4000",
                 "synthetic_world.n_test=50", "checkpoint.dir=runs/ant/pt_future_fastpred_world4k"]
    assert recipe == load_recipe(recipes / "pretrain_tiny_motion_future_fastpred.yaml", overrides)


def test_the_recipe_world_settings_generate_a_missing_world_and_refuse_another_one(tmp_path):
    """A missing world is generated with the recipe's clip settings, not the generator's defaults; an existing world
    with other settings is refused before pretraining reads it; unset settings accept any world."""
    args = SyntheticWorldArgs(dir=str(tmp_path / "world"), n_train=2, n_test=1, frames=24, fps=4.0,
                              motions=["bounce", "stop"], anticipation_s=1.0)
    ensure_synthetic_world(args)
    meta = json.loads((tmp_path / "world" / "meta.json").read_text())
    assert meta["num_clips"] == {"train": 2, "test": 1}
    assert (meta["config"]["frames"], meta["config"]["fps"], meta["config"]["motions"]) == (24, 4.0, ["bounce", "stop"])
    ensure_synthetic_world(args)  # the same settings: accepted as it is
    ensure_synthetic_world(SyntheticWorldArgs(dir=args.dir))  # nothing set: any world

    generate_world(tmp_path / "other", n_train=2, n_test=1, seed=0, frames=16, fps=8.0, progress=False)
    meta_file = tmp_path / "other" / "meta.json"
    meta = json.loads(meta_file.read_text())
    del meta["config"]["shared_event_motion"]  # as a world generated before the setting existed records it
    meta_file.write_text(json.dumps(meta))
    ensure_synthetic_world(SyntheticWorldArgs(dir=str(tmp_path / "other"), frames=16, shared_event_motion=False))
    with pytest.raises(ValueError, match="shared_event_motion: recipe True, world False"):
        ensure_synthetic_world(SyntheticWorldArgs(dir=str(tmp_path / "other"), shared_event_motion=True))
    with pytest.raises(ValueError, match=r"other/meta.json.*frames: recipe 24, world 16.*fps: recipe 4.0, world 8.0"):
        ensure_synthetic_world(SyntheticWorldArgs(dir=str(tmp_path / "other"), frames=24, fps=4.0))
