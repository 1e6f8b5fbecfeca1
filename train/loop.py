"""The one training loop of every trainer: accumulation, metrics, progress, checkpoint cadence, exact resume.

A trainer (pretraining, a VLM stage, the coming world model) builds its model, optimizer, scheduler and
data, prepares them with accelerate, and hands `TrainingLoop.run` a step function: the forward pass of one
micro-batch, `step_fn(batch) -> StepOutput`. The loop owns everything else:

* `accumulation` micro-batches per optimizer step under `accelerator.accumulate`, gradient clipping on the
  step that syncs, then the scheduler;
* one metrics row per step in `<run dir>/metrics.jsonl` (loss and lr, the step function's metrics averaged
  and its counts summed over micro-batches and processes, running totals, peak memory), trackers and a
  printed line every `log_every` steps, a tqdm bar from the first step, `loss_curve.png` at the end;
* a checkpoint every `checkpoint.every_steps` steps and at the last one (`vjepa_vlm.train.checkpoint`);
* resume: `resume()` restores the newest checkpoint into the prepared objects and returns the step and
  running totals to continue from, and the metrics log is cut back to that step. Given a data order that is a
  function of (seed, position), a resumed run then takes exactly the steps an uninterrupted one would.

A new trainer is its config, its models and data, and a step function::

    model, optimizer = accelerator.prepare(model, optimizer)
    loop = TrainingLoop(accelerator, model, optimizer, scheduler, config, config.checkpoint, name="world model")
    step, totals = loop.resume(latest_checkpoint(config.checkpoint.dir) if config.checkpoint.resume else None)
    batches = iter(DataLoader(dataset, batch_sampler=ResumableBatchSampler(..., start=step * accumulation)))
    loop.run(batches, lambda batch: StepOutput(model(**batch).loss), {"model": accelerator.unwrap_model(model)},
             step=step, last_step=config.steps, totals=totals)
"""

from __future__ import annotations

import json
import os
import resource
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from vjepa_vlm.train.checkpoint import CheckpointArgs, load_checkpoint_state, save_checkpoint
from vjepa_vlm.train.config import config_to_dict, flatten_config, save_config
from vjepa_vlm.train.loss_curve import write_loss_curve

METRICS_FILE = "metrics.jsonl"


@dataclass
class StepOutput:
    """What a step function returns for one micro-batch.

    Args:
        loss: the micro-batch loss; the loop backpropagates it and logs its mean over the step.
        metrics: scalars averaged over the step's micro-batches and processes (e.g. feature statistics).
        counts: numbers summed over the step's micro-batches and processes and logged per second
            (`samples` becomes `samples_per_s`).
        totals: numbers summed into running totals over the whole run, resumptions included (data
            position, skipped samples); saved in every checkpoint.
    """

    loss: torch.Tensor
    metrics: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)
    totals: dict = field(default_factory=dict)


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def truncate_metrics(path: str | os.PathLike, step: int) -> None:
    """Drop rows after `step` (atomically), so a resumed run's log continues the same curve without duplicates."""
    path = Path(path)
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as handle:
        handle.write("".join(line + "\n" for line in kept))
    os.replace(handle.name, path)


def format_row(row: dict) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())


class TrainingLoop:
    """Runs optimizer steps of a prepared model; see the module docstring.

    Args:
        accelerator: the run's `Accelerator`; its `gradient_accumulation_steps` sets micro-batches per step.
        model, optimizer: as returned by `accelerator.prepare`.
        scheduler: `step()`, `get_last_lr()`, `state_dict()` / `load_state_dict()` (e.g. `OptimizerScheduler`),
            stepped once per optimizer step.
        config: the run's resolved config, saved beside the metrics and in every checkpoint.
        checkpoint: run directory, checkpoint period, retention and whether to resume.
        name: label of the progress bar and of the trackers' run.
        grad_clip: max gradient norm (0: no clipping).
        clip_parameters: the parameters clipped (default: all of `model`).
        log_every: tracker and printed-line period in steps (0: the last step only).
        print_rows: print the metrics row every `log_every` steps (trackers get it either way).
        progress_bar: show a tqdm bar on the main process.
    """

    def __init__(self, accelerator, model, optimizer, scheduler, config, checkpoint: CheckpointArgs, *,
                 name: str = "train", grad_clip: float = 0.0, clip_parameters=None, log_every: int = 1,
                 print_rows: bool = False, progress_bar: bool = True):
        self.accelerator, self.model, self.optimizer, self.scheduler = accelerator, model, optimizer, scheduler
        self.config, self.checkpoint, self.name = config, checkpoint, name
        self.run_dir = Path(checkpoint.dir)
        self.metrics_path = self.run_dir / METRICS_FILE
        # DeepSpeed clips inside its engine (gradient_clipping in its config).
        self.grad_clip = grad_clip if accelerator.state.deepspeed_plugin is None else 0.0
        self.clip_parameters = clip_parameters
        self.log_every, self.print_rows, self.progress_bar = log_every, print_rows, progress_bar

    def resume(self, checkpoint: Path | None) -> tuple[int, dict]:
        """Restore `checkpoint` (None: a fresh start) into the prepared objects; return (step, running totals).

        Also writes the run's config and cuts the metrics log back to the returned step.
        """
        step, totals = 0, {}
        if checkpoint is not None:
            state = load_checkpoint_state(checkpoint, self.accelerator, self.scheduler)
            step, totals = state["step"], state.get("totals", {})
            self.accelerator.print(f"resumed from {checkpoint} at step {step}")
        if self.accelerator.is_main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.config, self.run_dir / "config.yaml")
            truncate_metrics(self.metrics_path, step)
        return step, totals

    def run(self, batches: Iterator, step_fn: Callable[[dict], StepOutput], models: Mapping[str, object], *,
            step: int, last_step: int, totals: dict | None = None, after_step: Callable[[int], dict] | None = None,
            before_checkpoint: Callable[[], None] | None = None) -> int:
        """Take optimizer steps `step + 1 .. last_step`; return the last step taken.

        Args:
            batches: endless iterator of micro-batches, positioned where `step` left off.
            step_fn: forward pass of one micro-batch.
            models: what each checkpoint saves (see `save_checkpoint`).
            step, totals: where to start, as returned by `resume`.
            after_step: called with the index of the step just taken (0-based, the schedules' index) after
                its optimizer update and before the scheduler moves on (e.g. the EMA update of a target
                encoder); returns extra metrics for the row.
            before_checkpoint: called before each checkpoint is written.
        """
        accelerator = self.accelerator
        totals = dict(totals or {})
        accumulation = accelerator.gradient_accumulation_steps
        show = self.progress_bar and accelerator.is_main_process
        bar = tqdm(total=last_step, initial=step, desc=self.name, disable=not show, dynamic_ncols=True)
        if accelerator.log_with and not accelerator.trackers:
            accelerator.init_trackers(self.name.replace(" ", ""), config=_tracker_config(self.config))
        parameters = self.clip_parameters if self.clip_parameters is not None else self.model.parameters
        started = time.time()
        while step < last_step:
            step_started = time.perf_counter()
            outputs = []
            for _ in range(accumulation):
                batch = next(batches)
                with accelerator.accumulate(self.model):
                    output = step_fn(batch)
                    accelerator.backward(output.loss)
                    if accelerator.sync_gradients and self.grad_clip > 0:
                        accelerator.clip_grad_norm_(parameters(), self.grad_clip)
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
                outputs.append(output)
            extra = after_step(step) if after_step is not None else {}
            step += 1
            lr = self.scheduler.get_last_lr()[0]
            self.scheduler.step()
            row = self._row(step, outputs, lr, extra, totals, time.perf_counter() - step_started, started)
            bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{lr:.2e}", refresh=False)
            bar.update(1)
            logged = step == last_step or (self.log_every > 0 and step % self.log_every == 0)
            if accelerator.is_main_process:
                with open(self.metrics_path, "a") as handle:
                    handle.write(json.dumps(row) + "\n")
                if logged and self.print_rows:
                    (bar.write if show else print)(format_row(row))
            if logged and accelerator.trackers:
                accelerator.log(row, step=step)
            if step % self.checkpoint.every_steps == 0 or step == last_step:
                if before_checkpoint is not None:
                    before_checkpoint()
                state = {"totals": totals, "scheduler": self.scheduler.state_dict()}
                save_checkpoint(self.run_dir, step, accelerator, models, state, self.config,
                                self.checkpoint.keep_last)
        bar.close()
        if accelerator.is_main_process and self.metrics_path.is_file():
            if len(self.metrics_path.read_text().splitlines()) >= 2:
                write_loss_curve(self.metrics_path, self.run_dir / "loss_curve.png")
        return step

    def _row(self, step, outputs: list[StepOutput], lr, extra, totals, seconds, started) -> dict:
        """The step's metrics, reduced over micro-batches and processes (one collective per dtype)."""
        accelerator, first = self.accelerator, outputs[0]
        floats = torch.stack([
            torch.stack([o.loss.detach().float() for o in outputs]).mean(),
            *(torch.stack([torch.as_tensor(o.metrics[k], dtype=torch.float32) for o in outputs]).mean()
              for k in first.metrics),
        ]).to(accelerator.device)
        # Positions reach billions of samples: counted exactly in int64, not in float.
        ints = torch.tensor([[*(o.counts[k] for k in first.counts), *(o.totals[k] for k in first.totals)]
                             for o in outputs], dtype=torch.int64).sum(0).to(accelerator.device)
        floats = accelerator.reduce(floats, "sum") / accelerator.num_processes
        ints = accelerator.reduce(ints, "sum").tolist()
        counts = dict(zip(first.counts, ints[: len(first.counts)]))
        for key, value in zip(first.totals, ints[len(first.counts):]):
            totals[key] = totals.get(key, 0) + value
        peak_rss = accelerator.gather(torch.tensor([peak_rss_mib()], device=accelerator.device)).max()
        return {
            "step": step,
            "loss": floats[0].item(),
            "lr": lr,
            **{k: v.item() for k, v in zip(first.metrics, floats[1:])},
            **extra,
            **{f"{k}_per_s": v / seconds for k, v in counts.items()},
            **totals,
            "peak_rss_mib": float(peak_rss),
            "elapsed_s": round(time.time() - started, 2),
        }


def _tracker_config(config) -> dict:
    """The config as the flat scalar dict trackers take as hyperparameters."""
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v)
            for k, v in flatten_config(config_to_dict(config)).items()}


__all__ = ["METRICS_FILE", "StepOutput", "TrainingLoop", "format_row", "peak_rss_mib", "truncate_metrics"]
