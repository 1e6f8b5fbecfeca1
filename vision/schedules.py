"""Learning-rate, weight-decay and EMA schedules as pure functions of the step.

`warmup_stable_decay` is the V-JEPA 2 recipe (Table 9); `warmup_cosine` and `linear_ramp` make the
abbreviated recipe (Table 10). `OptimizerScheduler` applies them to optimizer parameter groups and is
checkpointable, so a resumed run sees exactly the values an uninterrupted one would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch


def linear_ramp(step: int, start: float, end: float, num_steps: int) -> float:
    """Linear from `start` at step 0 to `end` at `num_steps`, then held at `end`."""
    if num_steps <= 0:
        return end
    progress = min(max(step, 0), num_steps) / num_steps
    return start + progress * (end - start)


def warmup_stable_decay(
    step: int,
    start_lr: float,
    peak_lr: float,
    final_lr: float,
    warmup_steps: int,
    total_steps: int,
    decay_steps: int,
) -> float:
    """Linear warmup to `peak_lr`, constant, then linear cooldown to `final_lr` over the last `decay_steps`."""
    if step < warmup_steps:
        return linear_ramp(step, start_lr, peak_lr, warmup_steps)
    decay_start = total_steps - decay_steps
    if step < decay_start:
        return peak_lr
    return linear_ramp(step - decay_start, peak_lr, final_lr, decay_steps)


def warmup_cosine(
    step: int, start_lr: float, peak_lr: float, final_lr: float, warmup_steps: int, total_steps: int
) -> float:
    """Linear warmup to `peak_lr`, then cosine decay to `final_lr` at `total_steps`."""
    if step < warmup_steps:
        return linear_ramp(step, start_lr, peak_lr, warmup_steps)
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return final_lr + 0.5 * (peak_lr - final_lr) * (1.0 + math.cos(math.pi * progress))


@dataclass
class OptimArgs:
    """Optimizer and schedule section of a training config.

    Args:
        schedule: "wsd" (warmup-constant-cooldown, Table 9) or "cosine" (abbreviated recipe, Table 10).
        start_lr, lr, final_lr: learning rate at step 0, after warmup, at the end.
        warmup_steps: linear warmup length.
        decay_steps: "wsd" cooldown length (the last steps of the run); 0 = no cooldown in this run.
        weight_decay, final_weight_decay: weight decay, linearly ramped to the final value (Table 10);
            equal values give the constant decay of Table 9.
        ema, final_ema: target-encoder EMA momentum, ramped the same way.
        betas, eps: AdamW moments.
        grad_clip: max gradient norm; 0 disables clipping.
    """

    schedule: str = "wsd"
    start_lr: float = 1e-4  # Table 9
    lr: float = 5.25e-4  # Table 9
    final_lr: float = 1e-6  # Table 9
    warmup_steps: int = 12000  # Table 9
    decay_steps: int = 12000  # Table 9 cooldown phase
    weight_decay: float = 0.04  # Table 9
    final_weight_decay: float = 0.04
    ema: float = 0.99925  # Table 9
    final_ema: float = 0.99925
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    grad_clip: float = 10.0

    def __post_init__(self):
        self.betas = tuple(self.betas)

    def validate(self) -> list[str]:
        errors = []
        if self.schedule not in ("wsd", "cosine"):
            errors.append(f"optim.schedule must be 'wsd' or 'cosine', got {self.schedule!r}")
        if min(self.start_lr, self.lr, self.final_lr) < 0:
            errors.append("optim learning rates (start_lr, lr, final_lr) must be >= 0")
        if not 0 <= self.ema <= 1 or not 0 <= self.final_ema <= 1:
            errors.append(f"optim.ema and optim.final_ema must be in [0, 1], got {self.ema}, {self.final_ema}")
        if self.warmup_steps < 0 or self.decay_steps < 0:
            errors.append("optim.warmup_steps and optim.decay_steps must be >= 0")
        return errors

    def run_length_errors(self, steps: int, stop_at_step: int | None) -> list[str]:
        """Rules tying this schedule to a run's `steps` and `stop_at_step` (checked by each trainer's config)."""
        errors = []
        if steps < 1:
            errors.append(f"steps must be >= 1, got {steps}")
        if self.schedule == "wsd" and self.warmup_steps + self.decay_steps > steps:
            errors.append(
                f"optim.warmup_steps ({self.warmup_steps}) + optim.decay_steps ({self.decay_steps}) "
                f"exceed steps ({steps}); shorten them or raise steps"
            )
        if stop_at_step is not None and not 0 < stop_at_step <= steps:
            errors.append(f"stop_at_step must be in [1, steps={steps}], got {stop_at_step}")
        return errors


def lr_at(args: OptimArgs, step: int, total_steps: int) -> float:
    if args.schedule == "cosine":
        return warmup_cosine(step, args.start_lr, args.lr, args.final_lr, args.warmup_steps, total_steps)
    return warmup_stable_decay(
        step, args.start_lr, args.lr, args.final_lr, args.warmup_steps, total_steps, args.decay_steps
    )


def weight_decay_at(args: OptimArgs, step: int, total_steps: int) -> float:
    return linear_ramp(step, args.weight_decay, args.final_weight_decay, total_steps)


def ema_at(args: OptimArgs, step: int, total_steps: int) -> float:
    return linear_ramp(step, args.ema, args.final_ema, total_steps)


class OptimizerScheduler:
    """Sets every parameter group's lr and weight decay from step-indexed schedules.

    A group's `lr_scale` (default 1) multiplies the lr, so `lr_scale=0` freezes a module; its
    `weight_decay_scale` (default 1) multiplies the weight decay, and `apply_weight_decay=False` makes
    it 0. Probe sweeps use the two scales to give every head its own lr and weight decay.

    Args:
        optimizer: the optimizer whose groups are updated.
        lr_fn: step -> base learning rate.
        weight_decay_fn: step -> base weight decay.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        lr_fn: Callable[[int], float],
        weight_decay_fn: Callable[[int], float],
    ):
        self.optimizer = optimizer
        self.lr_fn = lr_fn
        self.weight_decay_fn = weight_decay_fn
        self.step_count = 0
        self._apply()

    def _apply(self) -> None:
        lr, weight_decay = self.lr_fn(self.step_count), self.weight_decay_fn(self.step_count)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
            scale = group.get("weight_decay_scale", 1.0) if group.get("apply_weight_decay", True) else 0.0
            group["weight_decay"] = weight_decay * scale

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"step_count": self.step_count}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step_count"])
        self._apply()
