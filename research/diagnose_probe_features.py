"""Diagnostics of frozen encoder tokens on the synthetic world's motion task (why a probe can or cannot read motion).

    python research/diagnose_probe_features.py --encoder ENC_DIR --world WORLD --output diag.json [--random-init]

Encodes the center clip of every motion video once (same sampling and normalization as `run_probe.py`) and reports
logistic-regression accuracies on held-out data:

- `position_{t,h,w}`: decoding a token's own grid coordinate from its feature (train/test split over videos). The
  attentive probe has no position embedding, so motion direction is only readable where tokens carry position or
  local motion content.
- `direction_from_moving_tokens`: the 8 translation classes (move_right ... move_down_left) from the mean feature of
  the tokens whose pixels change between tubelets (a bag of tokens, i.e. what a position-blind probe can use).
- `motion_all_tokens_pca`: all 22 motion classes from the flattened (position-aware) token grid after a PCA.
- `moving_vs_static_change`: mean feature change between consecutive tubelets at moving / static tokens.
- `object_token_auc`: ROC AUC of telling, from a token's feature alone, whether its own patch holds moving pixels
  (train/test split over videos): how well tokens localize the moving objects a position-aware probe would track.
- `effective_rank`: participation ratio of the token covariance (`vision.pretraining.effective_rank`); dimensional
  collapse drives it toward 1.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from vjepa_vlm import VJEPA2Config, VJEPA2Model
from vjepa_vlm.eval.probe import ProbeArgs, load_clips
from vjepa_vlm.vision.pretraining import effective_rank

TRANSLATION_CLASSES = 8  # motion labels 0..7 are the eight translation directions of the synthetic world


@torch.no_grad()
def encode(encoder, clips: torch.Tensor, batch_size: int = 50) -> torch.Tensor:
    """(B, T, 3, H, W) clips -> (B, N, D) last-layer tokens."""
    encoder.eval()
    return torch.cat([encoder(chunk).last_hidden_state for chunk in clips.split(batch_size)])


def moving_token_mask(clips: torch.Tensor, tubelet: int, patch: int, threshold: float = 0.3) -> torch.Tensor:
    """(B, N) float mask of tokens whose pixels change (mean |diff| > threshold) to or from a neighbouring tubelet."""
    tubes = clips.unflatten(1, (-1, tubelet)).mean(2)  # (B, t, 3, H, W)
    change = (tubes[:, 1:] - tubes[:, :-1]).abs().mean(2)  # (B, t-1, H, W)
    change = F.avg_pool2d(change, patch)  # (B, t-1, h, w)
    moving = torch.zeros(change.shape[0], change.shape[1] + 1, *change.shape[2:])
    moving[:, 1:] += change
    moving[:, :-1] += change
    return (moving > threshold).float().flatten(1)


def logistic_accuracy(train_x, train_y, test_x, test_y, c: float = 1.0) -> float:
    scaler = StandardScaler().fit(train_x)
    model = LogisticRegression(max_iter=1000, C=c).fit(scaler.transform(train_x), train_y)
    return float(model.score(scaler.transform(test_x), test_y))


def object_token_auc(features: torch.Tensor, moving: torch.Tensor, num_train: int) -> float:
    """Held-out AUC of a logistic regression from each token's feature to its `moving` flag."""
    scaler = StandardScaler().fit(features[:num_train].flatten(0, 1).numpy())
    model = LogisticRegression(max_iter=2000).fit(
        scaler.transform(features[:num_train].flatten(0, 1).numpy()), moving[:num_train].flatten().numpy()
    )
    scores = model.decision_function(scaler.transform(features[num_train:].flatten(0, 1).numpy()))
    return float(roc_auc_score(moving[num_train:].flatten().numpy(), scores))


def position_accuracy(features: torch.Tensor, grid: tuple[int, int, int], num_train: int) -> dict[str, float]:
    """Held-out accuracy of decoding each token's (t, h, w) coordinate from its feature."""
    index = torch.arange(grid[0] * grid[1] * grid[2])
    coords = {"t": index // (grid[1] * grid[2]), "h": (index // grid[2]) % grid[1], "w": index % grid[2]}
    train, test = features[:num_train].flatten(0, 1).numpy(), features[num_train:].flatten(0, 1).numpy()
    out = {}
    for name, coord in coords.items():
        labels = coord.repeat(features.shape[0]).view(features.shape[0], -1)
        out[f"position_{name}"] = logistic_accuracy(
            train, labels[:num_train].flatten().numpy(), test, labels[num_train:].flatten().numpy()
        )
    return out


def bag_of_tokens(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean feature over the masked tokens of each clip (zeros where none)."""
    return (features * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)


def load_split(world: Path, split: str, args: ProbeArgs, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips and motion labels of a split's motion manifest (its first `limit` rows when given)."""
    manifest = world / split / "motion_classification.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line][:limit]
    clips = torch.stack([load_clips("video", world / row["video"], args, 1, 1)[0] for row in rows])
    return clips, torch.tensor([int(row["label"]) for row in rows])


def diagnose(encoder, config, train_clips, train_labels, test_clips, test_labels, position_videos: int = 200) -> dict:
    grid = encoder.grid_size(train_clips[:1])
    train_f, test_f = encode(encoder, train_clips), encode(encoder, test_clips)
    results = position_accuracy(train_f[:position_videos], grid, int(position_videos * 0.75))

    train_moving = moving_token_mask(train_clips, config.tubelet_size, config.patch_size)
    test_moving = moving_token_mask(test_clips, config.tubelet_size, config.patch_size)
    per_time = train_f.unflatten(1, (grid[0], -1))  # (B, t, h*w, D)
    moving_per_time = train_moving.unflatten(1, (grid[0], -1))
    change = (per_time[:, 1:] - per_time[:, :-1]).norm(dim=-1)
    moving_pairs = (moving_per_time[:, 1:] * moving_per_time[:, :-1]) > 0
    results["moving_vs_static_change"] = [float(change[moving_pairs].mean()), float(change[~moving_pairs].mean())]
    results["object_token_auc"] = object_token_auc(
        train_f[:position_videos], train_moving[:position_videos], int(position_videos * 0.75)
    )
    results["effective_rank"] = float(effective_rank(train_f))

    keep_train, keep_test = train_labels < TRANSLATION_CLASSES, test_labels < TRANSLATION_CLASSES
    results["direction_from_moving_tokens"] = logistic_accuracy(
        bag_of_tokens(train_f, train_moving)[keep_train].numpy(), train_labels[keep_train].numpy(),
        bag_of_tokens(test_f, test_moving)[keep_test].numpy(), test_labels[keep_test].numpy(),
    )
    components = min(256, len(train_f))
    pca = PCA(components, random_state=0).fit(train_f.flatten(1).numpy())
    results["motion_all_tokens_pca"] = logistic_accuracy(
        pca.transform(train_f.flatten(1).numpy()), train_labels.numpy(),
        pca.transform(test_f.flatten(1).numpy()), test_labels.numpy(), c=0.01,
    )
    return results


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", type=Path, required=True)
    parser.add_argument("--random-init", action="store_true")
    parser.add_argument("--init-seed", type=int, default=0)
    parser.add_argument("--world", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--frame-step", type=int, default=2)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--output", type=Path, required=True)
    cli = parser.parse_args(argv)
    torch.set_num_threads(1)
    if cli.random_init:
        torch.manual_seed(cli.init_seed)
        model = VJEPA2Model(VJEPA2Config.from_pretrained(cli.encoder))
    else:
        model = VJEPA2Model.from_pretrained(cli.encoder)
    args = ProbeArgs(
        num_frames=cli.frames, frame_step=cli.frame_step, num_segments=1, num_views=1, resolution=cli.resolution
    )
    train_clips, train_labels = load_split(cli.world, "train", args)
    test_clips, test_labels = load_split(cli.world, "test", args)
    results = diagnose(model.encoder, model.config, train_clips, train_labels, test_clips, test_labels)
    results.update(encoder=str(cli.encoder), random_init=cli.random_init)
    print(json.dumps(results))
    cli.output.parent.mkdir(parents=True, exist_ok=True)
    cli.output.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    np.random.seed(0)
    main()
