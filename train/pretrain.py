"""V-JEPA 2 self-supervised pretraining entry point.

    accelerate launch train/pretrain.py --config train/recipes/pretrain_vitl.yaml [key=value ...]
    accelerate launch train/pretrain.py ... distributed.backend=deepspeed distributed.deepspeed_config=train/deepspeed_zero2.json
    python train/pretrain.py            # the tiny CPU recipe on the synthetic world (generated if absent)

A recipe with a `synthetic_world:` section (the tiny recipes, the default without `--config`) pretrains on
the synthetic world, generated when absent; any other recipe lists its manifests in `data.sources`.
The loop is `vjepa_vlm.train.loop.TrainingLoop`; the run directory (`checkpoint.dir`) receives `metrics.jsonl`
(one row per step: loss, lr, weight decay, EMA momentum, feature std and effective rank of target and
context, skipped files), `loss_curve.png`, and checkpoints whose `online/` and `target/` folders load with
`VJEPA2Model.from_pretrained`; `target/` holds the EMA encoder, the one to probe. A cooldown run
(progressive resolution) sets `checkpoint.init_from` to a constant-phase checkpoint and changes
`data.num_frames` / `data.crop_size`. A run with the residual predictor (`pred_residual`) initialized from a
plain predictor's checkpoint restarts the predictor's output projection at zero (`restart_residual_head`).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from accelerate.utils import set_seed
from torch.utils.data import DataLoader

from vjepa_vlm import VJEPA2Config, VJEPA2Model
from vjepa_vlm.data.pretrain_dataset import DataArgs, PretrainMixture, SourceArgs, StreamPositionSampler
from vjepa_vlm.data.synthetic_world import WorldConfig, generate_world
from vjepa_vlm.train.checkpoint import CheckpointArgs, latest_checkpoint, load_model_weights, read_checkpoint_state
from vjepa_vlm.train.config import config_class_for, load_config, validate_config
from vjepa_vlm.train.distributed import DistributedArgs, build_accelerator, prepare_with_stream_sampler
from vjepa_vlm.train.loop import StepOutput, TrainingLoop
from vjepa_vlm.vision.masking import MaskArgs, MultiBlockMaskCollator, grid_size_for
from vjepa_vlm.vision.pretraining import VJEPA2Pretrainer, weight_decay_param_groups
from vjepa_vlm.vision.schedules import OptimArgs, OptimizerScheduler, ema_at, lr_at, weight_decay_at

TINY_RECIPE = Path(__file__).resolve().parent / "recipes" / "pretrain_tiny.yaml"
MODEL_NAMES = ("online", "target")


@dataclass
class ModelArgs:
    """Model section.

    Args:
        preset: a `VJEPA2Config.from_preset` name.
        config_overrides: fields that replace the preset's (e.g. {"patch_size": 8}).
        gradient_checkpointing: recompute encoder blocks in backward to save memory.
    """

    preset: str = "vjepa2-tiny"
    config_overrides: dict = field(default_factory=dict)
    gradient_checkpointing: bool = False


@dataclass
class SyntheticWorldArgs:
    """The synthetic world the tiny recipes pretrain on; generated when `<dir>/meta.json` is absent.

    Args:
        dir: world directory (manifests under `<dir>/train/`; test clips are never pretrained on).
        seed: generation seed.
        n_train, n_test: clips per split.
        image_weight: mixture weight of the still images (Table 1 gives ImageNet 0.25); videos get the rest.
        workers: rendering processes.
        frames, size, fps, motions, anticipation_s, shared_event_motion: the generator's clip settings
            (`WorldConfig`). None: the generator's default when the world is generated, and any value in an
            existing world. A value that is set must match an existing world's `meta.json` (a setting older worlds
            do not record counts as the generator's default), so a recipe written for one world never pretrains on
            another one left under the same folder.
    """

    dir: str = "runs/synthetic_world"
    seed: int = 0
    n_train: int = 800
    n_test: int = 400
    image_weight: float = 0.25
    workers: int = 1
    frames: int | None = None
    size: int | None = None
    fps: float | None = None
    motions: list[str] | None = None
    anticipation_s: float | None = None
    shared_event_motion: bool | None = None


@dataclass
class PretrainConfig:
    """Top-level pretraining config.

    Args:
        steps: total optimizer steps of the schedule.
        stop_at_step: end this job early at this step (schedules still follow `steps`); for time-sliced
            jobs that resume later.
        seed: seed of model init, data stream and masks.
        log_every: print a metrics line every this many steps (every step is written to metrics.jsonl).
        predictor_lr_scale: the predictor's learning rate as a multiple of `optim.lr` (same schedule); 1 keeps
            the two optimizer groups of the reference, another value gives the predictor groups of its own.
    """

    model: ModelArgs = field(default_factory=ModelArgs)
    data: DataArgs = field(default_factory=DataArgs)
    mask: MaskArgs = field(default_factory=MaskArgs)
    optim: OptimArgs = field(default_factory=OptimArgs)
    checkpoint: CheckpointArgs = field(default_factory=CheckpointArgs)
    distributed: DistributedArgs = field(default_factory=DistributedArgs)
    steps: int = 100
    stop_at_step: int | None = None
    seed: int = 0
    log_every: int = 10
    predictor_lr_scale: float = 1.0

    def validate(self) -> list[str]:
        errors = []
        if not self.predictor_lr_scale > 0:
            errors.append(f"predictor_lr_scale {self.predictor_lr_scale}: must be > 0 (the predictor always trains)")
        if not self.data.sources:
            errors.append("data.sources is empty: list the manifests to pretrain on (the tiny recipes pretrain on "
                          "the synthetic world instead, through their `synthetic_world:` section)")
        errors += self.optim.run_length_errors(self.steps, self.stop_at_step)
        try:
            config = build_model_config(self.model)
            grid_size_for(self.data.num_frames, self.data.crop_size, config.tubelet_size, config.patch_size)
        except (ValueError, TypeError) as error:
            errors.append(f"model/data: {error}")
        return errors


@dataclass
class SyntheticPretrainConfig(PretrainConfig):
    """Pretraining on the synthetic world: the config of a recipe with a `synthetic_world:` section.

    Args:
        synthetic_world: the world; its training videos and images become `data.sources` when those are empty.
    """

    synthetic_world: SyntheticWorldArgs = field(default_factory=SyntheticWorldArgs)


def build_model_config(args: ModelArgs) -> VJEPA2Config:
    return VJEPA2Config.from_preset(args.preset, **args.config_overrides)


def pretrain_param_groups(model: VJEPA2Model, predictor_lr_scale: float = 1.0) -> list[dict]:
    """AdamW groups of the online model; the predictor gets its own groups only when its learning rate differs,
    so that runs with the default keep the optimizer layout (and resume) of every earlier checkpoint."""
    if predictor_lr_scale == 1.0:
        return weight_decay_param_groups(model)
    return weight_decay_param_groups(model.encoder) + weight_decay_param_groups(model.predictor, predictor_lr_scale)


def synthetic_world_sources(args: SyntheticWorldArgs) -> list[SourceArgs]:
    """Pretraining sources of the synthetic world: its training videos and images, labels unused."""
    world_dir = Path(args.dir)
    return [
        SourceArgs(str(world_dir / "train" / "motion_classification.jsonl"), 1.0 - args.image_weight, str(world_dir)),
        SourceArgs(str(world_dir / "train" / "image_classification.jsonl"), args.image_weight, str(world_dir)),
    ]


WORLD_CLIP_SETTINGS = ("frames", "size", "fps", "motions", "anticipation_s", "shared_event_motion")


def ensure_synthetic_world(args: SyntheticWorldArgs) -> None:
    """Generate the world when it is absent; refuse an existing one whose clip settings differ from the set ones."""
    requested = {name: getattr(args, name) for name in WORLD_CLIP_SETTINGS if getattr(args, name) is not None}
    meta_file = Path(args.dir) / "meta.json"
    if not meta_file.is_file():
        generate_world(args.dir, n_train=args.n_train, n_test=args.n_test, seed=args.seed, workers=args.workers,
                       **requested)
        return
    existing = {setting.name: setting.default for setting in fields(WorldConfig)}
    existing |= json.loads(meta_file.read_text())["config"]

    def plain(value):
        return list(value) if isinstance(value, (list, tuple)) else value

    differing = [f"{name}: recipe {value!r}, world {existing.get(name)!r}" for name, value in requested.items()
                 if plain(value) != plain(existing.get(name))]
    if differing:
        raise ValueError(f"{meta_file} describes another world than synthetic_world asks for ({'; '.join(differing)}); "
                         "point synthetic_world.dir at a new folder, or regenerate this one with "
                         "scripts/make_synthetic_data.py and those settings")


def saved_pred_residual(model_dir: Path) -> bool:
    """Whether the `VJEPA2Model` saved in `model_dir` has the residual predictor (configs older than it do not)."""
    return bool(json.loads((model_dir / "config.json").read_text()).get("pred_residual", False))


@torch.no_grad()
def restart_residual_head(model: VJEPA2Model) -> None:
    """Zero the predictor's output projection of a model initialized from a plain predictor's weights.

    That projection learned the whole target feature; under the residual option it adds to the copy of the last
    visible slice, so kept as it is it would predict copy + feature. At zero the run starts as the copy baseline, like
    a residual predictor built from scratch, with the plain predictor's trunk.
    """
    model.predictor.proj.weight.zero_()
    model.predictor.proj.bias.zero_()


def load_recipe(path: str | Path, overrides: list[str] = ()) -> PretrainConfig:
    """The config of a recipe: `SyntheticPretrainConfig` when it has a `synthetic_world:` section."""
    cls = config_class_for(path, PretrainConfig, {"synthetic_world": SyntheticPretrainConfig})
    return load_config(cls, path, overrides)


def train(config: PretrainConfig) -> Path:
    """Run (or resume) pretraining; return the run directory."""
    # A synthetic recipe given other `data.sources` (e.g. a curated scene manifest) neither reads nor makes the world.
    synthetic = isinstance(config, SyntheticPretrainConfig) and not config.data.sources
    if synthetic:
        config.data.sources = synthetic_world_sources(config.synthetic_world)
    validate_config(config)
    accelerator = build_accelerator(config.distributed, config.optim.grad_clip)
    plugin = accelerator.state.deepspeed_plugin
    if plugin is not None and plugin.zero_stage == 3:
        raise ValueError(
            "pretraining runs under DDP or DeepSpeed ZeRO stages 0-2, not ZeRO-3: the EMA update of the target "
            "encoder reads the full online weights on every rank, which ZeRO-3 partitions away "
            "(use train/deepspeed_zero2.json)"
        )
    if synthetic:
        if accelerator.is_main_process:
            ensure_synthetic_world(config.synthetic_world)
        accelerator.wait_for_everyone()

    set_seed(config.seed)
    model_config = build_model_config(config.model)
    model = VJEPA2Model(model_config)
    if config.model.gradient_checkpointing:
        model.encoder.set_grad_checkpointing(True)
    pretrainer = VJEPA2Pretrainer(model)
    models = {"online": pretrainer.online, "target": pretrainer.target}
    optimizer = torch.optim.AdamW(
        pretrain_param_groups(pretrainer.online, config.predictor_lr_scale), betas=config.optim.betas, eps=config.optim.eps
    )
    scheduler = OptimizerScheduler(
        optimizer,
        lambda step: lr_at(config.optim, step, config.steps),
        lambda step: weight_decay_at(config.optim, step, config.steps),
    )
    resume_from = latest_checkpoint(config.checkpoint.dir) if config.checkpoint.resume else None
    if resume_from is not None:
        # Refuse another architecture before any step (optimizer, scheduler and RNG follow once prepared).
        read_checkpoint_state(resume_from)
        for name, module in models.items():
            load_model_weights(module, resume_from / name)
    elif config.checkpoint.init_from:
        for name, module in models.items():
            load_model_weights(module, Path(config.checkpoint.init_from) / name)
            if model_config.pred_residual and not saved_pred_residual(Path(config.checkpoint.init_from) / name):
                restart_residual_head(module)
        accelerator.print(f"initialized weights from {config.checkpoint.init_from}")

    wrapped, optimizer = prepare_with_stream_sampler(accelerator, pretrainer, optimizer, config.data.batch_size)
    loop = TrainingLoop(
        accelerator, wrapped, optimizer, scheduler, config, config.checkpoint, name="pretrain",
        grad_clip=config.optim.grad_clip, clip_parameters=pretrainer.online.parameters, log_every=config.log_every,
        print_rows=True,
    )
    step, totals = loop.resume(resume_from)
    totals = {"position": 0, "skipped_files": 0, **totals}

    grid = grid_size_for(config.data.num_frames, config.data.crop_size, model_config.tubelet_size, model_config.patch_size)
    dataset = PretrainMixture(config.data, seed=config.seed)
    sampler = StreamPositionSampler(totals["position"], accelerator.process_index, accelerator.num_processes)
    loader = DataLoader(
        dataset,
        batch_size=config.data.batch_size,
        sampler=sampler,
        num_workers=config.data.num_workers,
        collate_fn=MultiBlockMaskCollator(grid, config.mask.configs, seed=config.seed, max_tries=config.mask.max_tries),
    )

    def step_fn(batch: dict) -> StepOutput:
        pixel_values = batch["pixel_values"].to(accelerator.device)
        masks = [{k: v.to(accelerator.device) for k, v in mask.items()} for mask in batch["masks"]]
        with accelerator.autocast():
            outputs = wrapped(pixel_values, masks)
        return StepOutput(
            outputs["loss"],
            metrics={k: outputs[k].detach() for k in ("target_std", "context_std", "target_rank")},
            counts={"samples": len(pixel_values)},
            totals={"position": config.data.batch_size, "skipped_files": int(batch["skipped_files"].sum())},
        )

    def after_step(index: int) -> dict:
        momentum = ema_at(config.optim, index, config.steps)
        pretrainer.update_target(momentum)
        return {"weight_decay": optimizer.param_groups[0]["weight_decay"], "ema": momentum}

    loop.run(iter(loader), step_fn, models, step=step, last_step=config.stop_at_step or config.steps,
             totals=totals, after_step=after_step, before_checkpoint=pretrainer.sync_target_predictor)
    accelerator.wait_for_everyone()
    return Path(config.checkpoint.dir)


def parse_args(argv: list[str] | None = None) -> PretrainConfig:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=None, help=f"recipe YAML (default: {TINY_RECIPE.name})")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. optim.lr=1e-3 steps=50")
    args = parser.parse_args(argv)
    return load_recipe(args.config or TINY_RECIPE, args.overrides)


def main(argv: list[str] | None = None) -> None:
    train(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
