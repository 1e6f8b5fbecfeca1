"""Training the goal-conditioned behaviour-cloning baseline (paper section 4.1, Octo-style) on the shared loop.

The policy (`vjepa_vlm.vision.bc_policy`) learns from the same play data and the same frozen encoder as the
V-JEPA 2-AC world model it is compared with: every frame of the training episodes is center-cropped and encoded
once by the world model's encoder (`ACClipDataset.build_feature_cache`). Goals are relabelled in hindsight: a
sample is a frame at recorded index t, the action of the next agent step (the `stride` recorded commands from t,
summed, as the world model's clips and the planner's actions are), and as goal the frame k agent steps later in
the same episode, k uniform in [1, `bc.max_goal_steps`] (bounded by the episode's end).

The run directory (`checkpoint.dir`) receives `metrics.jsonl`, `loss_curve.png` and checkpoints whose `policy/`
folder loads with `load_policy`; its config.json names the world model whose encoder the policy reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import set_seed
from torch.utils.data import DataLoader, Dataset
from vjepa_vlm.data.ac_dataset import ACClipDataset, ACDataArgs
from vjepa_vlm.data.pretrain_dataset import StreamPositionSampler
from vjepa_vlm.train.checkpoint import (
    CheckpointArgs,
    latest_checkpoint,
    read_checkpoint_state,
)
from vjepa_vlm.train.config import load_config, validate_config
from vjepa_vlm.train.distributed import (
    DistributedArgs,
    build_accelerator,
    prepare_with_stream_sampler,
)
from vjepa_vlm.train.loop import StepOutput, TrainingLoop
from vjepa_vlm.vision.bc_policy import (
    BCPolicyConfig,
    GoalConditionedPolicy,
    bc_loss,
    save_policy,
)
from vjepa_vlm.vision.schedules import (
    OptimArgs,
    OptimizerScheduler,
    lr_at,
    weight_decay_at,
)

from vjepa_vlm.modeling_vjepa2_ac import VJEPA2WorldModel

POLICY_NAME = "policy"


@dataclass
class BCArgs:
    """Policy section.

    Args:
        world_model: folder of the `VJEPA2WorldModel` whose frozen encoder gives the features (its crop size
            must be `data.crop_size`).
        max_goal_steps: hindsight goals lie 1 .. this many agent steps ahead.
        token_dim, hidden_size, layers, action_scale: as `BCPolicyConfig` (action_scale null: 1 per coordinate).
    """

    world_model: str = ""
    max_goal_steps: int = 15
    token_dim: int = 8
    hidden_size: int = 256
    layers: int = 2
    action_scale: tuple[float, ...] | None = None

    def validate(self) -> list[str]:
        errors = []
        if not self.world_model:
            errors.append("bc.world_model is empty: give the folder of the VJEPA2WorldModel whose encoder to use")
        elif not (Path(self.world_model) / "config.json").is_file():
            errors.append(f"bc.world_model {self.world_model} is not a saved VJEPA2WorldModel folder (no config.json)")
        if self.max_goal_steps < 1:
            errors.append(f"bc.max_goal_steps must be >= 1, got {self.max_goal_steps}")
        return errors


@dataclass
class BCTrainConfig:
    """Top-level behaviour-cloning config. `data` is the world model's data section: only root, keys, dims,
    episodes, fps, crop_size and batch_size matter here (frames are always center-cropped and cached)."""

    bc: BCArgs = field(default_factory=BCArgs)
    data: ACDataArgs = field(default_factory=lambda: ACDataArgs(num_frames=2, cache_features=True))
    optim: OptimArgs = field(default_factory=lambda: OptimArgs(start_lr=1e-4, lr=1e-3, final_lr=0.0, warmup_steps=50,
                                                                decay_steps=200, weight_decay=0.01,
                                                                final_weight_decay=0.01, grad_clip=1.0))
    checkpoint: CheckpointArgs = field(default_factory=lambda: CheckpointArgs(dir="runs/bc", every_steps=500))
    distributed: DistributedArgs = field(default_factory=DistributedArgs)
    steps: int = 1000
    stop_at_step: int | None = None
    seed: int = 0
    log_every: int = 100

    def validate(self) -> list[str]:
        return self.optim.run_length_errors(self.steps, self.stop_at_step)


class HindsightGoalDataset(Dataset):
    """(frame, action, hindsight goal) samples indexed by stream position, from cached features.

    A sample holds `features` and `goal_features` `(tokens, D)`, `states` `(state_dim,)`, `actions`
    `(action_dim,)`, `goal_steps` (k), and the `episode` and recorded `start` frame it was drawn from. Every sample is a function of (seed, position), so resume is exact.

    Args:
        clips: an `ACClipDataset` whose `build_feature_cache` ran (its stride sets the agent step).
        max_goal_steps: the largest k.
        seed: seeds the draws.
    """

    def __init__(self, clips: ACClipDataset, max_goal_steps: int, seed: int = 0):
        if clips.features is None:
            raise ValueError("HindsightGoalDataset needs cached features: call clips.build_feature_cache(encode) first")
        self.clips, self.max_goal_steps, self.seed, self.stride = clips, max_goal_steps, seed, clips.stride
        self.features = clips.features
        self.episodes = [e for e in clips.episodes if e in self.features and len(self.features[e]) > self.stride]
        if not self.episodes:
            raise ValueError(f"{clips.reader.root}: no episode is longer than one agent step ({self.stride} frames)")
        rows = {e: clips.reader.episode(e, frames=False) for e in self.episodes}
        self.states = {e: torch.tensor(r.state, dtype=torch.float32) for e, r in rows.items()}
        self.actions = {e: torch.tensor(r.action, dtype=torch.float32) for e, r in rows.items()}

    def __len__(self) -> int:
        return len(self.episodes)

    def __getitem__(self, position: int) -> dict:
        rng = np.random.default_rng([self.seed, int(position)])
        episode = self.episodes[int(rng.integers(len(self.episodes)))]
        length = len(self.features[episode])
        start = int(rng.integers(0, length - self.stride))
        reachable = (length - 1 - start) // self.stride
        steps = int(rng.integers(1, min(self.max_goal_steps, reachable) + 1))
        return {
            "features": self.features[episode][start],
            "goal_features": self.features[episode][start + steps * self.stride],
            "states": self.states[episode][start],
            "actions": self.actions[episode][start : start + self.stride].sum(0),
            "goal_steps": steps,
            "episode": episode,
            "start": start,
        }


def load_recipe(path: str | Path | None, overrides: list[str] = ()) -> BCTrainConfig:
    return load_config(BCTrainConfig, path, overrides)


def build_dataset(config: BCTrainConfig, world_model: VJEPA2WorldModel, device="cpu") -> HindsightGoalDataset:
    """The play episodes of `config.data`, encoded once by the world model's encoder, as hindsight samples."""
    clips = ACClipDataset(replace(config.data, num_frames=2, cache_features=True), seed=config.seed)
    clips.build_feature_cache(lambda frames: world_model.encode_frames(frames.to(device)).cpu())
    return HindsightGoalDataset(clips, config.bc.max_goal_steps, seed=config.seed)


def train(config: BCTrainConfig) -> Path:
    """Run (or resume) behaviour-cloning training; return the run directory."""
    validate_config(config)
    accelerator = build_accelerator(config.distributed, config.optim.grad_clip)
    world_model = VJEPA2WorldModel.from_pretrained(config.bc.world_model).eval().to(accelerator.device)
    predictor_config = world_model.config.predictor_config
    if predictor_config.crop_size != config.data.crop_size:
        raise ValueError(f"data.crop_size={config.data.crop_size} but the world model {config.bc.world_model} encodes "
                         f"{predictor_config.crop_size}-pixel frames")
    dataset = build_dataset(config, world_model, accelerator.device)
    accelerator.print(f"cached the features of {len(dataset.episodes)} episodes")

    set_seed(config.seed)
    policy = GoalConditionedPolicy(BCPolicyConfig(
        tokens=world_model.tokens_per_frame, feature_dim=predictor_config.encoder_hidden_size,
        state_dim=config.data.state_dim, action_dim=config.data.action_dim, token_dim=config.bc.token_dim,
        hidden_size=config.bc.hidden_size, layers=config.bc.layers, action_scale=config.bc.action_scale,
    ))
    del world_model  # only its features are needed from here on
    resume_from = latest_checkpoint(config.checkpoint.dir) if config.checkpoint.resume else None
    if resume_from is not None:
        read_checkpoint_state(resume_from)  # a damaged checkpoint is refused before any step
    optimizer = torch.optim.AdamW(policy.parameters(), betas=config.optim.betas, eps=config.optim.eps)
    scheduler = OptimizerScheduler(
        optimizer,
        lambda step: lr_at(config.optim, step, config.steps),
        lambda step: weight_decay_at(config.optim, step, config.steps),
    )
    wrapped, optimizer = prepare_with_stream_sampler(accelerator, policy, optimizer, config.data.batch_size)
    loop = TrainingLoop(accelerator, wrapped, optimizer, scheduler, config, config.checkpoint,
                        name="goal-conditioned BC", grad_clip=config.optim.grad_clip, log_every=config.log_every,
                        print_rows=True)
    step, totals = loop.resume(resume_from)
    totals = {"position": 0, **totals}
    loader = DataLoader(
        dataset, batch_size=config.data.batch_size,
        sampler=StreamPositionSampler(totals["position"], accelerator.process_index, accelerator.num_processes),
    )
    extra = {"world_model": config.bc.world_model, "max_goal_steps": config.bc.max_goal_steps,
             "frame_stride": dataset.stride}

    def step_fn(batch: dict) -> StepOutput:
        inputs = [batch[k].to(accelerator.device) for k in ("features", "goal_features", "states", "actions")]
        loss = bc_loss(wrapped(*inputs[:3]), inputs[3], policy.action_scale.to(accelerator.device))
        return StepOutput(loss, counts={"samples": len(inputs[3])}, totals={"position": config.data.batch_size})

    def write_policy(directory: Path) -> None:
        if accelerator.is_main_process:
            save_policy(accelerator.unwrap_model(wrapped), directory, extra)

    loop.run(iter(loader), step_fn, {POLICY_NAME: write_policy}, step=step,
             last_step=config.stop_at_step or config.steps, totals=totals)
    accelerator.wait_for_everyone()
    return Path(config.checkpoint.dir)


__all__ = ["BCArgs", "BCTrainConfig", "HindsightGoalDataset", "build_dataset", "load_recipe", "train"]
