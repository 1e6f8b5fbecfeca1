"""The V-JEPA 2 objective: mask-denoising in representation space (section 2.1, equation 1).

The context encoder sees only the context tokens; the predictor fills the target positions; the
targets come from an EMA copy of the encoder on the full clip, layer-normed without affine parameters,
under stop-gradient. The L1 loss is averaged over the mask configs of the batch.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from vjepa_vlm.vision.encoder import gather_tokens


def weight_decay_param_groups(model: nn.Module, lr_scale: float = 1.0) -> list[dict]:
    """Two AdamW groups: biases and 1-D parameters (norms, tokens of shape (D,)) get no weight decay.

    Frozen parameters (requires_grad False) are left out. `lr_scale` is carried into both groups for
    `OptimizerScheduler`, so stages can give each module its own learning rate.
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if name.endswith("bias") or param.ndim <= 1 else decay).append(param)
    groups = [
        {"params": decay, "apply_weight_decay": True, "lr_scale": lr_scale},
        {"params": no_decay, "apply_weight_decay": False, "lr_scale": lr_scale},
    ]
    return [group for group in groups if group["params"]]


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """target <- momentum * target + (1 - momentum) * online, parameter by parameter."""
    target_params = list(target.parameters())
    online_params = list(online.parameters())
    if len(target_params) != len(online_params):
        raise ValueError(f"EMA target has {len(target_params)} parameters but the online model {len(online_params)}")
    torch._foreach_lerp_(target_params, [p.detach() for p in online_params], 1.0 - momentum)


def jepa_l1_loss(predictions: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
    """Mean absolute error per mask config, averaged over configs."""
    if len(predictions) != len(targets) or not predictions:
        raise ValueError(f"got {len(predictions)} predictions for {len(targets)} targets")
    return torch.stack([(p - t).abs().mean() for p, t in zip(predictions, targets)]).mean()


class VJEPA2Pretrainer(nn.Module):
    """Wraps a VJEPA2Model (encoder + predictor) with its EMA target for pretraining.

    `target` is a frozen deep copy of the whole model: only its encoder is trained by EMA, and its
    predictor is synced from the online model when saving, so the target directory is itself a complete
    `VJEPA2Model` checkpoint (the encoder that probes and VLMs use).

    Args:
        model: a `VJEPA2Model` with `.encoder(pixel_values, context_indices)` and
            `.predictor(context_tokens, context_indices, target_indices, grid_size, mask_index)`; each
            mask config gets its own learnable mask token, as in the reference implementation.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.online = model
        self.target = copy.deepcopy(model)
        self.target.requires_grad_(False)
        self.target.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.target.eval()
        return self

    @torch.no_grad()
    def update_target(self, momentum: float) -> None:
        ema_update(self.target.encoder, self.online.encoder, momentum)

    def sync_target_predictor(self) -> None:
        self.target.predictor.load_state_dict(self.online.predictor.state_dict())

    @torch.no_grad()
    def target_features(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (layer-normed targets, raw target-encoder features) for the full clip."""
        features = self.target.encoder(pixel_values).last_hidden_state
        return F.layer_norm(features, (features.shape[-1],)), features

    def forward(self, pixel_values: torch.Tensor, masks: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Return {"loss", "target_std", "context_std", "target_rank"} for a batch and its per-config masks.

        The two std values are the per-dimension standard deviation over batch and tokens of the raw
        target and context features, averaged over dimensions: complete collapse drives them toward zero.
        `target_rank` is the effective rank of the raw target features: dimensional collapse (features
        squeezed into a few directions while their std stays up) drives it toward 1.
        """
        targets_full, raw_targets = self.target_features(pixel_values)
        predictions, targets, context_std = [], [], []
        for mask_index, mask in enumerate(masks):
            context_indices, target_indices = mask["context_indices"], mask["target_indices"]
            encoded = self.online.encoder(pixel_values, context_indices=context_indices)
            predicted = self.online.predictor(
                encoded.last_hidden_state, context_indices, target_indices, encoded.grid_size, mask_index=mask_index
            )
            predictions.append(predicted)
            targets.append(gather_tokens(targets_full, target_indices))
            context_std.append(feature_std(encoded.last_hidden_state.detach()))
        return {
            "loss": jepa_l1_loss(predictions, targets),
            "target_std": feature_std(raw_targets),
            "context_std": torch.stack(context_std).mean(),
            "target_rank": effective_rank(raw_targets),
        }


def effective_rank(features: torch.Tensor) -> torch.Tensor:
    """Participation ratio (sum λ)² / sum λ² of the eigenvalues λ of the feature covariance over batch and
    tokens: D for isotropic features, 1 when all variance lies in one direction."""
    eigenvalues = torch.linalg.eigvalsh(torch.cov(features.detach().float().flatten(0, -2).T)).clamp(min=0)
    return eigenvalues.sum() ** 2 / eigenvalues.square().sum().clamp(min=torch.finfo(torch.float32).tiny)


def feature_std(features: torch.Tensor) -> torch.Tensor:
    """Std of each feature dimension over batch and tokens, averaged over dimensions."""
    return features.float().flatten(0, -2).std(dim=0).mean()
