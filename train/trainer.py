"""The one VLM trainer behind every stage: accelerate (DDP or DeepSpeed ZeRO-2/3), LoRA, exact resume.

A stage is data: a recipe says which modules train (`stage`), at which learning rates (`optim`),
on which data, from which directory (`model.init_from`). This module owns the loop:

* global batch = micro batch x processes x gradient accumulation, checked before anything runs;
* the data order is a pure function of (seed, position), so a resumed run sees the batches an
  uninterrupted one would (media decode in `num_workers` DataLoader workers), and accelerate's `save_state`
  restores model, optimizer and RNG per rank;
* the loop is `vjepa_vlm.train.loop.TrainingLoop`, the checkpoints (`step_XXXXXXXX/` with the stage's HF
  model in `model/`) `vjepa_vlm.train.checkpoint`'s; the stage output is an HF directory the next stage
  starts from;
* every bad input that can be detected before a step (unknown module, other architecture, resume
  directory of a different world size or recipe) raises before the first step.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
import yaml
from torch.utils.data import DataLoader, Sampler

from vjepa_vlm.train.checkpoint import CheckpointArgs, checkpoint_root, latest_checkpoint, read_checkpoint_state
from vjepa_vlm.train.config import config_to_dict, flatten_config, validate_config
from vjepa_vlm.train.distributed import DistributedArgs, build_accelerator
from vjepa_vlm.train.feature_cache import VisionFeatureCache
from vjepa_vlm.train.handoff import write_stage_output
from vjepa_vlm.train.loop import StepOutput, TrainingLoop
from vjepa_vlm.train.stages import LoraArgs, StageArgs, check_module_paths, inject_lora, parameter_groups, set_tunable
from vjepa_vlm.vision.schedules import OptimizerScheduler, warmup_cosine, warmup_stable_decay

# Keys that may change between an interrupted run and its resumption without changing the recipe.
RESUMABLE_CHANGES = ("checkpoint.", "logging.", "stop_after", "data.num_workers", "data.prefetch_factor",
                     "cache_vision_features")


@dataclass
class StageOptimArgs:
    """AdamW and learning-rate schedule of a VLM stage (controlled setup defaults, appendix E.2).

    Args:
        lr: peak learning rate (1e-5 in stages 1 / 1.5, 5e-6 in stages 2 / 3: Table 21).
        final_lr: learning rate at the last step for "cosine" (PerceptionLM decays to lr / 100: Table 22).
        schedule: "cosine" (stages 1 / 1.5) or "constant" (stages 2 / 3), both after linear warmup.
        warmup_ratio: warmup as a fraction of the stage's steps (3%, appendix E.2).
        warmup_steps: absolute warmup length; overrides `warmup_ratio` when >= 0 (Table 22 gives steps).
        weight_decay: AdamW decoupled weight decay (0.0 in Table 21, 0.05 in Table 22).
        betas, eps: AdamW moments.
        grad_clip: max gradient norm (LLaVA-NeXT clips at 1.0); 0 disables clipping.
    """

    lr: float = 1e-5  # Table 21
    final_lr: float = 0.0
    schedule: str = "cosine"  # appendix E.2
    warmup_ratio: float = 0.03  # appendix E.2
    warmup_steps: int = -1
    weight_decay: float = 0.0  # Table 21
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    grad_clip: float = 1.0

    def __post_init__(self):
        self.betas = tuple(self.betas)

    def validate(self) -> list[str]:
        errors = []
        if self.schedule not in ("cosine", "constant"):
            errors.append(f"optim.schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        if self.lr <= 0 or self.final_lr < 0:
            errors.append(f"optim.lr must be > 0 and optim.final_lr >= 0, got {self.lr}, {self.final_lr}")
        if not 0 <= self.warmup_ratio < 1:
            errors.append(f"optim.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        return errors

    def warmup(self, total_steps: int) -> int:
        return self.warmup_steps if self.warmup_steps >= 0 else math.ceil(self.warmup_ratio * total_steps)

    def lr_fn(self, total_steps: int):
        warmup = self.warmup(total_steps)
        if self.schedule == "cosine":
            return lambda step: warmup_cosine(step, 0.0, self.lr, self.final_lr, warmup, total_steps)
        return lambda step: warmup_stable_decay(step, 0.0, self.lr, self.lr, warmup, total_steps, 0)


@dataclass
class LoggingArgs:
    """Progress and metrics.

    Args:
        tracker: accelerate tracker ("tensorboard", "wandb", ...) or "none"; logs go to `<run dir>/logs`.
        every_steps: tracker period in optimizer steps (`metrics.jsonl` gets every step).
        progress_bar: show a tqdm bar on the main process.
    """

    tracker: str = "tensorboard"
    every_steps: int = 1
    progress_bar: bool = True


@dataclass
class TrainerArgs:
    """Everything the loop needs besides the model and data (which the stage entry point builds).

    Args:
        seed: seeds initialization, data order and dropout.
        steps: optimizer steps of the stage.
        batch_size: global batch size (256 in the controlled setup, Table 21).
        micro_batch_size: samples per process per forward pass.
        stop_after: end this run after this many total steps, checkpointing first (a time-sliced job);
            0 runs to `steps`.
        gradient_checkpointing: recompute activations in backward to save memory.
        cache_vision_features: when the stage leaves the encoder frozen (and it has no dropout), encode each
            clip or image once and reuse its tokens at later steps (`vjepa_vlm.train.feature_cache`); off under
            DeepSpeed.
    """

    seed: int = 0
    steps: int = 100
    batch_size: int = 256  # Table 21
    micro_batch_size: int = 1
    stop_after: int = 0
    gradient_checkpointing: bool = False
    cache_vision_features: bool = True
    stage: StageArgs = field(default_factory=StageArgs)
    lora: LoraArgs = field(default_factory=LoraArgs)
    optim: StageOptimArgs = field(default_factory=StageOptimArgs)
    distributed: DistributedArgs = field(default_factory=DistributedArgs)
    checkpoint: CheckpointArgs = field(default_factory=CheckpointArgs)
    logging: LoggingArgs = field(default_factory=LoggingArgs)

    def validate(self) -> list[str]:
        errors = []
        if self.steps < 1 or self.batch_size < 1 or self.micro_batch_size < 1:
            errors.append("steps, batch_size and micro_batch_size must be >= 1")
        if self.checkpoint.init_from:
            errors.append("checkpoint.init_from is for pretraining; a VLM stage starts from model.init_from")
        return errors


def gradient_accumulation(batch_size: int, micro_batch_size: int, world_size: int) -> int:
    """Micro-batches per step so that micro x world x accumulation equals the global batch exactly."""
    per_step = micro_batch_size * world_size
    if batch_size % per_step:
        raise ValueError(
            f"batch_size={batch_size} is not a multiple of micro_batch_size={micro_batch_size} x "
            f"{world_size} processes; pick a batch_size divisible by {per_step}"
        )
    return batch_size // per_step


class ResumableBatchSampler(Sampler):
    """Per-rank micro-batches as a pure function of (seed, micro-batch position), endless over epochs.

    Each epoch is a seeded permutation cut into global micro-batches (the remainder dropped) and dealt
    round-robin to ranks; starting at `start` reproduces exactly what an uninterrupted run sees next.

    Args:
        num_samples: dataset length.
        micro_batch_size: samples per rank per micro-batch.
        rank, world_size: this process and the number of processes.
        seed: data-order seed.
        start: micro-batches this rank already consumed.
    """

    def __init__(self, num_samples: int, micro_batch_size: int, rank: int, world_size: int, seed: int, start: int = 0):
        self.per_epoch = num_samples // (micro_batch_size * world_size)
        if self.per_epoch == 0:
            raise ValueError(
                f"the dataset has {num_samples} samples, fewer than one global micro-batch "
                f"({micro_batch_size} x {world_size} processes)"
            )
        self.micro, self.rank, self.world, self.seed, self.start = micro_batch_size, rank, world_size, seed, start
        self.num_samples = num_samples

    def __iter__(self):
        position = self.start
        while True:
            epoch, index = divmod(position, self.per_epoch)
            order = torch.randperm(self.num_samples, generator=torch.Generator().manual_seed(self.seed + epoch))
            first = (index * self.world + self.rank) * self.micro
            yield order[first : first + self.micro].tolist()
            position += 1


def build_stage_accelerator(args: TrainerArgs):
    """The run's Accelerator; gradient accumulation follows from the global batch, not from the recipe.

    Build it before any other accelerate object: a `PartialState` created first would fix the
    process layout without DeepSpeed.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    accumulation = gradient_accumulation(args.batch_size, args.micro_batch_size, world_size)
    distributed = dataclasses.replace(args.distributed, gradient_accumulation_steps=accumulation)
    tracker = None if args.logging.tracker == "none" else args.logging.tracker
    return build_accelerator(distributed, grad_clip=args.optim.grad_clip, log_with=tracker,
                             project_dir=str(Path(args.checkpoint.dir) / "logs"))


def check_resume_compatible(checkpoint: Path, config, world_size: int) -> dict:
    """Raise before any step if `checkpoint` was written by another world size or another recipe."""
    state = read_checkpoint_state(checkpoint)
    if state["world_size"] != world_size:
        raise ValueError(
            f"cannot resume {checkpoint}: it was written by {state['world_size']} processes, this run has "
            f"{world_size}; the sharded optimizer state and data order need the same world size. Launch with "
            f"{state['world_size']} processes or start a new run directory (checkpoint.dir)"
        )
    saved = flatten_config(yaml.safe_load((checkpoint / "config.yaml").read_text()))
    current = flatten_config(config_to_dict(config))
    differing = sorted(
        key
        for key in saved.keys() | current.keys()
        if saved.get(key) != current.get(key) and not key.startswith(RESUMABLE_CHANGES)
    )
    if differing:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in differing[:6])
        raise ValueError(
            f"cannot resume {checkpoint}: the recipe changed ({details}). Resume with the same recipe, "
            "or start a new run directory (checkpoint.dir)"
        )
    return state


class VLMTrainer:
    """Trains a VLM stage under accelerate; `train()` returns the stage output directory.

    Args:
        config: `TrainerArgs` or a stage config extending it (saved whole beside every checkpoint).
        model: the VLM, on CPU, weights loaded; LoRA is injected here when the recipe asks.
        dataset: map-style dataset of samples for `collate_fn`; it replaces unreadable samples itself.
        collate_fn: turns a list of samples into model keyword arguments (`labels` included) plus
            `skipped`, the messages of samples replaced in this batch (see `vjepa_vlm.data.vlm_dataset`).
        base_dir: the directory the stage started from, recorded for a "tunable"-only output.
        save_extras: called with a directory to write beside the model (processor, tokenizer).
        accelerator: from `build_stage_accelerator(config)`, when the caller needed it earlier (e.g. to
            prepare data on the main process first); built in `train()` otherwise.
        num_workers: DataLoader worker processes that load and decode samples (0: in the training process).
        prefetch_factor: micro-batches each worker loads ahead.
    """

    def __init__(self, config, model, dataset, collate_fn, base_dir: str | None = None, save_extras=None,
                 accelerator=None, num_workers: int = 0, prefetch_factor: int = 2):
        self.config = self.args = config
        validate_config(config)
        self.model, self.base_dir, self.save_extras = model, base_dir, save_extras
        self.dataset, self.collate_fn, self.accelerator = dataset, collate_fn, accelerator
        self.num_workers, self.prefetch_factor = num_workers, prefetch_factor
        self.run_dir = Path(self.args.checkpoint.dir)

    def _prepare_model(self) -> list[str]:
        args = self.args
        check_module_paths(self.model, args.stage, args.lora)
        inject_lora(self.model, args.stage, args.lora)
        trainable = set_tunable(self.model, args.stage, args.lora)
        if args.gradient_checkpointing:
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        vlm = self.model.model
        tower_trains = any(p.requires_grad for p in vlm.vision_tower.parameters())
        # Not under DeepSpeed: with ZeRO-3 a rank answering from the cache would skip the parameter gathers
        # that the other ranks' encoder forwards wait for.
        if (args.cache_vision_features and not tower_trains and not vlm._vision_is_stochastic()
                and args.distributed.backend != "deepspeed"):
            vlm.set_vision_tower_trainable(False)
            vlm.feature_cache = VisionFeatureCache()
        return trainable

    def _configure_deepspeed(self, accelerator) -> None:
        plugin = accelerator.state.deepspeed_plugin
        if plugin is None:
            return
        # No dataloader goes through `prepare`, so DeepSpeed learns the batch split from us (it asserts
        # train_batch_size == micro x accumulation x world size).
        plugin.deepspeed_config.update(
            train_micro_batch_size_per_gpu=self.args.micro_batch_size,
            gradient_accumulation_steps=accelerator.gradient_accumulation_steps,
            train_batch_size=self.args.batch_size,
        )
        # accelerate sizes ZeRO-3 buckets from `config.hidden_size`, which a VLM keeps in its text config.
        hidden = self.model.config.get_text_config().hidden_size
        zero = plugin.deepspeed_config.get("zero_optimization", {})
        for key, value in (("stage3_prefetch_bucket_size", int(0.9 * hidden * hidden)),
                           ("stage3_param_persistence_threshold", 10 * hidden)):
            if zero.get(key) == "auto":
                zero[key] = value

    def _loader(self, rank: int, world_size: int, start: int) -> DataLoader:
        workers = {"num_workers": self.num_workers}
        if self.num_workers:
            workers["prefetch_factor"] = self.prefetch_factor
        return DataLoader(
            self.dataset,
            batch_sampler=ResumableBatchSampler(len(self.dataset), self.args.micro_batch_size, rank, world_size,
                                                self.args.seed, start=start),
            collate_fn=self.collate_fn,
            **workers,
        )

    def train(self) -> Path:
        args = self.args
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        resume_from = latest_checkpoint(self.run_dir) if args.checkpoint.resume else None
        if resume_from:
            check_resume_compatible(resume_from, self.config, world_size)
        trainable = self._prepare_model()
        # ZeRO-3 may have partitioned the weights at load time; `ds_numel` is then the full size.
        trainable_numel = sum(getattr(p, "ds_numel", p.numel()) for p in self.model.parameters() if p.requires_grad)
        accelerator = self.accelerator or build_stage_accelerator(args)
        self._configure_deepspeed(accelerator)
        torch.manual_seed(args.seed)
        groups = parameter_groups(self.model, args.stage, args.optim.lr)
        optimizer = torch.optim.AdamW(groups, lr=args.optim.lr, betas=args.optim.betas, eps=args.optim.eps)
        schedule = OptimizerScheduler(optimizer, args.optim.lr_fn(args.steps), lambda step: args.optim.weight_decay)
        model, optimizer = accelerator.prepare(self.model, optimizer)
        schedule.optimizer = optimizer
        loop = TrainingLoop(accelerator, model, optimizer, schedule, self.config, args.checkpoint,
                            name=f"stage {args.stage.name}", grad_clip=args.optim.grad_clip,
                            log_every=args.logging.every_steps, progress_bar=args.logging.progress_bar)
        step, totals = loop.resume(resume_from)
        accumulation = accelerator.gradient_accumulation_steps
        loader = self._loader(accelerator.process_index, world_size, start=step * accumulation)
        accelerator.print(
            f"stage {args.stage.name}: {len(trainable)} trainable tensors, "
            f"{trainable_numel:,} trainable parameters; "
            f"{world_size} processes ({accelerator.distributed_type.value}) x micro batch {args.micro_batch_size} "
            f"x {accumulation} accumulation; {self.num_workers} data workers"
        )
        last = min(args.steps, args.stop_after) if args.stop_after else args.steps
        writer = partial(write_stage_output, accelerator, model, stage=args.stage, lora=args.lora,
                         base_dir=self.base_dir, save_extras=self.save_extras, atomic=False)
        model.train()
        loop.run(iter(loader), partial(self._step, accelerator, model), {"model": writer}, step=step,
                 last_step=last, totals={"skipped_samples": 0, **totals})
        if last == args.steps:
            return self._write_output(accelerator, model)
        accelerator.end_training()
        return checkpoint_root(self.run_dir)

    @staticmethod
    def _step(accelerator, model, batch: dict) -> StepOutput:
        skipped = batch.pop("skipped", ())
        for message in skipped:
            accelerator.print(f"skipped bad sample: {message}", flush=True)
        tokens = int((batch["labels"] != -100).sum())
        samples = len(batch["labels"])
        batch = {k: v.to(accelerator.device) if torch.is_tensor(v) else v for k, v in batch.items()}
        # Only the loss is read: the LM head runs at supervised positions only (same loss and gradients).
        return StepOutput(model(**batch, supervised_logits_only=True).loss, counts={"samples": samples, "tokens": tokens},
                          totals={"skipped_samples": len(skipped)})

    def _write_output(self, accelerator, model) -> Path:
        output = self.run_dir / "output"
        cache = self.model.model.feature_cache
        if cache is not None:
            accelerator.print(f"vision feature cache: {cache.hits} hits, {cache.misses} misses, "
                              f"{cache.bytes / 2**20:.0f} MiB")
        write_stage_output(accelerator, model, output, self.args.stage, self.args.lora, self.base_dir,
                           self.save_extras, atomic=True)
        accelerator.wait_for_everyone()
        accelerator.end_training()
        accelerator.print(f"stage {self.args.stage.name} done: {output}")
        return output


__all__ = [
    "LoggingArgs",
    "ResumableBatchSampler",
    "StageOptimArgs",
    "TrainerArgs",
    "VLMTrainer",
    "build_stage_accelerator",
    "check_resume_compatible",
    "gradient_accumulation",
]
