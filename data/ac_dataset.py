"""Clips for action-conditioned world-model training, from any robot dataset in the LeRobot v3.0 layout.

A clip is `num_frames` frames of one episode sampled at `fps` (every `stride`-th recorded frame), the states at
those frames and the `num_frames - 1` actions between them, as the reference trainer takes them
(facebookresearch/vjepa2 `app/vjepa_droid`: clips of 8 frames at 4 fps, actions `[B, T-1, 7]`, states `[B, T, 7]`).
When the dataset was recorded faster than `fps`, the action between two sampled frames is the sum of the recorded
actions in between: the net command of that interval for delta actions such as Fetch's or Droid's end-effector
displacements.

Every clip is a pure function of (seed, stream position) — episode, start and crop come from a generator seeded by
them — so a resumed run sees exactly the clips an uninterrupted one would. Episodes shorter than a clip are left
out and counted when the dataset opens; an episode whose video cannot be decoded is skipped (the draw moves on to
another episode) and counted per clip.

Feature cache: V-JEPA 2-AC encodes every frame alone, so a frame's features depend only on the frame and its crop.
With random crops no two clips share a crop and nothing can be cached exactly; with `cache_features` every frame is
center-cropped, encoded once per episode by the caller's frozen encoder, and clips are served as features — exactly
what encoding the same center-cropped clip at every step would give, without decoding or encoding per step.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from vjepa_vlm.data.lerobot_format import LeRobotEpisodes, LeRobotFormatError
from vjepa_vlm.data.pretrain_dataset import crop_and_normalize, random_resized_crop_box
from vjepa_vlm.data.video_io import VideoDecodeError


@dataclass
class ACDataArgs:
    """Data section of a world-model training config.

    Args:
        root: folder of a LeRobot v3.0 dataset (holding meta/info.json).
        camera_key: the video feature to train on; may be omitted when the dataset has one camera.
        state_key, action_key: the per-frame vectors used as end-effector states and actions.
        state_dim, action_dim: their sizes (checked against info.json; they set the predictor's).
        first_episode, num_episodes: the episodes trained on, by position in the sorted episode indices
            (num_episodes null: all from first_episode); the others stay held out.
        num_frames: frames per clip (the released Droid config: 8).
        fps: frame rate clips are sampled at (4 in the paper); the dataset's fps must be a multiple of it.
        crop_size: output side in pixels (the predictor's crop_size).
        crop_scale, crop_aspect_ratio: random-resized-crop area fraction and w/h range, one crop per clip.
        cache_features: center crops, and frame features encoded once per episode (see the module docstring).
        batch_size: clips per device per micro-batch.
        num_workers: DataLoader worker processes (without the cache: decoding runs there).
        max_retries: consecutive unreadable episodes tolerated for one clip before giving up.
    """

    root: str = ""
    camera_key: str | None = None
    state_key: str = "observation.state"
    action_key: str = "action"
    state_dim: int = 7
    action_dim: int = 7
    first_episode: int = 0
    num_episodes: int | None = None
    num_frames: int = 8
    fps: float = 4.0
    crop_size: int = 256
    crop_scale: tuple[float, float] = (0.3, 1.0)
    crop_aspect_ratio: tuple[float, float] = (0.75, 1.35)
    cache_features: bool = False
    batch_size: int = 8
    num_workers: int = 0
    max_retries: int = 20

    def __post_init__(self):
        self.crop_scale = tuple(self.crop_scale)
        self.crop_aspect_ratio = tuple(self.crop_aspect_ratio)

    def validate(self) -> list[str]:
        errors = []
        if not self.root:
            errors.append("data.root is empty: give the folder of a LeRobot v3.0 dataset")
        if self.num_frames < 2:
            errors.append(f"data.num_frames must be >= 2 (a clip needs a frame to predict), got {self.num_frames}")
        for name in ("state_dim", "action_dim", "crop_size", "batch_size", "max_retries"):
            if getattr(self, name) < 1:
                errors.append(f"data.{name} must be >= 1, got {getattr(self, name)}")
        if self.fps <= 0:
            errors.append(f"data.fps must be > 0, got {self.fps}")
        if not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            errors.append(f"data.crop_scale must satisfy 0 < min <= max <= 1, got {self.crop_scale}")
        if not 0 < self.crop_aspect_ratio[0] <= self.crop_aspect_ratio[1]:
            errors.append(f"data.crop_aspect_ratio must satisfy 0 < min <= max, got {self.crop_aspect_ratio}")
        if self.first_episode < 0 or (self.num_episodes is not None and self.num_episodes < 1):
            errors.append("data.first_episode must be >= 0 and data.num_episodes >= 1 (or null)")
        return errors


def center_crop_box(height: int, width: int) -> tuple[int, int, int, int]:
    """(top, left, h, w) of the largest centered square."""
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side, side


def frame_stride(dataset_fps: float, clip_fps: float, where: str) -> int:
    """Recorded frames per clip step; the dataset's fps must be a whole multiple of the clip's."""
    stride = dataset_fps / clip_fps
    if stride < 1 or not math.isclose(stride, round(stride), abs_tol=1e-6):
        raise ValueError(
            f"{where}: the dataset is recorded at {dataset_fps:g} fps, which is not a whole multiple of data.fps="
            f"{clip_fps:g}; pick data.fps = {dataset_fps:g} / k for an integer k >= 1"
        )
    return int(round(stride))


def summed_actions(actions: np.ndarray, stride: int) -> np.ndarray:
    """`(S * stride, A)` recorded actions -> `(S, A)`: each clip step's actions summed."""
    return actions.reshape(-1, stride, actions.shape[-1]).sum(1)


class ACClipDataset(Dataset):
    """A stream of world-model clips indexed by stream position (any non-negative int).

    A sample holds `pixel_values` `(T, 3, crop, crop)` (or, once `build_feature_cache` ran, `features`
    `(T, H*W, D)`), `actions` `(T-1, action_dim)`, `states` `(T, state_dim)`, the `episode` and `start` frame, and
    `skipped`: unreadable episodes passed over while drawing it.

    Args:
        args: the data section.
        seed: clip `position` is drawn from a generator seeded by (seed, position).
    """

    def __init__(self, args: ACDataArgs, seed: int = 0):
        self.args, self.seed = args, seed
        self.reader = LeRobotEpisodes(
            args.root, camera_key=args.camera_key, state_key=args.state_key, action_key=args.action_key,
            state_dim=args.state_dim, action_dim=args.action_dim,
        )
        self.stride = frame_stride(self.reader.fps, args.fps, f"{self.reader.root}/meta/info.json")
        # Rows a clip spans: its sampled frames, and the recorded actions up to the last one.
        self.span = (args.num_frames - 1) * self.stride + 1
        stop = None if args.num_episodes is None else args.first_episode + args.num_episodes
        chosen = self.reader.episode_indices[args.first_episode:stop]
        if not chosen:
            raise ValueError(
                f"{self.reader.root}: data.first_episode={args.first_episode} leaves no episode (the dataset has "
                f"{len(self.reader)})"
            )
        self.too_short = [e for e in chosen if self.reader.length(e) < self.span]
        self.episodes = [e for e in chosen if self.reader.length(e) >= self.span]
        if not self.episodes:
            raise ValueError(
                f"{self.reader.root}: none of the {len(chosen)} episodes has the {self.span} frames a clip of "
                f"{args.num_frames} frames at {args.fps:g} fps spans (recorded at {self.reader.fps:g} fps)"
            )
        self.unreadable: dict[int, str] = {}
        self.skipped: Counter[int] = Counter()
        self.features: dict[int, torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.episodes)

    @torch.no_grad()
    def build_feature_cache(self, encode: Callable[[torch.Tensor], torch.Tensor], chunk: int = 64) -> None:
        """Encode every frame of every episode once, center-cropped; later samples carry `features`.

        Args:
            encode: `(N, 1, 3, crop, crop)` frames -> `(N, 1, H*W, D)` features (e.g. `VJEPA2WorldModel.encode_frames`).
            chunk: frames per `encode` call.
        """
        features = {}
        for episode in self.episodes:
            try:
                frames = self.reader.episode(episode).frames
            except (VideoDecodeError, LeRobotFormatError) as error:
                self.unreadable[episode] = str(error)
                continue
            clip = crop_and_normalize(frames, center_crop_box(*frames.shape[1:3]), self.args.crop_size)
            features[episode] = torch.cat([encode(part.unsqueeze(1))[:, 0] for part in clip.split(chunk)])
        if not features:
            raise ValueError(f"{self.reader.root}: no episode could be decoded; {self._unreadable_summary()}")
        self.features = features

    def _unreadable_summary(self) -> str:
        return "unreadable: " + "; ".join(f"episode {e}: {m}" for e, m in list(self.unreadable.items())[:3])

    def __getitem__(self, position: int) -> dict:
        rng = np.random.default_rng([self.seed, int(position)])
        for attempt in range(self.args.max_retries):
            # Drawn even when known unreadable, so the stream stays a function of (seed, position) alone.
            episode = self.episodes[int(rng.integers(len(self.episodes)))]
            start = int(rng.integers(0, self.reader.length(episode) - self.span + 1))
            box_rng = np.random.default_rng(rng.integers(2**32))
            if episode in self.unreadable or (self.features is not None and episode not in self.features):
                self.skipped[episode] += 1
                continue
            try:
                sample = self.clip(episode, start, box_rng)
            except (VideoDecodeError, LeRobotFormatError) as error:
                self.unreadable[episode] = str(error)
                self.skipped[episode] += 1
                continue
            return {**sample, "episode": episode, "start": start, "skipped": attempt}
        raise RuntimeError(
            f"{self.args.max_retries} consecutive unreadable episodes at stream position {position}; "
            f"{self._unreadable_summary()}"
        )

    def clip(self, episode: int, start: int, rng: np.random.Generator | None = None) -> dict:
        """The clip of `episode` from recorded frame `start`: features once cached, else frames cropped at random
        by `rng` (center-cropped without one, for evaluation)."""
        with_frames = self.features is None
        rows = self.reader.episode(episode, start=start, num_frames=self.span, frames=with_frames)
        sample = {
            "states": torch.from_numpy(np.ascontiguousarray(rows.state[:: self.stride], dtype=np.float32)),
            "actions": torch.from_numpy(summed_actions(rows.action[: self.span - 1], self.stride).astype(np.float32)),
        }
        if with_frames:
            frames = rows.frames[:: self.stride]
            box = (center_crop_box(*frames.shape[1:3]) if rng is None else
                   random_resized_crop_box(*frames.shape[1:3], self.args.crop_scale, self.args.crop_aspect_ratio, rng))
            sample["pixel_values"] = crop_and_normalize(frames, box, self.args.crop_size)
        else:
            sample["features"] = self.features[episode][start : start + self.span : self.stride]
        return sample


__all__ = ["ACClipDataset", "ACDataArgs", "center_crop_box", "frame_stride", "summed_actions"]
