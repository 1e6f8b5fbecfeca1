"""Stage outputs and the handoff between stages.

A stage writes an HF directory (`config.json`, `model.safetensors`, processor files) plus
`stage.json` saying which stage wrote it. With `stage.save: tunable` (LLaVA's projector-only
stage 1) the safetensors hold only the trained weights and `stage.json` points at the directory the
stage started from; `load_stage_model` rebuilds the full model from that chain, so the next stage
starts from a projector-only output exactly as from a full one. LoRA adapters are merged before
writing: every output is a plain model of the same class.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import safe_open

from vjepa_vlm.train.stages import LoraArgs, StageArgs, lora_paths, merge_lora_state_dict, within

STAGE_FILE = "stage.json"


def write_stage_output(accelerator, model, out_dir, stage: StageArgs, lora: LoraArgs, base_dir, save_extras,
                       atomic: bool = True) -> Path:
    """Write the (merged) model of a stage as an HF directory; every rank must call it (ZeRO-3 gathers).

    Args:
        accelerator: the run's accelerator.
        model: the prepared (possibly wrapped, LoRA-injected) model.
        out_dir: destination directory.
        stage, lora: the stage recipe (what to save, whether to merge adapters).
        base_dir: the directory the stage started from (required for `stage.save: tunable`).
        save_extras: optional callable writing the processor / tokenizer into a directory.
        atomic: write beside `out_dir` and rename into place (False when a caller stages already).
    """
    out_dir = Path(out_dir)
    state = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        if lora_paths(stage, lora):
            state = merge_lora_state_dict(state, lora.scaling)
        if stage.save == "tunable":
            if base_dir is None:
                raise ValueError("stage.save='tunable' needs the directory the stage started from (model.init_from)")
            state = {k: v for k, v in state.items() if any(within(k, t) for t in stage.tunable)}
        target = out_dir.with_name(f".tmp-{out_dir.name}") if atomic else out_dir
        shutil.rmtree(target, ignore_errors=True)
        unwrapped = accelerator.unwrap_model(model)
        unwrapped.save_pretrained(target, state_dict={k: v.contiguous() for k, v in state.items()})
        if save_extras is not None:
            save_extras(target)
        record = {
            "stage": stage.name,
            "model_type": unwrapped.config.model_type,
            "weights": stage.save,
            "base": str(Path(base_dir).resolve()) if stage.save == "tunable" else None,
        }
        (target / STAGE_FILE).write_text(json.dumps(record, indent=2))
        if atomic:
            if out_dir.exists():
                shutil.rmtree(out_dir)
            os.replace(target, out_dir)
    accelerator.wait_for_everyone()
    return out_dir


def _read_model_type(directory: Path) -> str:
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{directory} is not a Hugging Face model directory (no config.json)")
    return json.loads(config_file.read_text()).get("model_type", "<none>")


def check_expected_architecture(config, expect: dict, directory) -> None:
    """Raise if `config` differs from the recipe's `expect` fields (dotted keys into the config)."""
    problems = []
    for key, wanted in expect.items():
        node = config
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else getattr(node, part, None)
        if node != wanted:
            problems.append(f"{key}={node!r} (recipe expects {wanted!r})")
    if problems:
        raise ValueError(
            f"{directory} holds another architecture than the recipe expects: {', '.join(problems)}. "
            "Point model.init_from at an output of the same setup or change model.expect"
        )


def load_stage_model(directory, model_class, expect: dict | None = None, **from_pretrained_kwargs):
    """Load the full model a stage output (or any HF directory of `model_class`) describes.

    Args:
        directory: a stage output, or a plain `save_pretrained` directory of `model_class`.
        model_class: e.g. `VJEPA2VLMForConditionalGeneration`; another `model_type` is an error.
        expect: config fields the recipe requires (e.g. {"projector_type": "attentive_pooler"}).
        from_pretrained_kwargs: passed on (e.g. `attn_implementation`).
    """
    directory = Path(directory)
    found = _read_model_type(directory)
    wanted = model_class.config_class.model_type
    if found != wanted:
        raise ValueError(
            f"{directory} holds a '{found}' model, but this stage trains '{wanted}' models; point model.init_from "
            "at the output of the previous VLM stage (or an assembled VLM directory)"
        )
    stage_file = directory / STAGE_FILE
    record = json.loads(stage_file.read_text()) if stage_file.is_file() else {"weights": "full"}
    if record["weights"] == "full":
        model = model_class.from_pretrained(directory, **from_pretrained_kwargs)
    else:
        model = load_stage_model(record["base"], model_class, None, **from_pretrained_kwargs)
        _overlay_weights(model, directory)
    if expect:
        check_expected_architecture(model.config, expect, directory)
    return model


def _overlay_weights(model, directory: Path) -> None:
    """Copy a "tunable"-only output's weights over its base model, also when ZeRO-3 partitioned it at load."""
    params = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    shapes = {k: tuple(getattr(p, "ds_shape", p.shape)) for k, p in params.items()}
    overlay = {}
    for file in sorted(directory.glob("*.safetensors")):
        with safe_open(file, framework="pt") as handle:
            for key in handle.keys():
                overlay[key] = handle.get_tensor(key)
    problems = [k for k in overlay if k not in shapes]
    problems += [f"{k} {tuple(v.shape)} vs {shapes[k]}" for k, v in overlay.items()
                 if k in shapes and tuple(v.shape) != shapes[k]]
    if problems or not overlay:
        raise ValueError(
            f"{directory}: its weights do not fit the model of its base directory "
            f"({problems[:3] or 'no weights found'}); the base changed since this stage ran"
        )
    targets = [params[k] for k in overlay]
    if any(hasattr(p, "ds_id") for p in targets):
        import deepspeed

        with deepspeed.zero.GatheredParameters(targets, modifier_rank=0), torch.no_grad():
            if torch.distributed.get_rank() == 0:
                for key, value in overlay.items():
                    params[key].copy_(value)
    else:
        with torch.no_grad():
            for key, value in overlay.items():
                params[key].copy_(value)


__all__ = ["STAGE_FILE", "check_expected_architecture", "load_stage_model", "write_stage_output"]
