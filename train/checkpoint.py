"""Atomic, resumable Hugging Face checkpoints.

A checkpoint is a directory `step_XXXXXXXX/` holding one `save_pretrained` directory per model (each
loadable with `from_pretrained`), the resolved `config.yaml`, and `training_state/` with the optimizer,
scheduler, step, data position and RNG states. It is written under a temporary name and renamed
into place, so a crash never leaves a half-written checkpoint that resume would pick up.

Runs under `accelerate launch` pass their `Accelerator`: every rank then calls `save_checkpoint`, and the optimizer
and RNG states go through accelerate's `save_state` into `training_state/accelerate/`, one file per rank, because a
DeepSpeed ZeRO optimizer holds only its rank's partition and each rank draws its own random numbers.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from vjepa_vlm.train.config import save_config

STEP_DIR = re.compile(r"^step_(\d{8})$")


@dataclass
class CheckpointArgs:
    """Checkpoint section of a training config.

    Args:
        dir: run directory; checkpoints go to `<dir>/checkpoints/step_XXXXXXXX`.
        every_steps: save period in optimizer steps (the last step is always saved).
        keep_last: how many recent checkpoints to keep (0 keeps all).
        resume: continue from the newest checkpoint in `dir` when there is one.
        init_from: a checkpoint whose model weights (only) start this run, e.g. the constant-phase
            checkpoint a cooldown run starts from (progressive resolution).
    """

    dir: str = "runs/pretrain"
    every_steps: int = 100
    keep_last: int = 2
    resume: bool = True
    init_from: str | None = None

    def validate(self) -> list[str]:
        errors = []
        if self.every_steps < 1:
            errors.append(f"checkpoint.every_steps must be >= 1, got {self.every_steps}")
        if self.keep_last < 0:
            errors.append(f"checkpoint.keep_last must be >= 0, got {self.keep_last}")
        return errors


def checkpoint_root(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / "checkpoints"


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest complete `step_*` checkpoint of a run, or None."""
    root = checkpoint_root(run_dir)
    if not root.is_dir():
        return None
    steps = sorted(p for p in root.iterdir() if p.is_dir() and STEP_DIR.match(p.name))
    return steps[-1] if steps else None


def _rng_state() -> dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value):
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def save_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    models: dict,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler=None,
    trainer_state: dict | None = None,
    config=None,
    keep_last: int = 0,
    accelerator=None,
) -> Path:
    """Write `<run_dir>/checkpoints/step_<step>` atomically and return its path.

    Args:
        run_dir: run directory.
        step: optimizer steps done; names the directory.
        models: name -> `PreTrainedModel`; each is saved with `save_pretrained` into `<name>/`.
        optimizer, scheduler: objects with `state_dict()`; saved in `training_state/`.
        trainer_state: JSON-serializable loop state (data position, running sums, ...).
        config: the resolved config dataclass, saved as `config.yaml`.
        keep_last: delete all but this many newest checkpoints afterwards (0 keeps all).
        accelerator: the run's `Accelerator` after `prepare`; then all ranks must call this, the optimizer
            and RNG states of every rank are saved by `accelerator.save_state`, the rest by the main process.
    """
    root = checkpoint_root(run_dir)
    final = root / f"step_{step:08d}"
    is_main = accelerator is None or accelerator.is_main_process
    if accelerator is None:
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=root))
    else:
        # Every rank writes into the same staging directory, so its name cannot be random.
        staging = root / f".tmp-{final.name}"
        if is_main:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
        accelerator.wait_for_everyone()
    state_dir = staging / "training_state"
    if accelerator is not None:
        accelerator.save_state(str(state_dir / "accelerate"))
        # The main process renames the staging directory below: every rank must be done writing into it.
        accelerator.wait_for_everyone()
    if is_main:
        for name, model in models.items():
            model.save_pretrained(staging / name)
        state_dir.mkdir(exist_ok=True)
        if optimizer is not None and accelerator is None:
            torch.save(optimizer.state_dict(), state_dir / "optimizer.pt")
        if scheduler is not None:
            torch.save(scheduler.state_dict(), state_dir / "scheduler.pt")
        if accelerator is None:
            torch.save(_rng_state(), state_dir / "rng.pt")
        (state_dir / "trainer_state.json").write_text(json.dumps({"step": step, **(trainer_state or {})}, indent=2))
        if config is not None:
            save_config(config, staging / "config.yaml")
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        if keep_last > 0:
            for old in sorted(p for p in root.iterdir() if STEP_DIR.match(p.name))[:-keep_last]:
                shutil.rmtree(old)
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return final


def _saved_shapes(model_dir: Path) -> dict[str, tuple[int, ...]]:
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{model_dir} holds no .safetensors weights")
    shapes = {}
    for file in files:
        with safe_open(file, framework="pt") as handle:
            for key in handle.keys():
                shapes[key] = tuple(handle.get_slice(key).get_shape())
    return shapes


def check_same_architecture(model, model_dir: str | os.PathLike) -> None:
    """Raise ValueError if the weights in `model_dir` do not fit `model` key for key and shape for shape."""
    model_dir = Path(model_dir)
    saved = _saved_shapes(model_dir)
    current = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    problems = [f"{k}: checkpoint {saved[k]} vs model {current[k]}" for k in saved.keys() & current.keys() if saved[k] != current[k]]
    problems += [f"{k}: only in checkpoint" for k in sorted(saved.keys() - current.keys())]
    problems += [f"{k}: only in model" for k in sorted(current.keys() - saved.keys()) if not _is_tied(model, k)]
    if not problems:
        return
    config_note = ""
    config_file = model_dir / "config.json"
    if config_file.is_file() and hasattr(model, "config"):
        saved_config = json.loads(config_file.read_text())
        differing = [
            f"{k}={saved_config[k]!r} (model: {v!r})"
            for k, v in model.config.to_dict().items()
            if k in saved_config and saved_config[k] != v and not k.startswith("_") and k != "transformers_version"
        ]
        config_note = f"; differing config fields: {', '.join(differing[:8])}" if differing else ""
    raise ValueError(
        f"checkpoint {model_dir} holds a different architecture than the model being trained "
        f"({len(problems)} mismatched weights, e.g. {'; '.join(problems[:3])}){config_note}. "
        "Point checkpoint.dir at a new run directory or use the matching model config."
    )


def _is_tied(model, key: str) -> bool:
    tied = getattr(model, "_tied_weights_keys", None) or ()
    return any(re.fullmatch(pattern, key) or pattern == key for pattern in tied)


def load_model_weights(model, model_dir: str | os.PathLike) -> None:
    """Load `save_pretrained` weights into an existing model after checking the architecture matches."""
    check_same_architecture(model, model_dir)
    loaded = type(model).from_pretrained(model_dir)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or [k for k in missing if not _is_tied(model, k)]:
        raise ValueError(f"{model_dir}: missing weights {missing[:5]}, unexpected weights {unexpected[:5]}")


def load_checkpoint(
    path: str | os.PathLike,
    models: dict,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler=None,
    restore_rng: bool = True,
    accelerator=None,
) -> dict:
    """Restore models (and optimizer, scheduler, RNG) from a checkpoint; return its trainer state.

    A checkpoint saved with an `accelerator` is restored with one, after `prepare`: `accelerator.load_state` then
    restores the prepared model, each rank's optimizer partition and RNG states (`models` are loaded as well,
    which is what a caller that has not prepared yet needs: call once with `models` only before `prepare`).
    """
    path = Path(path)
    if not (path / "training_state" / "trainer_state.json").is_file():
        raise FileNotFoundError(f"{path} is not a checkpoint directory (no training_state/trainer_state.json)")
    for name, model in models.items():
        if not (path / name).is_dir():
            raise FileNotFoundError(f"checkpoint {path} has no '{name}' model directory")
        load_model_weights(model, path / name)
    state_dir = path / "training_state"
    saved_by_accelerate = (state_dir / "accelerate").is_dir()
    if saved_by_accelerate and accelerator is None and (optimizer is not None or restore_rng):
        raise ValueError(
            f"{path} holds per-rank training state saved by accelerate; restore its optimizer and RNG with "
            "load_checkpoint(..., accelerator=...) after accelerator.prepare, or pass optimizer=None, restore_rng=False"
        )
    if accelerator is not None:
        if not saved_by_accelerate:
            raise ValueError(f"{path} was saved without an accelerator (no training_state/accelerate/)")
        accelerator.load_state(str(state_dir / "accelerate"))
    elif optimizer is not None:
        optimizer.load_state_dict(torch.load(state_dir / "optimizer.pt", weights_only=True))
    if scheduler is not None:
        scheduler.load_state_dict(torch.load(state_dir / "scheduler.pt", weights_only=True))
    if restore_rng and accelerator is None:
        rng = torch.load(state_dir / "rng.pt", weights_only=True)
        rng["python"] = _as_tuple(rng["python"])
        _set_rng_state(rng)
    return json.loads((state_dir / "trainer_state.json").read_text())
