"""Action anticipation with frozen features (section 6, appendix D): context sampling, cached features, metrics.

The protocol of facebookresearch/vjepa2 `evals/action_anticipation_frozen/` (`epickitchens.py`, `metrics.py`):
- a context clip of `num_frames` frames, one every `int(video_fps / fps)` video frames, ends
  `int(t * video_fps)` frames before the anticipation point `int(start * p + stop * (1 - p))` of the action's
  [start, stop] segment; frames before the video's start repeat its first frame;
- training draws t ~ U(0.25, 1.75) s and p ~ U(0, 0.25) per sample; validation uses t = 1 s and p = 0;
- the metric is mean-class recall@5: per class present in the labels, the share of its samples whose class is
  among the 5 highest logits, averaged over those classes; for verbs, nouns and actions.

Encoder and predictor are frozen, so `VJEPA2ForActionAnticipation.anticipation_tokens` runs once per context and
its tokens are cached: every training video gets `train_draws` contexts, each a separate training sample of the
probe's multi-head lr x wd sweep (`vjepa_vlm.eval.probe.train_probe_sweep`, which this module gives an
`AnticipationTask`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from vjepa_vlm.configuration_vjepa2 import VJEPA2Config
from vjepa_vlm.data.epic_kitchens import ActionSegment, read_segment_frames
from vjepa_vlm.data.normalization import normalize_frames
from vjepa_vlm.eval.probe import ProbeArgs, spatial_views
from vjepa_vlm.modeling_vjepa2_anticipation import (
    ANTICIPATION_TASKS,
    VJEPA2AnticipationHead,
    VJEPA2ForActionAnticipation,
    check_anticipation_labels,
    sigmoid_focal_loss,
)

RECALL_AT = (1, 5)  # recall@5 is the paper's metric; recall@1 also reads a task with few classes (our verbs)


@dataclass(frozen=True)
class AnticipationSampling:
    """Where context clips end (the reference's EK100 settings; appendix D).

    Args:
        time_range: training anticipation times in seconds, drawn uniformly.
        point_range: training anticipation points (0 = the action's stop frame, 1 = its start), drawn uniformly.
        eval_time: anticipation time of validation and test contexts.
        eval_point: anticipation point of validation and test contexts.
        train_draws: contexts drawn per training video (each a cached training sample).
    """

    time_range: tuple[float, float] = (0.25, 1.75)
    point_range: tuple[float, float] = (0.0, 0.25)
    eval_time: float = 1.0
    eval_point: float = 0.0
    train_draws: int = 4

    def __post_init__(self):
        for name in ("time_range", "point_range"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ValueError(f"AnticipationSampling.{name} must be 0 <= low <= high, got {(low, high)}")
        if not 0 <= self.point_range[1] <= 1 or not 0 <= self.eval_point <= 1:
            raise ValueError("anticipation points are fractions of the action segment, in [0, 1]")
        if self.train_draws < 1:
            raise ValueError(f"AnticipationSampling.train_draws must be >= 1, got {self.train_draws}")

    def draws(self, count: int, seed: int) -> np.ndarray:
        """(count, train_draws, 2) training (time, point) pairs; the same for a seed whatever else runs."""
        rng = np.random.default_rng(seed)
        times = rng.uniform(*self.time_range, size=(count, self.train_draws))
        points = rng.uniform(*self.point_range, size=(count, self.train_draws))
        return np.stack((times, points), axis=-1)


def context_indices(segment: ActionSegment, time: float, point: float, num_frames: int, fps: float) -> np.ndarray:
    """0-based video frames of the context clip ending `time` seconds before the anticipation point."""
    stride = int(segment.fps / fps)
    if stride < 1:
        raise ValueError(f"{segment.key}: the context's {fps} fps is above the video's {segment.fps} fps")
    end = int(segment.start_frame * point + (1 - point) * segment.stop_frame - int(time * segment.fps))
    return np.clip(np.arange(end - num_frames * stride, end, stride), 0, None)


def load_context(segment: ActionSegment, indices: np.ndarray, resolution: int) -> torch.Tensor:
    """(T, 3, R, R) normalized center crop of the context frames."""
    return spatial_views(normalize_frames(read_segment_frames(segment, indices)), resolution, 1)[0]


def mean_class_recall(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Mean over the classes present in `labels` of the share of their samples with the class in the top `k`."""
    top = logits.topk(min(k, logits.shape[-1]), dim=-1).indices
    hit = (top == labels[:, None]).any(-1).float()
    classes = labels.unique()
    return torch.stack([hit[labels == c].mean() for c in classes]).mean().item()


class AnticipationTask:
    """The anticipation probe task of the multi-head sweep: three-query heads, summed focal loss, recall@k.

    Args:
        config: a `VJEPA2AnticipationConfig` (class counts, focal loss settings).
        fusion: how the heads read the "both" features (`anticipation_fusion`); default the config's. Late-fusion
            heads ("late", "late_delta") take only the "both" concatenation; single-stream rows
            (encoder, predictor) are read with "early".
    """

    select_metric = "action_recall@5"

    def __init__(self, config, fusion: str | None = None):
        self.config = config
        self.fusion = config.anticipation_fusion if fusion is None else fusion
        self.sizes = (config.num_verbs, config.num_nouns, config.num_actions)

    def make_head(self, config: VJEPA2Config, args: ProbeArgs) -> nn.Module:
        head_config = copy.deepcopy(self.config)
        head_config.anticipation_fusion = self.fusion
        head_config.num_pooler_layers = args.num_blocks - 1
        head_config.pooler_num_attention_heads = args.num_heads
        head_config.probe_position_embedding = args.position_embedding
        return VJEPA2AnticipationHead(head_config)

    def check_labels(self, name: str, labels: torch.Tensor) -> None:
        check_anticipation_labels(labels, self.sizes, f"{name} labels")

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Focal loss summed over heads, samples, classes and tasks: (heads, B, V+N+A) logits, (B, 3) targets."""
        parts = logits.split(self.sizes, dim=-1)
        alpha, gamma = self.config.focal_alpha, self.config.focal_gamma
        return sum(
            sigmoid_focal_loss(part, targets[:, i].expand(part.shape[:-1]), alpha, gamma) for i, part in enumerate(parts)
        )

    def scores(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """{"<task>_recall@<k>"}: mean-class recall of (items, V+N+A) logits against (items, 3) labels."""
        parts = logits.split(self.sizes, dim=-1)
        return {
            f"{task}_recall@{k}": mean_class_recall(part, labels[:, i], k)
            for i, (task, part) in enumerate(zip(ANTICIPATION_TASKS, parts))
            for k in RECALL_AT
        }


@torch.no_grad()
def extract_anticipation_tokens(
    model: VJEPA2ForActionAnticipation,
    segments: list[ActionSegment],
    draws: np.ndarray,
    resolution: int,
    batch_size: int = 16,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen `(encoder tokens (items, draws, N, D), predicted tokens (items, draws, Np, D))`.

    Args:
        model: supplies encoder, predictor, context length and fps (`config.context_frames`, `frames_per_second`).
        segments: the actions.
        draws: (items, draws, 2) (anticipation time, anticipation point) of every context.
        resolution: crop side of the context frames.
    """
    if draws.shape[:1] != (len(segments),) or draws.ndim != 3 or draws.shape[-1] != 2:
        raise ValueError(f"draws must be (items={len(segments)}, draws, 2), got {draws.shape}")
    model.eval()
    config = model.config
    jobs = [(i, j) for i in range(len(segments)) for j in range(draws.shape[1])]
    encoded, predicted = [], []
    for start in range(0, len(jobs), batch_size):
        batch = jobs[start : start + batch_size]
        times = torch.tensor([draws[i, j, 0] for i, j in batch], dtype=torch.float32)
        clips = torch.stack([
            load_context(segments[i], context_indices(segments[i], draws[i, j, 0], draws[i, j, 1],
                                                      config.context_frames, config.frames_per_second), resolution)
            for i, j in batch
        ])
        tokens, future = model.anticipation_tokens(clips, times)
        encoded.append(tokens)
        predicted.append(future)
    shape = (len(segments), draws.shape[1])
    return torch.cat(encoded).unflatten(0, shape), torch.cat(predicted).unflatten(0, shape)


def segment_labels(segments: list[ActionSegment]) -> torch.Tensor:
    """(items, 3) verb, noun and action ids."""
    return torch.tensor([segment.labels for segment in segments], dtype=torch.long)


__all__ = [
    "AnticipationSampling",
    "AnticipationTask",
    "context_indices",
    "extract_anticipation_tokens",
    "load_context",
    "mean_class_recall",
    "segment_labels",
]
