"""The one checkpoint layout and writer of every trainer: atomic, resumable Hugging Face checkpoints.

A checkpoint is a directory `<run dir>/checkpoints/step_XXXXXXXX/` holding

* one `save_pretrained` directory per model, named by the trainer (`model/` for a VLM stage,
  `online/` and `target/` for pretraining), each loadable with `from_pretrained`;
* `training_state/`: accelerate's `save_state` of every rank (prepared model, optimizer partition, RNG);
* `trainer_state.json`: step, world size, the loop's running totals (data position, skipped samples),
  the scheduler state, and the size of every other file of the checkpoint;
* `config.yaml`: the resolved config of the run.

It is written under a temporary name and renamed into place, so a crash never leaves a half-written
checkpoint that resume would pick up; a file damaged afterwards (truncated by a full disk, a partial
copy) is caught by its recorded size before anything is loaded, naming the file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from safetensors import safe_open

from vjepa_vlm.train.config import save_config

STEP_DIR = re.compile(r"^step_(\d{8})$")
STATE_FILE = "trainer_state.json"
TRAINING_STATE = "training_state"


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


class DamagedCheckpointError(ValueError):
    """A checkpoint file is missing, truncated or unreadable."""


def checkpoint_root(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / "checkpoints"


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest complete `step_*` checkpoint of a run, or None."""
    root = checkpoint_root(run_dir)
    if not root.is_dir():
        return None
    steps = sorted(p for p in root.iterdir() if p.is_dir() and STEP_DIR.match(p.name))
    return steps[-1] if steps else None


def _file_sizes(directory: Path) -> dict[str, int]:
    return {str(p.relative_to(directory)): p.stat().st_size for p in sorted(directory.rglob("*")) if p.is_file()}


def save_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    accelerator,
    models: Mapping[str, object],
    state: dict | None = None,
    config=None,
    keep_last: int = 0,
) -> Path:
    """Write `<run_dir>/checkpoints/step_<step>` atomically and return its path; every rank calls it.

    Args:
        run_dir: run directory.
        step: optimizer steps done; names the directory.
        accelerator: the run's `Accelerator` after `prepare`; its `save_state` writes `training_state/`.
        models: directory name -> a `PreTrainedModel` (written by the main process with `save_pretrained`)
            or a callable taking the directory, which every rank calls (a model whose weights must first be
            gathered across ranks, such as a VLM stage under ZeRO-3).
        state: JSON-serializable loop state (running totals, scheduler state), saved in `trainer_state.json`.
        config: the resolved config dataclass, saved as `config.yaml`.
        keep_last: delete all but this many newest checkpoints afterwards (0 keeps all).
    """
    root = checkpoint_root(run_dir)
    final = root / f"step_{step:08d}"
    # Every rank writes into the same staging directory, so its name cannot be random.
    staging = root / f".tmp-{final.name}"
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging / TRAINING_STATE))
    for name, model in models.items():
        if not hasattr(model, "save_pretrained"):
            model(staging / name)
        elif accelerator.is_main_process:
            model.save_pretrained(staging / name)
    # The main process lists and renames the staging directory below: every rank must be done writing into it.
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if config is not None:
            save_config(config, staging / "config.yaml")
        record = {"step": step, "world_size": accelerator.num_processes, **(state or {}),
                  "files": _file_sizes(staging)}
        (staging / STATE_FILE).write_text(json.dumps(record, indent=2))
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        if keep_last > 0:
            for old in sorted(p for p in root.iterdir() if STEP_DIR.match(p.name))[:-keep_last]:
                shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def read_checkpoint_state(path: str | os.PathLike) -> dict:
    """The `trainer_state.json` of a checkpoint, after checking every file it lists is there, whole."""
    path = Path(path)
    state_file = path / STATE_FILE
    if not state_file.is_file():
        raise FileNotFoundError(f"{path} is not a checkpoint directory (no {STATE_FILE})")
    advice = f"delete {path} to resume from the checkpoint before it"
    try:
        state = json.loads(state_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DamagedCheckpointError(f"checkpoint {path} is damaged: {state_file} is not valid JSON ({error}); "
                                     f"{advice}") from None
    for name, size in state.get("files", {}).items():
        file = path / name
        found = file.stat().st_size if file.is_file() else None
        if found != size:
            what = "is missing" if found is None else f"holds {found} bytes, {size} were written"
            raise DamagedCheckpointError(f"checkpoint {path} is damaged: {file} {what}; {advice}")
    return state


def load_checkpoint_state(path: str | os.PathLike, accelerator, scheduler=None) -> dict:
    """Restore what `save_checkpoint` saved into a prepared run; return the loop state of `trainer_state.json`.

    `accelerator.load_state` restores the prepared model, each rank's optimizer partition and RNG states;
    `scheduler` (anything with `load_state_dict`) gets the state saved beside them.
    """
    path = Path(path)
    state = read_checkpoint_state(path)
    try:
        accelerator.load_state(str(path / TRAINING_STATE))
    except Exception as error:  # a file damaged in place (same size) only shows when its reader chokes on it
        raise DamagedCheckpointError(f"checkpoint {path} is damaged: loading {path / TRAINING_STATE} failed with "
                                     f"{type(error).__name__}: {error}") from error
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    return state


def _saved_shapes(model_dir: Path) -> dict[str, tuple[int, ...]]:
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{model_dir} holds no .safetensors weights")
    shapes = {}
    for file in files:
        try:
            with safe_open(file, framework="pt") as handle:
                for key in handle.keys():
                    shapes[key] = tuple(handle.get_slice(key).get_shape())
        except Exception as error:  # safetensors reports a truncated file as "invalid header length", no path
            raise DamagedCheckpointError(f"{file} is damaged: it cannot be read as safetensors ({error})") from error
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
