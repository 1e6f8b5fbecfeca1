"""Train a frame decoder (paper appendix B.3) on a world model's frozen encoder features, on the shared loop.

    python train/train_frame_decoder.py world_model=runs/ac_tiny/checkpoints/step_00000600/model
    python train/train_frame_decoder.py world_model=DIR steps=2000 data.root=DATASET checkpoint.dir=runs/decoder_b

The frames of the training episodes of a LeRobot v3.0 dataset (`data.root`; every `data.frame_stride`-th frame)
are center-cropped to the world model's crop size and encoded once by its frozen encoder, exactly as
`VJEPA2WorldModel.encode_frames` gives them to the predictor (layer-normed). `VJEPA2FrameDecoder` then learns
features -> pixels with a pixel MSE, AdamW and warmup + cosine (`optim.schedule: cosine`). Batches are a function
of (seed, step), so a rerun resumes exactly. Checkpoints go to `checkpoint.dir` in the shared layout; a
checkpoint's `model/` loads with `VJEPA2FrameDecoder.from_pretrained` (or `AutoModel`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate.utils import set_seed
from vjepa_vlm.data.ac_dataset import center_crop_box
from vjepa_vlm.data.lerobot_format import LeRobotEpisodes, LeRobotFormatError
from vjepa_vlm.data.pretrain_dataset import crop_and_normalize
from vjepa_vlm.data.video_io import VideoDecodeError
from vjepa_vlm.train.checkpoint import CheckpointArgs, latest_checkpoint
from vjepa_vlm.train.config import load_config, parse_recipe_cli, validate_config
from vjepa_vlm.train.distributed import (
    DistributedArgs,
    build_accelerator,
    prepare_with_stream_sampler,
)
from vjepa_vlm.train.loop import StepOutput, TrainingLoop
from vjepa_vlm.train.trainer import ResumableBatchSampler
from vjepa_vlm.vision.pretraining import weight_decay_param_groups
from vjepa_vlm.vision.schedules import (
    OptimArgs,
    OptimizerScheduler,
    lr_at,
    weight_decay_at,
)

from vjepa_vlm.modeling_vjepa2_ac import VJEPA2WorldModel
from vjepa_vlm.modeling_vjepa2_frame_decoder import VJEPA2FrameDecoder

MODEL_NAME = "model"


@dataclass
class DecoderDataArgs:
    """Frames the decoder learns from.

    Args:
        root: folder of a LeRobot v3.0 dataset.
        camera_key: its video feature; may be omitted when it has one camera.
        first_episode, num_episodes: the training episodes, by position (null: all from first_episode); keep the
            world model's held-out episodes out.
        frame_stride: every this many recorded frames is used.
        batch_size: frames per device per step.
    """

    root: str = "runs/play"
    camera_key: str | None = None
    first_episode: int = 0
    num_episodes: int | None = 80
    frame_stride: int = 2
    batch_size: int = 32

    def validate(self) -> list[str]:
        errors = []
        if not self.root:
            errors.append("data.root is empty: give the folder of a LeRobot v3.0 dataset")
        if self.frame_stride < 1 or self.batch_size < 1:
            errors.append(f"data.frame_stride and data.batch_size must be >= 1, got {self.frame_stride}, {self.batch_size}")
        if self.first_episode < 0 or (self.num_episodes is not None and self.num_episodes < 1):
            errors.append("data.first_episode must be >= 0 and data.num_episodes >= 1 (or null)")
        return errors


def default_decoder() -> dict:
    return {"hidden_size": 192, "num_hidden_layers": 4, "num_attention_heads": 6}


def default_optim() -> OptimArgs:
    return OptimArgs(schedule="cosine", start_lr=1e-4, lr=1e-3, final_lr=1e-5, warmup_steps=100, decay_steps=0,
                     weight_decay=0.05, final_weight_decay=0.05, grad_clip=1.0)


@dataclass
class FrameDecoderTrainConfig:
    """Top-level frame-decoder training config.

    Args:
        world_model: folder of the `VJEPA2WorldModel` whose (frozen) encoder features are decoded.
        decoder: `VJEPA2FrameDecoderConfig` sizes (the encoder side comes from the world model).
        steps: optimizer steps of the schedule; stop_at_step: end this job early (time slices).
        seed: decoder init and batch order.
        log_every: printed metrics period (every step goes to metrics.jsonl).
    """

    world_model: str = ""
    decoder: dict = field(default_factory=default_decoder)
    data: DecoderDataArgs = field(default_factory=DecoderDataArgs)
    optim: OptimArgs = field(default_factory=default_optim)
    checkpoint: CheckpointArgs = field(default_factory=lambda: CheckpointArgs(dir="runs/frame_decoder"))
    distributed: DistributedArgs = field(default_factory=DistributedArgs)
    steps: int = 1000
    stop_at_step: int | None = None
    seed: int = 0
    log_every: int = 50

    def validate(self) -> list[str]:
        errors = self.optim.run_length_errors(self.steps, self.stop_at_step)
        if not self.world_model:
            errors.append("world_model is empty: give the folder of a VJEPA2WorldModel (a checkpoint's model/)")
        return errors


@torch.no_grad()
def encode_dataset(
    model: VJEPA2WorldModel, args: DecoderDataArgs, chunk: int = 64
) -> tuple[torch.Tensor, torch.Tensor, dict[int, str]]:
    """`(F, N, D)` features and `(F, 3, crop, crop)` normalized pixels of the chosen frames of the chosen episodes,
    and `{episode: reason}` of the unreadable ones, which are skipped (all of them unreadable is an error)."""
    reader = LeRobotEpisodes(args.root, camera_key=args.camera_key)
    stop = None if args.num_episodes is None else args.first_episode + args.num_episodes
    episodes = reader.episode_indices[args.first_episode : stop]
    if not episodes:
        raise ValueError(f"{reader.root}: data.first_episode={args.first_episode} leaves no episode (it has {len(reader)})")
    size = model.config.predictor_config.crop_size
    features, pixels, unreadable = [], [], {}
    for episode in episodes:
        try:
            frames = reader.episode(episode).frames[:: args.frame_stride]
        except (VideoDecodeError, LeRobotFormatError) as error:
            unreadable[episode] = str(error)
            continue
        clip = crop_and_normalize(frames, center_crop_box(*frames.shape[1:3]), size)
        pixels.append(clip)
        features.append(torch.cat([model.encode_frames(part.unsqueeze(0))[0] for part in clip.split(chunk)]))
    if not features:
        first = next(iter(unreadable.items()))
        raise ValueError(f"{reader.root}: none of the {len(episodes)} episodes could be read (episode {first[0]}: "
                         f"{first[1]})")
    return torch.cat(features), torch.cat(pixels), unreadable


def train(config: FrameDecoderTrainConfig) -> Path:
    """Run (or resume) decoder training; return the run directory."""
    validate_config(config)
    accelerator = build_accelerator(config.distributed, config.optim.grad_clip)
    world_model = VJEPA2WorldModel.from_pretrained(config.world_model).eval()
    features, pixels, unreadable = encode_dataset(world_model, config.data)
    accelerator.print(f"encoded {len(features)} frames ({tuple(features.shape[1:])} features each); "
                      f"skipped {len(unreadable)} unreadable episodes {sorted(unreadable)}")
    set_seed(config.seed)
    decoder = VJEPA2FrameDecoder.from_world_model(world_model, **config.decoder)
    del world_model
    optimizer = torch.optim.AdamW(weight_decay_param_groups(decoder), betas=config.optim.betas, eps=config.optim.eps)
    scheduler = OptimizerScheduler(
        optimizer,
        lambda step: lr_at(config.optim, step, config.steps),
        lambda step: weight_decay_at(config.optim, step, config.steps),
    )
    wrapped, optimizer = prepare_with_stream_sampler(accelerator, decoder, optimizer, config.data.batch_size)
    loop = TrainingLoop(accelerator, wrapped, optimizer, scheduler, config, config.checkpoint, name="frame decoder",
                        grad_clip=config.optim.grad_clip, log_every=config.log_every, print_rows=True)
    resume_from = latest_checkpoint(config.checkpoint.dir) if config.checkpoint.resume else None
    step, totals = loop.resume(resume_from)
    sampler = ResumableBatchSampler(len(features), config.data.batch_size, accelerator.process_index,
                                    accelerator.num_processes, config.seed, start=step)
    batches = ({"features": features[index], "pixel_values": pixels[index]} for index in sampler)

    def step_fn(batch: dict) -> StepOutput:
        with accelerator.autocast():
            output = wrapped(**{key: value.to(accelerator.device) for key, value in batch.items()})
        return StepOutput(output.loss, counts={"samples": len(batch["features"])})

    loop.run(batches, step_fn, {MODEL_NAME: decoder}, step=step, last_step=config.stop_at_step or config.steps,
             totals=totals)
    accelerator.wait_for_everyone()
    return Path(config.checkpoint.dir)


def main(argv: list[str] | None = None) -> Path:
    recipe, overrides = parse_recipe_cli(argv, __doc__, "the built-in defaults")
    return train(load_config(FrameDecoderTrainConfig, recipe, overrides))

if __name__ == "__main__":
    main()
    sys.exit(0)
