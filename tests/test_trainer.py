"""The shared VLM trainer: exact resume, atomic checkpoints, handoff, and errors raised before any step."""

import json
from pathlib import Path

import pytest
import torch
from trainer_fixtures import CountingVideoQA, collate, tiny_trainer_args, tiny_vlm

from vjepa_vlm.modeling_vjepa2_vlm import VJEPA2VLMForConditionalGeneration
from vjepa_vlm.train.handoff import load_stage_model
from vjepa_vlm.train.trainer import ResumableBatchSampler, VLMTrainer, check_resume_compatible, gradient_accumulation

torch.set_num_threads(2)


def _train(run_dir, dataset=None, num_workers=0, **overrides):
    args = tiny_trainer_args(run_dir, **overrides)
    output = VLMTrainer(args, tiny_vlm(), dataset or CountingVideoQA(), collate, base_dir=None,
                        num_workers=num_workers).train()
    return output, [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


class WorkerOnlyVideoQA(CountingVideoQA):
    """Refuses to build a sample in the training process: a run over it proves DataLoader workers decode."""

    def __getitem__(self, index: int) -> dict:
        if torch.utils.data.get_worker_info() is None:
            raise RuntimeError("sample decoded in the training process")
        return super().__getitem__(index)


@pytest.mark.slow
def test_interrupted_and_resumed_run_continues_the_same_loss_curve(tmp_path):
    _, whole = _train(tmp_path / "whole")
    root = tmp_path / "whole" / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["step_00000002", "step_00000004"]  # no temp dirs left
    step = root / "step_00000004"
    state = json.loads((step / "trainer_state.json").read_text())
    assert (state["step"], state["world_size"], state["totals"]) == (4, 1, {"skipped_samples": 0})
    assert sorted(p.name for p in step.iterdir()) == ["config.yaml", "model", "trainer_state.json", "training_state"]
    _, first = _train(tmp_path / "split", stop_after=2)
    assert [m["step"] for m in first] == [1, 2]
    output, resumed = _train(tmp_path / "split")
    assert [m["step"] for m in resumed] == [1, 2, 3, 4]
    assert [m["loss"] for m in resumed] == [m["loss"] for m in whole]
    assert [m["lr"] for m in resumed] == [m["lr"] for m in whole]
    a = VJEPA2VLMForConditionalGeneration.from_pretrained(tmp_path / "whole" / "output").state_dict()
    b = VJEPA2VLMForConditionalGeneration.from_pretrained(output).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_workers_decode_and_a_resumed_run_with_workers_stays_exact(tmp_path):
    _, whole = _train(tmp_path / "whole")
    with pytest.raises(RuntimeError, match="decoded in the training process"):
        _train(tmp_path / "no_workers", dataset=WorkerOnlyVideoQA())
    _train(tmp_path / "split", dataset=WorkerOnlyVideoQA(), num_workers=2, stop_after=2)
    output, resumed = _train(tmp_path / "split", dataset=WorkerOnlyVideoQA(), num_workers=2)
    assert [m["loss"] for m in resumed] == [m["loss"] for m in whole]
    a = VJEPA2VLMForConditionalGeneration.from_pretrained(tmp_path / "whole" / "output").state_dict()
    b = VJEPA2VLMForConditionalGeneration.from_pretrained(output).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_progress_bar_redraws_once_per_step(tmp_path, monkeypatch):
    import vjepa_vlm.train.loop as loop

    draws = []

    class CountingBar(loop.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "mininterval": 0, "miniters": 1, "disable": False})

        def display(self, *args, **kwargs):
            draws.append(self.n)
            return super().display(*args, **kwargs)

    monkeypatch.setattr(loop, "tqdm", CountingBar)
    _train(tmp_path, steps=3, batch_size=2, **{"logging.progress_bar": True})
    # The bar shows before the first step, then once per step (the postfix rides on the step's redraw);
    # closing draws the final state once more.
    assert draws[:4] == [0, 1, 2, 3] and len(draws) <= 5


def test_bad_samples_are_skipped_and_counted(tmp_path):
    _, metrics = _train(tmp_path, dataset=CountingVideoQA(bad=tuple(range(31))), steps=1, batch_size=2)
    assert metrics[-1]["skipped_samples"] > 0
    assert all(torch.isfinite(torch.tensor(m["loss"])) for m in metrics)


def test_resume_with_another_recipe_or_world_size_fails_before_any_step(tmp_path):
    _train(tmp_path, stop_after=1, batch_size=2, **{"checkpoint.every_steps": 1})
    checkpoint = tmp_path / "checkpoints" / "step_00000001"
    changed = tiny_trainer_args(tmp_path, batch_size=2, **{"optim.lr": 5e-4, "checkpoint.every_steps": 1})
    with pytest.raises(ValueError, match=r"recipe changed \(optim.lr: 0.001 -> 0.0005\)"):
        VLMTrainer(changed, tiny_vlm(), CountingVideoQA(), collate).train()
    with pytest.raises(ValueError, match="written by 1 processes, this run has 2"):
        check_resume_compatible(checkpoint, tiny_trainer_args(tmp_path, batch_size=2), world_size=2)
    # Operational keys may change between the two halves of a run.
    same = tiny_trainer_args(tmp_path, batch_size=2, **{"checkpoint.keep_last": 3, "checkpoint.every_steps": 1})
    check_resume_compatible(checkpoint, same, 1)
    assert len(list((tmp_path / "checkpoints").iterdir())) == 1  # the failed attempts wrote nothing


def test_recipe_naming_a_missing_module_fails_before_any_step(tmp_path):
    args = tiny_trainer_args(tmp_path, **{"stage.tunable": ["model.projector"]})
    with pytest.raises(ValueError, match="'model.projector'"):
        VLMTrainer(args, tiny_vlm(), CountingVideoQA(), collate).train()
    assert not (tmp_path / "checkpoints").exists()


def test_projector_only_output_hands_off_to_the_next_stage(tmp_path):
    base = tmp_path / "base"
    tiny_vlm(seed=3).save_pretrained(base)
    args = tiny_trainer_args(tmp_path / "stage1", steps=1, batch_size=2,
                             **{"stage.tunable": ["model.multi_modal_projector"], "stage.save": "tunable",
                                "optim.warmup_ratio": 0.0})
    trained = tiny_vlm(seed=3)
    output = VLMTrainer(args, trained, CountingVideoQA(), collate, base_dir=str(base)).train()
    saved = json.loads((output / "stage.json").read_text())
    assert saved["weights"] == "tunable" and saved["base"] == str(base.resolve())
    loaded = load_stage_model(output, VJEPA2VLMForConditionalGeneration)
    original = VJEPA2VLMForConditionalGeneration.from_pretrained(base).state_dict()
    for name, value in loaded.state_dict().items():
        reference = trained.state_dict()[name] if name.startswith("model.multi_modal_projector.") else original[name]
        assert torch.equal(value, reference), name
    assert not torch.equal(loaded.state_dict()["model.multi_modal_projector.linear_1.weight"],
                           original["model.multi_modal_projector.linear_1.weight"])


def test_stage_from_another_architecture_is_a_clear_error(tmp_path):
    from vjepa_vlm import VJEPA2Config, VJEPA2Model

    VJEPA2Model(VJEPA2Config.from_preset("vjepa2-tiny")).save_pretrained(tmp_path / "encoder")
    with pytest.raises(ValueError, match="holds a 'vjepa2' model, but this stage trains 'vjepa2_vlm' models"):
        load_stage_model(tmp_path / "encoder", VJEPA2VLMForConditionalGeneration)
    tiny_vlm().save_pretrained(tmp_path / "vlm")
    with pytest.raises(ValueError, match=r"projector_type='mlp' \(recipe expects 'attentive_pooler'\)"):
        load_stage_model(tmp_path / "vlm", VJEPA2VLMForConditionalGeneration, {"projector_type": "attentive_pooler"})


def test_global_batch_must_split_evenly():
    assert gradient_accumulation(256, 2, 8) == 16  # Table 21's batch on 8 processes
    with pytest.raises(ValueError, match="batch_size=10 is not a multiple of micro_batch_size=4 x 2 processes"):
        gradient_accumulation(10, 4, 2)


def test_batch_sampler_resumes_mid_epoch_and_deals_disjoint_batches_to_ranks():
    full = iter(ResumableBatchSampler(10, 2, rank=0, world_size=2, seed=7))
    head = [next(full) for _ in range(5)]
    resumed = iter(ResumableBatchSampler(10, 2, rank=0, world_size=2, seed=7, start=3))
    assert [next(resumed) for _ in range(2)] == head[3:5]
    other = iter(ResumableBatchSampler(10, 2, rank=1, world_size=2, seed=7))
    epoch0 = head[:2] + [next(other) for _ in range(2)]
    assert len({i for batch in epoch0 for i in batch}) == 8  # 10 samples, 2 dropped as a partial global batch


def test_cached_encoder_features_train_as_recomputed_ones(tmp_path):
    # 4 clips, 2 steps of 4 samples: the second step is all cache hits, and the losses must not notice.
    output, cached = _train(tmp_path / "cached", dataset=CountingVideoQA(size=4), steps=2)
    _, fresh = _train(tmp_path / "fresh", dataset=CountingVideoQA(size=4), steps=2, cache_vision_features=False)
    assert [m["loss"] for m in cached] == pytest.approx([m["loss"] for m in fresh], rel=1e-5, abs=1e-6)
    a = VJEPA2VLMForConditionalGeneration.from_pretrained(output).state_dict()
    b = VJEPA2VLMForConditionalGeneration.from_pretrained(tmp_path / "fresh" / "output").state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_feature_cache_hits_repeated_items_and_refuses_a_training_encoder():
    from vjepa_vlm.train.feature_cache import VisionFeatureCache

    model = tiny_vlm().model.eval()
    model.set_vision_tower_trainable(False)
    clips = torch.stack([CountingVideoQA()[i]["pixel_values_videos"] for i in (0, 1, 0)])
    expected, grid = model.vision_features(clips)
    model.feature_cache = VisionFeatureCache()
    for _ in range(2):
        features, cached_grid = model.vision_features(clips)
        assert cached_grid == tuple(grid) and torch.allclose(features, expected, atol=1e-6)
    assert (model.feature_cache.misses, model.feature_cache.hits) == (2, 4)
    model.set_vision_tower_trainable(True)
    with pytest.raises(ValueError, match="frozen, deterministic encoder"):
        model.vision_features(clips)
