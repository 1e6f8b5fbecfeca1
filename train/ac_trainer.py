"""Training the V-JEPA 2-AC world model (paper section 3.1, appendix B.1) on the shared loop.

The encoder is frozen; only the action-conditioned predictor trains. The objective follows the reference trainer
(facebookresearch/vjepa2 `app/vjepa_droid/train.py`, `forward_predictions` and `loss_fn` with `loss_exp: 1`,
`auto_steps: 2`, `normalize_reps: true`): on layer-normed frame features z_0 .. z_{T-1},

    teacher forcing   mean | P(z_0..z_{T-2}; a, s)_t - z_{t+1} |             over t = 0 .. T-2
    rollout           mean | r_k - z_k |                                      over k = 1 .. auto_steps
                      r_1 = P(z_0)_0,  r_{k+1} = P(z_0, r_1, .., r_k)_k        (each prediction fed back)

and the loss is their sum. Ground-truth states accompany the imagined frames, as in the reference.

`loss.change_weight` (alpha, default 0: the plain mean above) weights each target token z_{t+1}[n] by how much it
changed from the frame before, so the few tokens a grip or a pushed block alters are not outweighed by the static
background:  w = (1 + alpha * c / mean_n c) / (1 + alpha),  c[n] = mean_d | z_{t+1}[n] - z_t[n] |,
the mean over the frame's tokens; the weights of each target frame average 1, so the loss keeps its scale.

The run directory (`checkpoint.dir`) receives `metrics.jsonl` (loss, both terms, lr, weight decay, clips skipped
for unreadable videos), `loss_curve.png`, and checkpoints whose `model/` folder loads with
`VJEPA2WorldModel.from_pretrained` (encoder and predictor in one folder).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate.utils import set_seed
from torch import nn
from torch.utils.data import DataLoader

from vjepa_vlm import VJEPA2Config, VJEPA2Model
from vjepa_vlm.configuration_vjepa2_ac import WORLD_MODEL_PRESETS, VJEPA2ACConfig
from vjepa_vlm.data.ac_dataset import ACClipDataset, ACDataArgs
from vjepa_vlm.data.pretrain_dataset import StreamPositionSampler
from vjepa_vlm.data.robot_play import record_play, recorded_camera
from vjepa_vlm.modeling_vjepa2_ac import VJEPA2WorldModel
from vjepa_vlm.train.checkpoint import CheckpointArgs, latest_checkpoint, load_model_weights, read_checkpoint_state
from vjepa_vlm.train.config import config_class_for, load_config, validate_config
from vjepa_vlm.train.distributed import DistributedArgs, build_accelerator, prepare_with_stream_sampler
from vjepa_vlm.train.loop import StepOutput, TrainingLoop
from vjepa_vlm.vision.pretraining import weight_decay_param_groups
from vjepa_vlm.vision.schedules import OptimArgs, OptimizerScheduler, lr_at, weight_decay_at

MODEL_NAME = "model"


@dataclass
class WorldModelArgs:
    """Model section.

    Args:
        preset: a `VJEPA2WorldModelConfig` preset name ("vjepa2-ac-tiny", "vjepa2-ac-vitg").
        encoder: folder of a pretrained `VJEPA2Model` (e.g. a pretraining checkpoint's `target/`); null: the
            preset's encoder, randomly initialized under the run's seed (a random frozen encoder).
        encoder_overrides: fields replacing the preset encoder's (without `encoder` only).
        predictor_overrides: fields replacing the preset predictor's; its action/state dims come from `data`, its
            encoder width, patch size and crop size from the encoder and `data.crop_size`.
        gradient_checkpointing: recompute predictor blocks in backward to save memory.
    """

    preset: str = "vjepa2-ac-vitg"
    encoder: str | None = None
    encoder_overrides: dict = field(default_factory=dict)
    predictor_overrides: dict = field(default_factory=dict)
    gradient_checkpointing: bool = False

    def validate(self) -> list[str]:
        errors = []
        if self.preset not in WORLD_MODEL_PRESETS:
            errors.append(f"model.preset {self.preset!r} is unknown; expected one of {sorted(WORLD_MODEL_PRESETS)}")
        if self.encoder is not None and self.encoder_overrides:
            errors.append("model.encoder_overrides apply to a preset encoder; a pretrained model.encoder has its own")
        return errors


@dataclass
class LossArgs:
    """Loss section.

    Args:
        auto_steps: rollout length of the autoregressive loss (the reference: 2); at most `data.num_frames - 1`.
        change_weight: alpha of the change-weighted loss (module docstring); 0 (default): every token weighs the same.
    """

    auto_steps: int = 2
    change_weight: float = 0.0


@dataclass
class ACTrainConfig:
    """Top-level world-model training config.

    Args:
        steps: total optimizer steps of the schedule.
        stop_at_step: end this job early at this step (schedules still follow `steps`).
        seed: seed of the encoder and predictor init and of the clip stream.
        log_every: print a metrics line every this many steps (every step is written to metrics.jsonl).
    """

    model: WorldModelArgs = field(default_factory=WorldModelArgs)
    data: ACDataArgs = field(default_factory=ACDataArgs)
    loss: LossArgs = field(default_factory=LossArgs)
    optim: OptimArgs = field(default_factory=OptimArgs)
    checkpoint: CheckpointArgs = field(default_factory=lambda: CheckpointArgs(dir="runs/world_model"))
    distributed: DistributedArgs = field(default_factory=DistributedArgs)
    steps: int = 100
    stop_at_step: int | None = None
    seed: int = 0
    log_every: int = 10

    def validate(self) -> list[str]:
        errors = []
        errors += self.optim.run_length_errors(self.steps, self.stop_at_step)
        if not 1 <= self.loss.auto_steps <= self.data.num_frames - 1:
            errors.append(
                f"loss.auto_steps must be in [1, data.num_frames - 1 = {self.data.num_frames - 1}], "
                f"got {self.loss.auto_steps}"
            )
        if self.loss.change_weight < 0:
            errors.append(f"loss.change_weight must be >= 0, got {self.loss.change_weight}")
        return errors


@dataclass
class PlayDataArgs:
    """The Fetch play dataset the tiny recipe trains on; recorded into `dir` when `dir/meta/info.json` is absent.

    Args:
        dir: dataset folder (becomes `data.root`).
        episodes, seed, size, steps, workers, camera: as `scripts/record_play.py`.
        behaviour_mix: the play policy's behaviour mix (`robot_play.BEHAVIOUR_MIXES`, record_play's --behaviour-mix).
    """

    dir: str = "runs/play"
    episodes: int = 100
    seed: int = 0
    size: int = 64
    steps: int = 100
    workers: int = 1
    camera: str = "front"
    behaviour_mix: str = "default"


@dataclass
class PlayACTrainConfig(ACTrainConfig):
    """World-model training on recorded Fetch play: the config of a recipe with a `play_data:` section."""

    play_data: PlayDataArgs = field(default_factory=PlayDataArgs)


def ensure_play_data(args: PlayDataArgs) -> None:
    if not (Path(args.dir) / "meta" / "info.json").is_file():
        record_play(args.dir, episodes=args.episodes, seed=args.seed, size=args.size, steps=args.steps,
                    workers=args.workers, camera=args.camera, mix=args.behaviour_mix)
    elif (recorded := recorded_camera(args.dir)) not in (None, args.camera):
        raise ValueError(f"play_data.dir {args.dir} was recorded with the {recorded!r} camera, "
                         f"but play_data.camera is {args.camera!r}; record into another dir or fix the recipe")


def load_recipe(path: str | Path, overrides: list[str] = ()) -> ACTrainConfig:
    """The config of a recipe: `PlayACTrainConfig` when it has a `play_data:` section."""
    return load_config(config_class_for(path, ACTrainConfig, {"play_data": PlayACTrainConfig}), path, overrides)


def build_world_model(args: WorldModelArgs, data: ACDataArgs) -> VJEPA2WorldModel:
    """The world model of a config: the (pretrained or seeded random) encoder and a fresh predictor."""
    if args.encoder is not None:
        encoder = VJEPA2Model.from_pretrained(args.encoder)
    else:
        encoder_config = VJEPA2Config.from_preset(
            WORLD_MODEL_PRESETS[args.preset], **{"crop_size": data.crop_size, **args.encoder_overrides}
        )
        encoder = VJEPA2Model(encoder_config)
    predictor_config = VJEPA2ACConfig.from_preset(args.preset, **{
        **args.predictor_overrides,
        "encoder_hidden_size": encoder.config.hidden_size, "patch_size": encoder.config.patch_size,
        "crop_size": data.crop_size, "action_dim": data.action_dim, "state_dim": data.state_dim,
    })
    model = VJEPA2WorldModel.from_encoder(encoder, predictor_config)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return model


def change_weights(features: torch.Tensor, alpha: float) -> torch.Tensor:
    """Per-token weights `(B, T-1, N, 1)` of the targets `features[:, 1:]` of `features` `(B, T, N, D)`:
    (1 + alpha * c / mean_n c) / (1 + alpha) with c the mean absolute change of each token from the frame before;
    a target frame in which nothing changes weighs every token 1."""
    change = (features[:, 1:] - features[:, :-1]).detach().abs().mean(-1, keepdim=True)
    mean = change.mean(-2, keepdim=True)
    weights = (1 + alpha * change / mean.clamp_min(torch.finfo(change.dtype).tiny)) / (1 + alpha)
    return torch.where(mean > 0, weights, torch.ones_like(weights))


class WorldModelObjective(nn.Module):
    """Teacher-forcing plus rollout L1 loss of a world model (see the module docstring); only the predictor trains.

    Args:
        model: the world model.
        auto_steps: rollout length.
        change_weight: alpha of the change-weighted loss; 0: the plain mean.
    """

    def __init__(self, model: VJEPA2WorldModel, auto_steps: int = 2, change_weight: float = 0.0):
        super().__init__()
        self.model, self.auto_steps, self.change_weight = model, auto_steps, change_weight

    def forward(self, actions: torch.Tensor, states: torch.Tensor, features: torch.Tensor | None = None,
                pixel_values: torch.Tensor | None = None) -> dict:
        """`features` `(B, T, H*W, D)` from `encode_frames`, or `pixel_values` `(B, T, 3, crop, crop)` to encode;
        `actions` `(B, T-1, action_dim)`; `states` `(B, T, state_dim)`."""
        if (features is None) == (pixel_values is None):
            raise ValueError("pass exactly one of features and pixel_values")
        if features is None:
            features = self.model.encode_frames(pixel_values)
        steps = self.auto_steps
        predicted = self.model(features[:, :-1], actions, states[:, :-1]).predicted_features
        imagined = self.model.rollout(features[:, :1], actions[:, :steps], states[:, :steps], steps)
        teacher_forcing = (predicted - features[:, 1:]).abs()
        rollout = (imagined - features[:, 1 : steps + 1]).abs()
        if self.change_weight:
            weights = change_weights(features, self.change_weight)
            teacher_forcing, rollout = teacher_forcing * weights, rollout * weights[:, :steps]
        teacher_forcing, rollout = teacher_forcing.mean(), rollout.mean()
        return {"loss": teacher_forcing + rollout, "teacher_forcing_loss": teacher_forcing, "rollout_loss": rollout}


def train(config: ACTrainConfig) -> Path:
    """Run (or resume) world-model training; return the run directory."""
    play = isinstance(config, PlayACTrainConfig)
    if play and not config.data.root:
        config.data.root = config.play_data.dir
    validate_config(config)
    accelerator = build_accelerator(config.distributed, config.optim.grad_clip)
    if play:
        if accelerator.is_main_process:
            ensure_play_data(config.play_data)
        accelerator.wait_for_everyone()

    dataset = ACClipDataset(config.data, seed=config.seed)
    if dataset.too_short:
        accelerator.print(f"{len(dataset.too_short)} episodes shorter than a clip ({dataset.span} frames) left out")
    set_seed(config.seed)
    model = build_world_model(config.model, config.data)
    camera = recorded_camera(config.data.root)
    if camera is not None:
        # Saved in every checkpoint's config.json: planning evaluation renders through the camera trained on.
        model.config.camera = camera
    resume_from = latest_checkpoint(config.checkpoint.dir) if config.checkpoint.resume else None
    if resume_from is not None:
        read_checkpoint_state(resume_from)  # refuse another architecture before any step
        load_model_weights(model, resume_from / MODEL_NAME)
    elif config.checkpoint.init_from:
        load_model_weights(model, Path(config.checkpoint.init_from) / MODEL_NAME)
        accelerator.print(f"initialized weights from {config.checkpoint.init_from}")
    model.to(accelerator.device)
    if config.data.cache_features:
        # Kept on the CPU: DataLoader workers serve it, and the accelerator's memory is for training.
        dataset.build_feature_cache(lambda frames: model.encode_frames(frames.to(accelerator.device)).cpu())
        accelerator.print(f"cached the features of {len(dataset.features)} episodes")

    objective = WorldModelObjective(model, config.loss.auto_steps, config.loss.change_weight)
    optimizer = torch.optim.AdamW(weight_decay_param_groups(model.predictor), betas=config.optim.betas,
                                  eps=config.optim.eps)
    scheduler = OptimizerScheduler(
        optimizer,
        lambda step: lr_at(config.optim, step, config.steps),
        lambda step: weight_decay_at(config.optim, step, config.steps),
    )
    wrapped, optimizer = prepare_with_stream_sampler(accelerator, objective, optimizer, config.data.batch_size)
    loop = TrainingLoop(
        accelerator, wrapped, optimizer, scheduler, config, config.checkpoint, name="world model",
        grad_clip=config.optim.grad_clip, clip_parameters=model.predictor.parameters, log_every=config.log_every,
        print_rows=True,
    )
    step, totals = loop.resume(resume_from)
    totals = {"position": 0, "skipped_clips": 0, **totals}
    loader = DataLoader(
        dataset,
        batch_size=config.data.batch_size,
        sampler=StreamPositionSampler(totals["position"], accelerator.process_index, accelerator.num_processes),
        num_workers=config.data.num_workers,
    )
    inputs = ("features" if config.data.cache_features else "pixel_values", "actions", "states")

    def step_fn(batch: dict) -> StepOutput:
        with accelerator.autocast():
            outputs = wrapped(**{key: batch[key].to(accelerator.device) for key in inputs})
        return StepOutput(
            outputs["loss"],
            metrics={key: outputs[key].detach() for key in ("teacher_forcing_loss", "rollout_loss")},
            counts={"samples": len(batch["actions"])},
            totals={"position": config.data.batch_size, "skipped_clips": int(batch["skipped"].sum())},
        )

    def after_step(index: int) -> dict:
        return {"weight_decay": weight_decay_at(config.optim, index, config.steps)}

    loop.run(iter(loader), step_fn, {MODEL_NAME: model}, step=step, last_step=config.stop_at_step or config.steps,
             totals=totals, after_step=after_step)
    accelerator.wait_for_everyone()
    return Path(config.checkpoint.dir)


__all__ = [
    "ACTrainConfig", "LossArgs", "PlayACTrainConfig", "PlayDataArgs", "WorldModelArgs", "WorldModelObjective",
    "build_world_model", "change_weights", "ensure_play_data", "load_recipe", "train",
]
