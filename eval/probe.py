"""Frozen-encoder attentive-probe evaluation (section 5, appendix C.1, Table 15).

The encoder runs once: every clip's tokens are cached. A sweep of probe heads, one per
(learning rate, weight decay) pair, trains at once on those cached tokens under a cosine schedule; each
video is evaluated by averaging the logits of its segments × views. One head is chosen by its accuracy on
one evaluation split (a validation split held out from train, `stratified_split`) and its accuracy on every
split is reported. Images are classified as clips of one repeated frame.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from vjepa_vlm.configuration_vjepa2 import VJEPA2Config
from vjepa_vlm.data.normalization import normalize_frames
from vjepa_vlm.data.video_io import read_video, video_info
from vjepa_vlm.modeling_vjepa2_probe import VJEPA2ProbeHead, probe_tokens
from vjepa_vlm.vision.attentive_pooler import POSITION_EMBEDDINGS
from vjepa_vlm.vision.pretraining import weight_decay_param_groups
from vjepa_vlm.vision.schedules import OptimizerScheduler, warmup_cosine


@dataclass
class ProbeArgs:
    """Probe protocol (Table 15 defaults; small-scale values are passed by the caller).

    Args:
        num_frames: frames per clip.
        frame_step: frames skipped between sampled frames (Table 15: 4).
        num_segments: clips per video at evaluation (Table 15: 8 for K400, 2 for SSv2).
        num_views: spatial views per clip at evaluation (Table 15: 3; training uses the center view).
        resolution: clip side length.
        single_frame: replace every clip by its middle frame repeated (the single-frame baseline).
        learning_rates, weight_decays: the sweep grid; one head per pair (Table 15: 5 x 4 = 20 heads).
        epochs: probe training epochs (Table 15: 20).
        batch_size: probe training batch size.
        warmup_epochs: linear warmup before the cosine decay.
        num_heads: attention heads of every probe block (appendix C.1: 16).
        num_blocks: probe depth; the last block is the cross-attention one (appendix C.1: 4).
        output_layers: encoder blocks whose tokens the probe attends to (Table 16); None = last layer.
        position_embedding: None (the reference probe: no token positions) or "sincos" (a fixed 3D
            embedding of each token's (t, h, w) added to the probe's input; see `modeling_vjepa2_probe`).
        seed: probe initialization and shuffling seed.
    """

    num_frames: int = 16
    frame_step: int = 4  # Table 15
    num_segments: int = 2  # Table 15 (SSv2)
    num_views: int = 3  # Table 15
    resolution: int = 256  # Table 15
    single_frame: bool = False
    learning_rates: tuple[float, ...] = (5e-3, 3e-3, 1e-3, 3e-4, 1e-4)  # Table 15
    weight_decays: tuple[float, ...] = (0.8, 0.4, 0.1, 0.01)  # Table 15
    epochs: int = 20  # Table 15
    batch_size: int = 256  # Table 15
    warmup_epochs: int = 0
    num_heads: int = 16  # appendix C.1
    num_blocks: int = 4  # appendix C.1
    output_layers: tuple[int, ...] | None = None
    position_embedding: str | None = None
    seed: int = 0

    def __post_init__(self):
        if self.num_blocks < 1:
            raise ValueError(f"ProbeArgs.num_blocks must be >= 1 (the cross-attention block), got {self.num_blocks}")
        if not self.learning_rates or not self.weight_decays:
            raise ValueError("ProbeArgs.learning_rates and weight_decays must be non-empty")
        if self.position_embedding not in POSITION_EMBEDDINGS:
            raise ValueError(
                f"ProbeArgs.position_embedding must be one of {POSITION_EMBEDDINGS}, got {self.position_embedding!r}"
            )

    @property
    def grid(self) -> list[tuple[float, float]]:
        return [(lr, wd) for lr in self.learning_rates for wd in self.weight_decays]


def segment_starts(num_frames: int, span: int, num_segments: int) -> list[int]:
    """Start frames of `num_segments` clips of `span` frames spread evenly over the video."""
    last = max(0, num_frames - span)
    if num_segments == 1:
        return [last // 2]
    return [round(i * last / (num_segments - 1)) for i in range(num_segments)]


def spatial_views(frames: torch.Tensor, resolution: int, num_views: int) -> list[torch.Tensor]:
    """Resize the short side to `resolution`, then take `num_views` square crops along the long side."""
    height, width = frames.shape[-2:]
    scale = resolution / min(height, width)
    size = (max(resolution, round(height * scale)), max(resolution, round(width * scale)))
    frames = F.interpolate(frames, size=size, mode="bilinear", antialias=True, align_corners=False)
    long_axis = 2 if size[0] > size[1] else 3
    room = frames.shape[long_axis] - resolution
    offsets = [room // 2] if num_views == 1 else [round(i * room / (num_views - 1)) for i in range(num_views)]
    views = []
    for offset in offsets:
        top, left = (offset, (size[1] - resolution) // 2) if long_axis == 2 else ((size[0] - resolution) // 2, offset)
        views.append(frames[:, :, top : top + resolution, left : left + resolution])
    return views


def load_clips(kind: str, path: Path, args: ProbeArgs, num_segments: int, num_views: int) -> torch.Tensor:
    """(num_segments * num_views, T, 3, R, R) clips of one video (or one image repeated in time)."""
    if kind == "image":
        with Image.open(path) as image:
            frame = np.asarray(image.convert("RGB"))
        segments = [np.repeat(frame[None], args.num_frames, axis=0)]
    else:
        total = video_info(path).num_frames
        span = (args.num_frames - 1) * args.frame_step + 1
        segments = []
        for start in segment_starts(total, span, num_segments):
            indices = [min(start + i * args.frame_step, total - 1) for i in range(args.num_frames)]
            if args.single_frame:
                indices = [indices[len(indices) // 2]] * args.num_frames
            segments.append(read_video(path, indices))
    views = [spatial_views(normalize_frames(segment), args.resolution, num_views) for segment in segments]
    clips = [view for segment_views in views for view in segment_views]
    return torch.stack(clips)


@torch.no_grad()
def extract_features(
    encoder: nn.Module,
    items: list[tuple[str, Path]],
    args: ProbeArgs,
    training: bool,
    batch_size: int = 16,
    cache: dict | None = None,
) -> torch.Tensor:
    """Frozen tokens (num_items, clips_per_item, N, D); training items get all segments, center view.

    `cache` (a dict kept by the caller) reuses the tokens of a file already encoded, e.g. when the
    motion and appearance tasks label the same videos.
    """
    encoder.eval()
    num_views = 1 if training else args.num_views
    features = []
    for kind, path in items:
        key = (kind, str(path), training)
        if cache is None or key not in cache:
            clips = load_clips(kind, path, args, args.num_segments, num_views)
            tokens = torch.cat([probe_tokens(encoder, chunk, args.output_layers) for chunk in clips.split(batch_size)])
            if cache is None:
                features.append(tokens)
                continue
            cache[key] = tokens
        features.append(cache[key])
    return torch.stack(features)


def probe_config(config: VJEPA2Config, num_labels: int, args: ProbeArgs) -> VJEPA2Config:
    """The encoder config extended with the probe's shape (labels, depth, heads, input layers)."""
    head_config = copy.deepcopy(config)
    head_config.num_labels = num_labels
    head_config.num_pooler_layers = args.num_blocks - 1
    head_config.pooler_num_attention_heads = args.num_heads
    head_config.probe_output_layers = list(args.output_layers) if args.output_layers else None
    head_config.probe_position_embedding = args.position_embedding
    return head_config


def probe_grid(config: VJEPA2Config, args: ProbeArgs) -> tuple[int, int, int]:
    """(t, h, w) token grid of every clip `load_clips` makes (a single frame is one tubelet)."""
    tubelets = max(args.num_frames, config.tubelet_size) // config.tubelet_size
    side = args.resolution // config.patch_size
    return tubelets, side, side


class ClassificationTask:
    """Single-label classification: one linear classifier, cross-entropy, top-1 accuracy.

    A probe task tells the sweep which head to train, its loss and its scores; the anticipation task
    (`vjepa_vlm.eval.anticipation.AnticipationTask`) is the other one.

    Args:
        num_labels: classes.
    """

    select_metric = "accuracy"

    def __init__(self, num_labels: int):
        self.num_labels = num_labels

    def make_head(self, config: VJEPA2Config, args: ProbeArgs) -> nn.Module:
        return VJEPA2ProbeHead(probe_config(config, self.num_labels, args))

    def check_labels(self, name: str, labels: torch.Tensor) -> None:
        if labels.min() < 0 or labels.max() >= self.num_labels:
            raise ValueError(f"{name} labels must lie in [0, {self.num_labels}), got [{labels.min()}, {labels.max()}]")

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Sum over heads of each head's mean cross-entropy: (heads, B, C) logits, (B,) targets."""
        return F.cross_entropy(logits.flatten(0, 1), targets.repeat(logits.shape[0])) * logits.shape[0]

    def scores(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """{"accuracy"} of (items, C) clip-averaged logits."""
        return {"accuracy": (logits.argmax(-1) == labels).float().mean().item()}


class MultiHeadProbe(nn.Module):
    """Independent probe heads trained side by side on the same features, one per sweep setting.

    Args:
        config: the encoder's `VJEPA2Config` (its `hidden_size`, `layer_norm_eps`, `hidden_act`).
        task: classes (an int: classification) or a probe task (`ClassificationTask`, `AnticipationTask`).
        args: the sweep (grid, probe depth and heads).
    """

    def __init__(self, config: VJEPA2Config, task, args: ProbeArgs):
        super().__init__()
        task = as_probe_task(task)
        self.settings = args.grid
        self.heads = nn.ModuleList([task.make_head(config, args) for _ in self.settings])
        for head in self.heads:
            nn.init.trunc_normal_(head.pooler.query_tokens, std=0.02)

    def forward(self, tokens: torch.Tensor, grid_size: tuple[int, int, int] | None = None) -> torch.Tensor:
        """(B, N, D) tokens of a `grid_size` grid -> (num_heads, B, num_labels)."""
        return torch.stack([head(tokens, grid_size) for head in self.heads])

    def param_groups(self) -> list[dict]:
        groups = []
        for head, (lr, weight_decay) in zip(self.heads, self.settings):
            for group in weight_decay_param_groups(head, lr_scale=lr):
                groups.append({**group, "weight_decay_scale": weight_decay})
        return groups


def as_probe_task(task):
    """A probe task from a task or a number of classes (classification)."""
    return ClassificationTask(task) if isinstance(task, int) else task


def average_logits(logits: torch.Tensor) -> torch.Tensor:
    """Average (..., clips, C) logits over the clips axis (multi-clip × multi-view inference)."""
    return logits.mean(dim=-2)


@torch.no_grad()
def evaluate_heads(
    probe: MultiHeadProbe,
    features: torch.Tensor,
    labels: torch.Tensor,
    grid_size: tuple[int, int, int] | None = None,
    batch_size: int = 64,
    task=None,
) -> list[dict[str, float]]:
    """Scores of every head (`task.scores`, top-1 accuracy by default) of logits averaged over each item's clips."""
    probe.eval()
    task = task or ClassificationTask(int(labels.max()) + 1)
    logits = []
    for start in range(0, len(features), batch_size):
        chunk = features[start : start + batch_size]
        items, clips = chunk.shape[:2]
        logits.append(average_logits(probe(chunk.flatten(0, 1), grid_size).unflatten(1, (items, clips))))
    return [task.scores(head_logits, labels) for head_logits in torch.cat(logits, dim=1)]


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted item indices `(kept, held_out)` that hold out `fraction` of every class of `labels`.

    Per class, so the held-out split has the class mix of the whole; a class of two or more items keeps at
    least one on each side, so a validation split judges every class the probe is trained on. The draw depends
    only on `labels`, `fraction` and `seed`.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"the validation fraction must lie in [0, 1), got {fraction}")
    generator = torch.Generator().manual_seed(seed)
    held_out = [torch.zeros(0, dtype=torch.long)]
    for label in labels.unique(sorted=True):
        members = (labels == label).nonzero().flatten()
        count = min(max(round(fraction * len(members)), 1), len(members) - 1) if fraction > 0 else 0
        held_out.append(members[torch.randperm(len(members), generator=generator)[:count]])
    held = torch.cat(held_out).sort().values
    kept = torch.ones(len(labels), dtype=torch.bool)
    kept[held] = False
    return kept.nonzero().flatten(), held


def train_probe_sweep(
    config: VJEPA2Config,
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    eval_sets: dict[str, tuple[torch.Tensor, torch.Tensor]],
    num_labels,
    args: ProbeArgs,
    select_on: str,
    grid_size: tuple[int, int, int] | None = None,
) -> dict:
    """Train every head of the sweep, evaluate them on every split, and pick one head on `select_on`.

    Args:
        config: encoder config.
        train_features: (items, clips, N, D) cached tokens; every clip is a training sample.
        train_labels: (items,) labels.
        eval_sets: split name -> ((items, clips, N, D) features, (items,) labels); logits are averaged over clips.
        num_labels: number of classes, or a probe task (e.g. `AnticipationTask`, whose labels are (items, 3) rows).
        args: sweep settings.
        select_on: the split of `eval_sets` whose `task.select_metric` (accuracy) picks the head (ties go to the
            first head of the grid).
            Picking on the split one reports overstates it: the max over heads of noisy accuracies.
        grid_size: `(t, h, w)` token grid of the features, for a position embedding; default `probe_grid`'s (the
            clips of `load_clips`).

    Returns:
        {"heads": [{"lr", "weight_decay", "<split>_<metric>" for every split and metric of the task (accuracy)}],
        "best": the picked head's entry
        with its "index" and "selected_on", "probe": the trained MultiHeadProbe}.
    """
    task = as_probe_task(num_labels)
    if select_on not in eval_sets:
        raise ValueError(f"select_on={select_on!r} is not one of the evaluated splits {sorted(eval_sets)}")
    splits = {"train": (train_features, train_labels), **eval_sets}
    for name, (features, labels) in splits.items():
        if not len(labels):
            raise ValueError(f"the {name} split is empty")
        if len(features) != len(labels):
            raise ValueError(f"the {name} split has {len(features)} feature items but {len(labels)} labels")
        task.check_labels(name, labels)
    torch.manual_seed(args.seed)
    probe = MultiHeadProbe(config, task, args)
    optimizer = torch.optim.AdamW(probe.param_groups())
    clips_per_item = train_features.shape[1]
    samples = train_features.flatten(0, 1)
    targets = train_labels.repeat_interleave(clips_per_item, dim=0)
    steps_per_epoch = math.ceil(len(samples) / args.batch_size)
    total = args.epochs * steps_per_epoch
    warmup = args.warmup_epochs * steps_per_epoch
    scheduler = OptimizerScheduler(optimizer, lambda s: warmup_cosine(s, 0.0, 1.0, 0.0, warmup, total), lambda s: 1.0)
    generator = torch.Generator().manual_seed(args.seed)
    grid = grid_size or probe_grid(config, args)
    for _ in range(args.epochs):
        probe.train()
        for batch in torch.randperm(len(samples), generator=generator).split(args.batch_size):
            logits = probe(samples[batch], grid)
            loss = task.loss(logits, targets[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    heads = [{"lr": lr, "weight_decay": wd} for lr, wd in probe.settings]
    for name, (features, labels) in eval_sets.items():
        for head, scores in zip(heads, evaluate_heads(probe, features, labels, grid, task=task)):
            head.update({f"{name}_{metric}": value for metric, value in scores.items()})
    best = max(range(len(heads)), key=lambda i: heads[i][f"{select_on}_{task.select_metric}"])
    return {"heads": heads, "best": {**heads[best], "index": best, "selected_on": select_on}, "probe": probe}
