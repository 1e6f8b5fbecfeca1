"""Build the accelerate `Accelerator` for a run: DDP or DeepSpeed, CPU or GPU.

On CPU the process group uses gloo (NCCL needs GPUs) and DeepSpeed needs `DS_ACCELERATOR=cpu` set
before it is imported; on GPU, bf16 autocast is the default mixed precision.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from accelerate import Accelerator
from accelerate.utils import DeepSpeedPlugin, InitProcessGroupKwargs


@dataclass
class DistributedArgs:
    """Distributed section of a training config.

    Args:
        backend: "ddp" (plain data parallel, also single process) or "deepspeed".
        mixed_precision: "auto" (bf16 on GPU, none on CPU), "bf16", "fp16" or "no".
        zero_stage: DeepSpeed ZeRO stage when backend is "deepspeed".
        gradient_accumulation_steps: micro-batches per optimizer step.
        cpu: force CPU even when a GPU is visible.
        deepspeed_config: optional DeepSpeed JSON file (e.g. `train/deepspeed_zero3.json`); when set it
            replaces `zero_stage` and its "auto" values are filled in from the run.
    """

    backend: str = "ddp"
    mixed_precision: str = "auto"
    zero_stage: int = 1
    gradient_accumulation_steps: int = 1
    cpu: bool = False
    deepspeed_config: str | None = None

    def validate(self) -> list[str]:
        errors = []
        if self.backend not in ("ddp", "deepspeed"):
            errors.append(f"distributed.backend must be 'ddp' or 'deepspeed', got {self.backend!r}")
        if self.mixed_precision not in ("auto", "bf16", "fp16", "no"):
            errors.append(f"distributed.mixed_precision must be auto|bf16|fp16|no, got {self.mixed_precision!r}")
        if self.zero_stage not in (0, 1, 2, 3):
            errors.append(f"distributed.zero_stage must be 0-3, got {self.zero_stage}")
        if self.gradient_accumulation_steps < 1:
            errors.append("distributed.gradient_accumulation_steps must be >= 1")
        return errors


def resolve_mixed_precision(args: DistributedArgs, on_gpu: bool) -> str:
    if args.mixed_precision == "auto":
        return "bf16" if on_gpu else "no"
    return args.mixed_precision


def build_accelerator(args: DistributedArgs, grad_clip: float = 0.0, **accelerator_kwargs) -> Accelerator:
    """An Accelerator configured from `args`; `grad_clip` is passed to DeepSpeed, which clips itself.

    `accelerator_kwargs` (e.g. `log_with`, `project_dir`) go to `Accelerator` unchanged.
    """
    on_gpu = torch.cuda.is_available() and not args.cpu
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    # A gloo backend makes accelerate set up a process group, so it is only named for multi-process CPU runs.
    kwargs_handlers = [InitProcessGroupKwargs(backend="gloo")] if launched and not on_gpu else []
    deepspeed_plugin = None
    if args.backend == "deepspeed":
        if not on_gpu:
            os.environ.setdefault("DS_ACCELERATOR", "cpu")
        if args.deepspeed_config:
            deepspeed_plugin = DeepSpeedPlugin(
                hf_ds_config=args.deepspeed_config,
                gradient_accumulation_steps=args.gradient_accumulation_steps,
                gradient_clipping=grad_clip,
            )
        else:
            deepspeed_plugin = DeepSpeedPlugin(
                zero_stage=args.zero_stage,
                gradient_accumulation_steps=args.gradient_accumulation_steps,
                gradient_clipping=grad_clip or None,
                # ZeRO-3 shards the weights; gather them so checkpoints are loadable HF directories.
                zero3_save_16bit_model=args.zero_stage == 3,
            )
    return Accelerator(
        # accelerate silently drops DeepSpeed when cpu=True; without a GPU it runs on CPU regardless.
        cpu=not on_gpu and deepspeed_plugin is None,
        mixed_precision=resolve_mixed_precision(args, on_gpu),
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        deepspeed_plugin=deepspeed_plugin,
        kwargs_handlers=kwargs_handlers,
        **accelerator_kwargs,
    )


def prepare_with_stream_sampler(accelerator: Accelerator, model, optimizer, micro_batch_size: int):
    """`accelerator.prepare(model, optimizer)` for a run whose DataLoader stays unprepared.

    Our samplers already shard the sample stream by rank, so the DataLoader is not prepared; DeepSpeed would read
    the micro-batch size from a prepared one, so it is given explicitly.
    """
    plugin = accelerator.state.deepspeed_plugin
    if plugin is not None:
        plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = micro_batch_size
    return accelerator.prepare(model, optimizer)
