"""Goal-conditioned behaviour cloning on frozen encoder features: the Octo-style baseline of paper section 4.1.

The policy maps the features of the current frame, the features of a goal frame and the current state to one
action. It sees exactly what the V-JEPA 2-AC planner sees (the same frozen encoder's layer-normed patch features,
the same state), so the comparison is between planning with a world model and regressing actions directly.

Each patch token is first projected to a few channels (shared between current and goal frames), so the flattened
grid keeps *where* things are, which is what reaching a goal position depends on; an MLP on both grids and the
state gives the action. Actions are regressed in units divided by `action_scale`, so every coordinate has a similar
range; the loss is the mean absolute error (Octo samples with a diffusion head; a deterministic head is the
simplest version of the same baseline, and L1 matches the planner's energy).

Saved as `config.json` + `model.safetensors` (`save_policy` / `load_policy`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass
class BCPolicyConfig:
    """Shape of a goal-conditioned policy.

    Args:
        tokens: patch tokens per frame (the encoder's grid, e.g. 64 for 64 px frames with 8 px patches).
        feature_dim: width of the encoder's features.
        state_dim, action_dim: the robot's state and action sizes.
        token_dim: channels each token is projected to before flattening.
        hidden_size: width of the MLP's hidden layers.
        layers: hidden layers of the MLP.
        action_scale: per action coordinate, the unit the head predicts in (e.g. the largest summed command).
    """

    tokens: int
    feature_dim: int
    state_dim: int
    action_dim: int
    token_dim: int = 8
    hidden_size: int = 256
    layers: int = 2
    action_scale: tuple[float, ...] | None = None

    def __post_init__(self):
        self.action_scale = tuple(float(v) for v in self.action_scale or (1.0,) * self.action_dim)
        problems = [f"{name} must be >= 1, got {getattr(self, name)}"
                    for name in ("tokens", "feature_dim", "state_dim", "action_dim", "token_dim", "hidden_size", "layers")
                    if getattr(self, name) < 1]
        if len(self.action_scale) != self.action_dim or min(self.action_scale) <= 0:
            problems.append(f"action_scale must hold {self.action_dim} positive numbers, got {self.action_scale}")
        if problems:
            raise ValueError("BCPolicyConfig: " + "; ".join(problems))


class GoalConditionedPolicy(nn.Module):
    """`(features, goal_features, states) -> actions`; see the module docstring.

    Args:
        config: a [`BCPolicyConfig`].
    """

    def __init__(self, config: BCPolicyConfig):
        super().__init__()
        self.config = config
        self.token_proj = nn.Linear(config.feature_dim, config.token_dim)
        width = 2 * config.tokens * config.token_dim + config.state_dim
        layers: list[nn.Module] = []
        for _ in range(config.layers):
            layers += [nn.Linear(width, config.hidden_size), nn.GELU()]
            width = config.hidden_size
        layers.append(nn.Linear(width, config.action_dim))
        self.head = nn.Sequential(*layers)
        self.register_buffer("action_scale", torch.tensor(config.action_scale), persistent=False)

    def forward(self, features: torch.Tensor, goal_features: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """`(B, tokens, feature_dim)` current and goal features and `(B, state_dim)` states -> `(B, action_dim)`
        actions in the robot's units."""
        config = self.config
        expected = (config.tokens, config.feature_dim)
        for name, tensor in (("features", features), ("goal_features", goal_features)):
            if tensor.ndim != 3 or tuple(tensor.shape[1:]) != expected:
                raise ValueError(f"{name} must be (B, {expected[0]}, {expected[1]}), got {tuple(tensor.shape)}")
        if states.ndim != 2 or states.shape[1] != config.state_dim:
            raise ValueError(f"states must be (B, state_dim={config.state_dim}), got {tuple(states.shape)}")
        grids = [self.token_proj(f).flatten(1) for f in (features, goal_features)]
        return self.head(torch.cat([*grids, states], dim=1)) * self.action_scale



def bc_loss(predicted: torch.Tensor, actions: torch.Tensor, action_scale: torch.Tensor) -> torch.Tensor:
    """Mean absolute error of `(B, action_dim)` actions, in `action_scale` units."""
    return ((predicted - actions) / action_scale).abs().mean()


def save_policy(policy: GoalConditionedPolicy, directory: str | Path, extra: dict | None = None) -> None:
    """`config.json` (the policy's config and `extra`, e.g. where its encoder comes from) and the weights."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_FILE).write_text(json.dumps({"policy": asdict(policy.config), **(extra or {})}, indent=1))
    save_file({k: v.detach().contiguous().cpu() for k, v in policy.state_dict().items()}, directory / WEIGHTS_FILE)


def load_policy(directory: str | Path) -> tuple[GoalConditionedPolicy, dict]:
    """The policy saved in `directory` (eval mode) and the rest of its config.json."""
    directory = Path(directory)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory} is not a saved behaviour-cloning policy (no {name})")
    saved = json.loads((directory / CONFIG_FILE).read_text())
    if "policy" not in saved:
        raise ValueError(f"{directory / CONFIG_FILE} has no 'policy' section")
    policy = GoalConditionedPolicy(BCPolicyConfig(**saved.pop("policy")))
    policy.load_state_dict(load_file(directory / WEIGHTS_FILE), strict=True)
    return policy.eval(), saved


__all__ = ["BCPolicyConfig", "GoalConditionedPolicy", "bc_loss", "load_policy", "save_policy"]
