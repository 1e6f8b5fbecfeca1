"""Entry point shared by `train/stage1.py`, `stage1_5.py`, `stage2.py` and `stage3.py`.

    accelerate launch train/stage3.py [recipe.yaml] [key=value ...]

With no recipe, a stage runs its tiny CPU recipe (`train/recipes/stage*_tiny.yaml`). A recipe with an
`embedded:` section (the tiny ones) runs on the embedded default: the synthetic world is generated if absent
and the tiny VLM built if absent; any other recipe names its model directory and manifests. Configs compose
as everywhere in the project: dataclass defaults <- recipe YAML <- `key=value` overrides, strict about
unknown keys.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from transformers.integrations.deepspeed import unset_hf_deepspeed_config

from vjepa_vlm.data.vlm_dataset import VLMCollator, VLMConversationDataset, VLMDataArgs
from vjepa_vlm.modeling_vjepa2_vlm import VJEPA2VLMForConditionalGeneration
from vjepa_vlm.processing_vjepa2_vlm import VJEPA2VLMProcessor
from vjepa_vlm.train.config import config_class_for, load_config
from vjepa_vlm.train.embedded import EmbeddedArgs, ensure_tiny_vlm, ensure_world
from vjepa_vlm.train.handoff import load_stage_model
from vjepa_vlm.train.trainer import TrainerArgs, VLMTrainer, build_stage_accelerator

RECIPES = Path(__file__).parent / "recipes"
EMBEDDED = "embedded"


@dataclass
class ModelArgs:
    """Where a stage starts and how the model runs.

    Args:
        init_from: the previous stage's output directory (any `save_pretrained` VJEPA2VLM directory
            works); "embedded" (recipes with an `embedded:` section) for the tiny VLM.
        expect: config fields the recipe requires of the model it starts from, e.g.
            {"projector_type": "attentive_pooler", "text_config.model_type": "qwen2"}.
        attn_implementation: "sdpa" on CPU; "flash_attention_2" on GPU with flash-attn installed.
        processor: processor attributes this stage changes, e.g. {"num_frames": 32, "max_image_tiles": 32}
            in stage 3 of the scaling setup (Table 22).
    """

    init_from: str = ""
    expect: dict = field(default_factory=dict)
    attn_implementation: str = "sdpa"
    processor: dict = field(default_factory=dict)

    def validate(self) -> list[str]:
        return [] if self.init_from else ["model.init_from is empty: point it at the previous stage's output "
                                          "(or an assembled VLM directory)"]


@dataclass
class StageDataArgs(VLMDataArgs):
    """The conversation mixture (`vjepa_vlm.data.vlm_dataset.VLMDataArgs`) and how it is loaded.

    Args:
        num_workers: DataLoader worker processes that read and decode the media (0: the training process).
        prefetch_factor: micro-batches each worker prepares ahead.
    """

    num_workers: int = 0
    prefetch_factor: int = 2

    def validate(self) -> list[str]:
        super().validate()  # raises on a bad mixture
        if self.num_workers < 0 or self.prefetch_factor < 1:
            return [f"data.num_workers must be >= 0 and data.prefetch_factor >= 1, got {self.num_workers}, "
                    f"{self.prefetch_factor}"]
        return []


@dataclass
class StageConfig(TrainerArgs):
    """A VLM stage: the trainer's sections plus model and data.

    Args:
        model: starting point (see `ModelArgs`).
        data: the conversation mixture and its loading (see `StageDataArgs`).
    """

    model: ModelArgs = field(default_factory=ModelArgs)
    data: StageDataArgs = field(default_factory=StageDataArgs)


@dataclass
class EmbeddedStageConfig(StageConfig):
    """A stage on the embedded default: the config of a recipe with an `embedded:` section (the tiny recipes).

    The synthetic world is generated when absent, and `model.init_from: embedded`, or an `init_from` that does
    not exist yet, starts from the tiny VLM (built when absent), so each tiny stage also runs on its own.

    Args:
        embedded: the synthetic world and the tiny VLM.
    """

    embedded: EmbeddedArgs = field(default_factory=EmbeddedArgs)


@contextlib.contextmanager
def zero3_init_disabled(accelerator):
    """Build models as plain modules: only the main process builds the tiny VLM, and under ZeRO-3 init
    that construction would be a collective the other ranks never join."""
    plugin = accelerator.state.deepspeed_plugin
    if plugin is None:
        yield
        return
    unset_hf_deepspeed_config()
    try:
        yield
    finally:
        plugin.set_deepspeed_weakref()


def resolve_init_dir(config: StageConfig, accelerator) -> str:
    """The directory the stage starts from, building the embedded tiny VLM when asked."""
    init_from = config.model.init_from
    embedded = isinstance(config, EmbeddedStageConfig)
    if init_from == EMBEDDED and not embedded:
        raise ValueError("model.init_from=embedded needs a recipe with an `embedded:` section "
                         "(train/recipes/stage*_tiny.yaml); point model.init_from at a VLM directory instead")
    if init_from != EMBEDDED and not Path(init_from).exists():
        if not embedded:
            raise FileNotFoundError(
                f"model.init_from={init_from} does not exist; run the previous stage first or point at its output"
            )
        logging.getLogger(__name__).warning("%s not found: starting from the embedded tiny VLM", init_from)
        init_from = EMBEDDED
    if init_from == EMBEDDED:
        with accelerator.main_process_first(), zero3_init_disabled(accelerator):
            init_from = str(ensure_tiny_vlm(config.embedded, accelerator.is_main_process))
    return init_from


def build_stage(config: StageConfig) -> VLMTrainer:
    """Model, processor and data of a stage, checked before any step runs."""
    accelerator = build_stage_accelerator(config)
    if isinstance(config, EmbeddedStageConfig):
        with accelerator.main_process_first():
            if accelerator.is_main_process:
                ensure_world(config.embedded)
    init_dir = resolve_init_dir(config, accelerator)
    model = load_stage_model(
        init_dir, VJEPA2VLMForConditionalGeneration, config.model.expect,
        attn_implementation=config.model.attn_implementation,
    )
    processor = VJEPA2VLMProcessor.from_pretrained(init_dir)
    for key, value in config.model.processor.items():
        if not hasattr(processor, key):
            raise ValueError(f"model.processor.{key}: the processor has no attribute {key!r}")
        setattr(processor, key, value)
    vision_trains = any(p.startswith("model.vision_tower") or "model.vision_tower".startswith(p)
                        for p in config.stage.tunable)
    # The frozen setup runs the encoder under no_grad; the finetuned one needs its graph (appendix E.2).
    model.model.set_vision_tower_trainable(vision_trains)
    dataset = VLMConversationDataset.from_args(config.data, processor)
    collator = VLMCollator(pad_token_id=processor.tokenizer.pad_token_id)
    return VLMTrainer(config, model, dataset, collator, base_dir=init_dir, save_extras=processor.save_pretrained,
                      accelerator=accelerator, num_workers=config.data.num_workers,
                      prefetch_factor=config.data.prefetch_factor)


def main(default_recipe: str, argv: list[str] | None = None) -> Path:
    """Parse `[recipe.yaml] [key=value ...]` (the stage's tiny recipe when none is given) and train."""
    argv = list(sys.argv[1:] if argv is None else argv)
    recipe = argv.pop(0) if argv and "=" not in argv[0] else str(RECIPES / default_recipe)
    return build_stage(load_stage_config(recipe, argv)).train()


def load_stage_config(recipe, overrides: list[str] = ()) -> StageConfig:
    """The config of a stage recipe: `EmbeddedStageConfig` when it has an `embedded:` section."""
    return load_config(config_class_for(recipe, StageConfig, {"embedded": EmbeddedStageConfig}), recipe, overrides)


__all__ = ["EmbeddedStageConfig", "ModelArgs", "StageConfig", "StageDataArgs", "build_stage", "load_stage_config",
           "main", "resolve_init_dir"]
