"""Every stage recipe parses strictly, keeps the paper's numbers, and names modules the model has."""

from pathlib import Path

import pytest
import torch

from vjepa_vlm.configuration_vjepa2_vlm import VJEPA2VLMConfig
from vjepa_vlm.modeling_vjepa2_vlm import VJEPA2VLMForConditionalGeneration
from vjepa_vlm.train.config import load_config, validate_config
from vjepa_vlm.train.run_stage import RECIPES, EmbeddedStageConfig, StageConfig, load_stage_config, resolve_init_dir
from vjepa_vlm.train.stages import check_module_paths

STAGE_RECIPES = sorted(RECIPES.glob("stage*.yaml"))
PRESETS = {"llava_qwen2_7b": "vjepa2-vitg-qwen2-7b", "plm_llama31_8b": "vjepa2-vitg384-llama3.1-8b",
           "tiny": "vjepa2-tiny-qwen2"}


def _recipe(name) -> StageConfig:
    config = load_stage_config(RECIPES / name)
    validate_config(config)
    return config


def test_every_stage_has_tiny_controlled_and_scaling_recipes():
    names = {p.name for p in STAGE_RECIPES}
    for stage in ("1", "1_5", "2", "3"):
        assert {f"stage{stage}_tiny.yaml", f"stage{stage}_llava_qwen2_7b.yaml"} <= names
    assert {f"stage{s}_plm_llama31_8b.yaml" for s in ("1", "2", "3")} <= names  # PLM has no stage 1.5


@pytest.mark.parametrize("stage, lr, schedule", [("1", 1e-5, "cosine"), ("1_5", 1e-5, "cosine"),
                                                 ("2", 5e-6, "constant"), ("3", 5e-6, "constant")])
def test_controlled_setup_follows_appendix_e2(stage, lr, schedule):
    config = _recipe(f"stage{stage}_llava_qwen2_7b.yaml")  # Table 21
    assert (config.optim.lr, config.optim.schedule, config.optim.warmup_ratio) == (lr, schedule, 0.03)
    assert (config.optim.weight_decay, config.batch_size) == (0.0, 256)
    assert config.model.expect == {"projector_type": "attentive_pooler", "text_config.model_type": "qwen2"}
    assert config.stage.tunable == (["model.multi_modal_projector"] if stage == "1" else
                                    ["model.multi_modal_projector", "model.language_model", "lm_head"])


@pytest.mark.parametrize("stage, steps, warmup, batch, lr, final_lr, max_length, tiles_frames", [
    ("1", 16000, 96, 128, 1e-4, 1e-6, 1920, None),
    ("2", 35000, 200, 2048, 4e-5, 4e-7, 6400, 16),
    ("3", 28000, 168, 2048, 1e-5, 1e-7, 12800, 32),
])
def test_scaling_setup_follows_table_22(stage, steps, warmup, batch, lr, final_lr, max_length, tiles_frames):
    config = _recipe(f"stage{stage}_plm_llama31_8b.yaml")
    assert (config.steps, config.optim.warmup_steps, config.batch_size) == (steps, warmup, batch)
    assert (config.optim.lr, config.optim.final_lr, config.optim.weight_decay) == (lr, final_lr, 0.05)
    assert (config.data.max_length, config.seed) == (max_length, 777)
    if tiles_frames:
        assert config.model.processor["max_image_tiles"] == config.model.processor["num_frames"] == tiles_frames
    assert config.stop_after == (22000 if stage == "3" else 0)


@pytest.mark.parametrize("recipe", [p.name for p in STAGE_RECIPES], ids=lambda n: n.removesuffix(".yaml"))
def test_recipe_modules_exist_in_its_architecture(recipe):
    config = _recipe(recipe)
    preset = next(PRESETS[key] for key in PRESETS if key in recipe)
    with torch.device("meta"):
        model = VJEPA2VLMForConditionalGeneration(VJEPA2VLMConfig.from_preset(preset))
    check_module_paths(model, config.stage, config.lora)


def test_unknown_recipe_key_names_it(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path(RECIPES / "stage2_tiny.yaml").read_text() + "\nlearning_rate: 1.0\n")
    with pytest.raises(ValueError, match="learning_rate"):
        load_config(StageConfig, bad)


@pytest.mark.parametrize("recipe", [p.name for p in STAGE_RECIPES], ids=lambda n: n.removesuffix(".yaml"))
def test_only_the_tiny_recipes_carry_the_embedded_default(recipe):
    config = _recipe(recipe)
    tiny = "tiny" in recipe
    assert type(config) is (EmbeddedStageConfig if tiny else StageConfig)
    assert tiny or not any(word in (RECIPES / recipe).read_text() for word in ("embedded", "synthetic"))


def test_product_config_has_no_demo_fields():
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['embedded'\]"):
        load_stage_config(RECIPES / "stage1_llava_qwen2_7b.yaml", ["embedded.world_dir=runs/w"])
    with pytest.raises(ValueError, match="model.init_from is empty"):
        validate_config(load_config(StageConfig, overrides=["data.sources=[{path: a.jsonl}]"]))
    with pytest.raises(ValueError, match="model.init_from=embedded needs a recipe with an `embedded:` section"):
        resolve_init_dir(load_config(StageConfig, overrides=["model.init_from=embedded"]), accelerator=None)


def test_data_workers_are_a_stage_setting():
    config = load_stage_config(RECIPES / "stage1_tiny.yaml", ["data.num_workers=2"])
    assert config.data.num_workers == 2
    with pytest.raises(ValueError, match="data.num_workers must be >= 0"):
        validate_config(load_stage_config(RECIPES / "stage1_tiny.yaml", ["data.num_workers=-1"]))


def test_the_embedded_vlm_takes_another_projector_than_its_presets(tmp_path):
    from vjepa_vlm.train.embedded import EmbeddedArgs, ensure_tiny_vlm

    world = dict(world_dir=str(tmp_path / "world"), world_train=2, world_test=1, vocab_size=300)
    default = VJEPA2VLMConfig.from_pretrained(ensure_tiny_vlm(EmbeddedArgs(**world, init_dir=str(tmp_path / "a"))))
    pooled = VJEPA2VLMConfig.from_pretrained(ensure_tiny_vlm(EmbeddedArgs(
        **world, init_dir=str(tmp_path / "b"), projector_type="attentive_pooler", pooling_ratio=16)))
    assert (default.projector_type, default.pooling_ratio) == ("mlp", 1)  # the tiny preset's
    assert (pooled.projector_type, pooled.pooling_ratio) == ("attentive_pooler", 16)


@pytest.mark.parametrize("lora", [True, False], ids=["the recipe: LoRA", "lora.enabled=false: full tuning"])
def test_the_smollm2_stage3_recipe_switches_between_lora_and_full_tuning_of_the_llm(lora):
    from trainer_fixtures import tiny_vlm
    from vjepa_vlm.train.stages import inject_lora, parameter_groups, set_tunable

    # The full-tuning arm of BENCHMARKS.md round 2026-12-07e: `--set 3:lora.enabled=false` and the LLM's own rates.
    overrides = [] if lora else ["lora.enabled=false", "optim.lr=1.0e-4", "optim.final_lr=1.0e-5"]
    config = load_stage_config(RECIPES / "stage3_tiny_smollm2.yaml", overrides)
    validate_config(config)
    model = tiny_vlm()
    inject_lora(model, config.stage, config.lora)
    trainable = set(set_tunable(model, config.stage, config.lora))
    llm = {n for n, _ in model.named_parameters() if n.startswith("model.language_model.")}
    projector = {n for n, _ in model.named_parameters() if n.startswith("model.multi_modal_projector.")}
    assert projector <= trainable
    if lora:
        assert trainable & llm == {n for n in llm if ".lora_A." in n or ".lora_B." in n} != set()
    else:
        assert trainable == projector | llm and not any(".lora_" in n for n in llm)
    # The projector keeps its 1e-3 peak either way: a scale of the LLM's rate.
    scales = {group["lr_scale"] for group in parameter_groups(model, config.stage, config.optim.lr)}
    assert scales == {1.0, 1.0e-3 / config.optim.lr}
