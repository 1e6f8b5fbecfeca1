"""Tunable parts per stage, with and without LoRA: exactly the intended parameters train and get gradients."""

import pytest
import torch
from trainer_fixtures import CountingVideoQA, collate, tiny_vlm

from vjepa_vlm.train.stages import (
    LoraArgs,
    StageArgs,
    check_module_paths,
    inject_lora,
    merge_lora_state_dict,
    parameter_groups,
    set_tunable,
)

torch.set_num_threads(2)
PROJECTOR, LLM, HEAD, VISION = "model.multi_modal_projector", "model.language_model", "lm_head", "model.vision_tower"


def _backward(model):
    batch = collate([CountingVideoQA()[i] for i in range(2)])
    batch.pop("skipped")
    model(**batch).loss.backward()
    return {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def _under(names, prefix):
    return {n for n in names if n.startswith(prefix + ".")}


def test_stage1_trains_the_projector_only():
    model = tiny_vlm()
    trainable = set(set_tunable(model, StageArgs(tunable=[PROJECTOR]), LoraArgs()))
    everything = {n for n, _ in model.named_parameters()}
    assert trainable == _under(everything, PROJECTOR)
    assert _backward(model) == trainable


@pytest.mark.parametrize("with_vision", [False, True])
def test_full_stage_trains_llm_projector_and_optionally_the_encoder(with_vision):
    model = tiny_vlm()
    tunable = [PROJECTOR, LLM, HEAD] + ([VISION] if with_vision else [])
    trainable = set(set_tunable(model, StageArgs(tunable=tunable), LoraArgs()))
    everything = {n for n, _ in model.named_parameters()}
    assert trainable == {n for n in everything if any(n.startswith(t + ".") for t in tunable)}
    assert bool(_under(trainable, VISION)) == with_vision
    got = _backward(model)
    # Rows of the embedding that no token of the batch uses get no gradient; every other tensor does.
    assert got == trainable


def test_lora_keeps_the_meaning_of_tunable_parts():
    model = tiny_vlm()
    stage, lora = StageArgs(tunable=[PROJECTOR, LLM]), LoraArgs(enabled=True, r=4, alpha=8)
    inject_lora(model, stage, lora)
    trainable = set(set_tunable(model, stage, lora))
    adapters = {n for n, _ in model.named_parameters() if ".lora_A." in n or ".lora_B." in n}
    assert adapters and all(n.startswith(LLM + ".") for n in adapters)
    assert trainable == adapters | _under({n for n, _ in model.named_parameters()}, PROJECTOR)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".lora_B." in name:
                param.normal_(std=0.02)  # peft zero-initializes B, which would leave A without gradient
    assert _backward(model) == trainable


def test_lora_adds_no_adapters_to_frozen_modules():
    model = tiny_vlm()
    stage, lora = StageArgs(tunable=[PROJECTOR]), LoraArgs(enabled=True)
    inject_lora(model, stage, lora)
    assert not any(".lora_" in n for n, _ in model.named_parameters())
    assert set(set_tunable(model, stage, lora)) == _under({n for n, _ in model.named_parameters()}, PROJECTOR)


def test_merged_lora_state_dict_reproduces_the_adapted_model():
    model = tiny_vlm().eval()
    stage, lora = StageArgs(tunable=[LLM]), LoraArgs(enabled=True, r=4, alpha=8)
    inject_lora(model, stage, lora)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".lora_B." in name:
                param.normal_(std=0.05)
    batch = collate([CountingVideoQA()[i] for i in range(2)])
    batch.pop("skipped")
    with torch.no_grad():
        expected = model(**batch).logits
        plain = tiny_vlm(seed=1).eval()
        plain.load_state_dict(merge_lora_state_dict(model.state_dict(), lora.scaling), strict=True)
        assert torch.allclose(plain(**batch).logits, expected, atol=1e-5)


def test_unknown_module_in_recipe_is_a_clear_error():
    model = tiny_vlm()
    with pytest.raises(ValueError, match=r"'model.mm_projector'.*no child 'mm_projector'.*multi_modal_projector"):
        check_module_paths(model, StageArgs(tunable=["model.mm_projector"]), LoraArgs())
    with pytest.raises(ValueError, match="'model.llm'"):
        check_module_paths(model, StageArgs(tunable=[PROJECTOR]), LoraArgs(enabled=True, modules=["model.llm"]))


def test_module_lr_becomes_a_scale_of_the_schedule():
    model = tiny_vlm()
    stage = StageArgs(tunable=[PROJECTOR, VISION], module_lr={VISION: 2e-6})
    set_tunable(model, stage, LoraArgs())
    groups = parameter_groups(model, stage, lr=1e-5)
    vision = {id(p) for n, p in model.named_parameters() if n.startswith(VISION + ".")}
    for group in groups:
        in_vision = {id(p) in vision for p in group["params"]}
        assert len(in_vision) == 1
        assert group["lr_scale"] == pytest.approx(0.2 if in_vision.pop() else 1.0)
        assert group["apply_weight_decay"] == all(p.ndim >= 2 for p in group["params"])


def test_stage_args_validation_names_the_field():
    assert any("stage.module_lr" in e for e in StageArgs(tunable=[PROJECTOR], module_lr={VISION: 1.0}).validate())
    assert any("stage.save" in e for e in StageArgs(save="projector").validate())
