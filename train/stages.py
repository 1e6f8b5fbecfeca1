"""What trains in a stage: tunable modules, per-module learning rates, LoRA, as recipe data.

A stage never branches in code. Its recipe names module paths (`model.multi_modal_projector`, ...)
that train; everything else is frozen. Under LoRA, a tunable module that LoRA covers trains through
its adapters only (its base weights stay frozen), while tunable modules outside LoRA's scope (the
projector, a finetuned encoder) keep training in full: "tunable" means the same thing with and
without LoRA, and a module that is not tunable gets no adapters and no gradients.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from torch import nn

# LLaVA-NeXT adapts every linear layer of the LLM's blocks (attention and MLP) when LoRA is on.
DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_LORA_KEY = re.compile(r"^(?P<prefix>.*)\.lora_(?P<ab>[AB])\.(?P<adapter>[^.]+)\.weight$")


@dataclass
class LoraArgs:
    """peft LoRA for the language model.

    Args:
        enabled: inject LoRA adapters (the base weights of covered modules are then frozen).
        modules: module paths LoRA covers; only those that are also tunable in the stage get adapters.
        target_modules: leaf names of the linear layers inside `modules` that get adapters.
        r: adapter rank.
        alpha: adapter scaling numerator (scaling = alpha / r).
        dropout: dropout on the adapter input.
    """

    enabled: bool = False
    modules: list[str] = field(default_factory=lambda: ["model.language_model"])
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_LORA_TARGETS))
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0

    @property
    def scaling(self) -> float:
        return self.alpha / self.r

    def validate(self) -> list[str]:
        errors = []
        if self.enabled and (self.r < 1 or self.alpha <= 0):
            errors.append(f"lora.r must be >= 1 and lora.alpha > 0, got r={self.r} alpha={self.alpha}")
        if self.enabled and not self.target_modules:
            errors.append("lora.target_modules is empty; name the linear layers to adapt (e.g. q_proj)")
        return errors


@dataclass
class StageArgs:
    """Which modules train in a stage, and at which learning rate.

    Args:
        name: stage label ("1", "1.5", "2", "3"), recorded in the output directory.
        tunable: module paths whose parameters train; everything else is frozen.
        module_lr: optional learning rate per tunable module path (the others use `optim.lr`),
            e.g. a smaller rate for a finetuned encoder.
        save: "full" writes the whole model at the end of the stage; "tunable" writes only the
            trained weights plus a pointer to the directory the stage started from (LLaVA's
            projector-only stage 1, handed to the next stage without copying the LLM).
    """

    name: str = "1"
    tunable: list[str] = field(default_factory=lambda: ["model.multi_modal_projector"])
    module_lr: dict = field(default_factory=dict)
    save: str = "full"

    def validate(self) -> list[str]:
        errors = []
        if not self.tunable:
            errors.append("stage.tunable is empty; name at least one module to train (e.g. model.multi_modal_projector)")
        if self.save not in ("full", "tunable"):
            errors.append(f"stage.save must be 'full' or 'tunable', got {self.save!r}")
        unknown = sorted(set(self.module_lr) - set(self.tunable))
        if unknown:
            errors.append(f"stage.module_lr names modules that are not in stage.tunable: {unknown}")
        return errors


def get_module(model: nn.Module, path: str) -> nn.Module:
    """The submodule at dotted `path`; a missing path raises naming what exists at the deepest match."""
    module = model
    walked = []
    for part in path.split("."):
        children = dict(module.named_children())
        if part not in children:
            where = ".".join(walked) or type(model).__name__
            raise ValueError(
                f"recipe names module {path!r}, but {where} has no child {part!r}; "
                f"its children are {sorted(children)}"
            )
        module = children[part]
        walked.append(part)
    return module


def check_module_paths(model: nn.Module, stage: StageArgs, lora: LoraArgs) -> None:
    """Raise before any step if the recipe names a module the model does not have."""
    for path in [*stage.tunable, *(lora.modules if lora.enabled else [])]:
        get_module(model, path)


def within(name: str, path: str) -> bool:
    """Whether the dotted `name` (a parameter or module) is `path` or lies inside it."""
    return name == path or name.startswith(path + ".")


def lora_paths(stage: StageArgs, lora: LoraArgs) -> list[str]:
    """Module paths that get adapters: covered by LoRA and tunable in this stage."""
    if not lora.enabled:
        return []
    return [p for p in lora.modules if any(within(p, t) or within(t, p) for t in stage.tunable)]


def inject_lora(model: nn.Module, stage: StageArgs, lora: LoraArgs) -> nn.Module:
    """Add peft LoRA adapters in place (the model keeps its class and module names)."""
    from peft import LoraConfig, inject_adapter_in_model

    paths = lora_paths(stage, lora)
    if not paths:
        return model
    scopes = "|".join(re.escape(p) for p in paths)
    leaves = "|".join(re.escape(t) for t in lora.target_modules)
    pattern = rf"(?:{scopes})(?:\..*)?\.(?:{leaves})"
    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=pattern)
    try:
        return inject_adapter_in_model(config, model)
    except ValueError as error:
        raise ValueError(f"LoRA found no layer named {lora.target_modules} inside {paths}: {error}") from None


def set_tunable(model: nn.Module, stage: StageArgs, lora: LoraArgs) -> list[str]:
    """Freeze everything but the stage's tunable parts; return the names of trainable parameters.

    Inside LoRA's scope only adapter weights train; elsewhere a tunable module trains in full.
    """
    covered = lora_paths(stage, lora)
    trainable = []
    for name, param in model.named_parameters():
        tunable = any(within(name, t) for t in stage.tunable)
        if tunable and any(within(name, p) for p in covered):
            tunable = ".lora_A." in name or ".lora_B." in name
        param.requires_grad_(tunable)
        if tunable:
            trainable.append(name)
    if not trainable:
        raise ValueError(f"stage {stage.name!r} trains nothing: no parameter lies under {stage.tunable}")
    return trainable


def parameter_groups(model: nn.Module, stage: StageArgs, lr: float) -> list[dict]:
    """Optimizer groups of the trainable parameters for `OptimizerScheduler`.

    A module in `stage.module_lr` gets `lr_scale = module_lr / lr`, so it follows the same schedule
    shape at its own peak; 1-D tensors (norm scales, biases) get no weight decay.
    """
    groups: dict[tuple[float, bool], list[torch.Tensor]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        owner = max((t for t in stage.module_lr if within(name, t)), key=len, default=None)
        scale = float(stage.module_lr[owner]) / lr if owner else 1.0
        groups.setdefault((scale, param.ndim >= 2), []).append(param)
    return [
        {"params": params, "lr_scale": scale, "apply_weight_decay": decay}
        for (scale, decay), params in groups.items()
    ]


def merge_lora_state_dict(state_dict: dict[str, torch.Tensor], scaling: float) -> dict[str, torch.Tensor]:
    """Fold LoRA adapters into their base weights: W + scaling * B @ A, with peft's key wrapping removed.

    A pure function on a (gathered) state dict, so it works the same after DDP or ZeRO-3.
    """
    merged = {}
    deltas: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        match = _LORA_KEY.match(key)
        if match:
            deltas.setdefault(match["prefix"], {})[match["ab"]] = value
        else:
            merged[key.replace(".base_layer.", ".")] = value
    for prefix, pair in deltas.items():
        if set(pair) != {"A", "B"}:
            raise ValueError(f"LoRA weights of {prefix} are incomplete: found only lora_{''.join(pair)}")
        weight_key = f"{prefix}.weight"
        if weight_key not in merged:
            raise ValueError(f"LoRA adapter {prefix} has no base weight {weight_key} in the state dict")
        base = merged[weight_key]
        delta = (pair["B"].float() @ pair["A"].float()) * scaling
        merged[weight_key] = (base.float() + delta).to(base.dtype)
    return merged


__all__ = [
    "DEFAULT_LORA_TARGETS",
    "LoraArgs",
    "StageArgs",
    "check_module_paths",
    "within",
    "get_module",
    "inject_lora",
    "lora_paths",
    "merge_lora_state_dict",
    "parameter_groups",
    "set_tunable",
]
