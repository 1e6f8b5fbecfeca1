"""Looking inside an action-conditioned world model (paper section 4.2 Figure 9, appendix B.3-B.4): the energy
landscape of one-step predictions over planar actions, actions inferred by energy minimization and the 2x2 map
from inferred to true actions that a camera position induces, and random planar trajectories in the simulator
to measure them on.

Everything here works on any `VJEPA2WorldModel` (the tests use tiny random ones): a model that understands
actions has its energy minimum near the action that really led from the start frame to the goal frame; a model
that does not has it no closer than a random guess, which `random_guess_distance` measures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from vjepa_vlm.data.ac_dataset import center_crop_box
from vjepa_vlm.data.pretrain_dataset import crop_and_normalize
from vjepa_vlm.data.robot_play import WORKSPACE_XY
from vjepa_vlm.eval.planning import FRAME_SKIP, execute
from vjepa_vlm.vision.planner import l1_energy


def action_grid(extent: float, points: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A square grid of planar actions: the `(points,)` axis values in [-extent, extent] and the `(points**2, 2)`
    (dx, dy) pairs, dx varying fastest (row-major over dy, dx, as an image of the landscape is laid out)."""
    if extent <= 0 or not isinstance(points, int) or points < 2:
        raise ValueError(f"the action grid needs extent > 0 and an integer points >= 2, got {extent} and {points!r}")
    axis = torch.linspace(-extent, extent, points)
    dy, dx = torch.meshgrid(axis, axis, indexing="ij")
    return axis, torch.stack((dx.flatten(), dy.flatten()), dim=1)


@torch.no_grad()
def energy_landscape(
    model,
    features: torch.Tensor,
    state: torch.Tensor,
    goal: torch.Tensor,
    planar: torch.Tensor,
    base_action: torch.Tensor,
    batch_size: int = 512,
) -> torch.Tensor:
    """L1 energy (equation 5) between the one-step prediction from `features` under each planar action and `goal`.

    Args:
        model: a `VJEPA2WorldModel`.
        features: `(N, D)` features of the start frame.
        state: `(state_dim,)` end-effector state at the start frame.
        goal: `(N, D)` features of the goal frame.
        planar: `(G, 2)` (dx, dy) actions to score.
        base_action: `(action_dim,)`; every scored action is this one with its first two coordinates replaced
            (e.g. dz = 0 and the true gripper command).

    Returns:
        `(G,)` energies.
    """
    action_dim = model.config.predictor_config.action_dim
    if tuple(base_action.shape) != (action_dim,) or action_dim < 2:
        raise ValueError(f"base_action must be (action_dim={action_dim},) with action_dim >= 2, got {tuple(base_action.shape)}")
    if planar.ndim != 2 or planar.shape[1] != 2:
        raise ValueError(f"planar actions must be (G, 2), got {tuple(planar.shape)}")
    energies = []
    for chunk in planar.split(batch_size):
        actions = base_action.expand(len(chunk), -1).clone()
        actions[:, :2] = chunk
        count = len(chunk)
        predicted = model.predict_next(
            features.expand(count, 1, *features.shape), actions.unsqueeze(1), state.expand(count, 1, -1)
        )
        energies.append(l1_energy(predicted.float(), goal.float()))
    return torch.cat(energies)


def random_guess_distance(planar: torch.Tensor, true_xy: torch.Tensor) -> float:
    """Mean distance from `true_xy` `(2,)` to a grid point drawn uniformly: what an argmin that knows nothing
    about actions scores on average."""
    return float((planar - true_xy).norm(dim=1).mean())


def direction_cosine(planar: torch.Tensor, target_xy: torch.Tensor) -> torch.Tensor:
    """Cosine between each `(G, 2)` planar action and `target_xy` `(2,)`, 0 for a zero action or target: whether a
    one-step move heads toward a goal that is further than one step away (a planner needs only the direction)."""
    norms = planar.norm(dim=-1) * target_xy.norm()
    return torch.where(norms > 0, (planar @ target_xy) / norms.clamp_min(1e-12), torch.zeros_like(norms))


def fit_action_map(inferred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """The 2x2 matrix M minimizing sum ||M inferred_i - true_i||^2 (least squares; appendix B.4).

    Args:
        inferred, true: `(P, 2)` planar actions, P >= 2 and the inferred ones not all on one line.
    """
    if inferred.ndim != 2 or inferred.shape[1] != 2 or inferred.shape != true.shape or len(inferred) < 2:
        raise ValueError(f"inferred and true must both be (P >= 2, 2), got {tuple(inferred.shape)} and {tuple(true.shape)}")
    solution = torch.linalg.lstsq(inferred.double(), true.double()).solution  # inferred @ X = true, X = M^T
    return solution.T.float()


@dataclass
class MapSummary:
    """What a fitted 2x2 action map says about the camera.

    Args:
        rotation_deg: angle of the rotation U V^T nearest to the map (SVD M = U S V^T), in degrees, in (-180, 180].
        reflection: det(U V^T) < 0: the inferred axes are mirrored, and `rotation_deg` is that of U V^T with V's
            last column negated.
        condition_number: largest / smallest singular value (1: a rotation times a uniform scale).
        singular_values: both singular values (the map's scales along its principal axes).
    """

    rotation_deg: float
    reflection: bool
    condition_number: float
    singular_values: tuple[float, float]


def summarize_map(matrix: torch.Tensor) -> MapSummary:
    u, s, vh = torch.linalg.svd(matrix.double())
    reflection = bool(torch.det(u @ vh) < 0)
    if reflection:
        vh = vh.clone()
        vh[-1] = -vh[-1]
    rotation = u @ vh
    angle = math.degrees(math.atan2(float(rotation[1, 0]), float(rotation[0, 0])))
    smallest = float(s[-1])
    return MapSummary(
        rotation_deg=angle,
        reflection=reflection,
        condition_number=float(s[0]) / smallest if smallest > 0 else math.inf,
        singular_values=(float(s[0]), float(s[1])),
    )


def encode_rendered(model, frames: np.ndarray, chunk: int = 64) -> torch.Tensor:
    """uint8 `(T, H, W, 3)` rendered frames -> `(T, N, D)` features, center-cropped to the model's crop size as
    the world model's evaluation and the planner see them."""
    size = model.config.predictor_config.crop_size
    pixels = crop_and_normalize(frames, center_crop_box(*frames.shape[1:3]), size)
    return torch.cat([model.encode_frames(part.unsqueeze(0))[0] for part in pixels.split(chunk)])


@dataclass
class Trajectory:
    """A recorded planar trajectory: `frames` uint8 `(T + 1, H, W, 3)`, `states` `(T + 1, state_dim)` and the
    `actions` `(T, 4)` (dx, dy, dz, gripper in summed agent-step units) between them."""

    frames: np.ndarray
    states: np.ndarray
    actions: np.ndarray


def random_planar_trajectory(
    env, steps: int, rng: np.random.Generator, magnitude: float = 1.5, frame_skip: int = FRAME_SKIP
) -> Trajectory:
    """Random (dx, dy) agent steps at constant height with the gripper command at 0, each coordinate uniform in
    [-magnitude, magnitude] (1 unit = 5 cm, agent-step units as `eval.planning` uses); a step that would leave the
    play workspace (`WORKSPACE_XY`) has that coordinate's sign flipped, so the arm stays where play data was
    recorded. The env must already be reset."""
    if steps < 1 or magnitude <= 0:
        raise ValueError(f"steps must be >= 1 and magnitude > 0, got {steps} and {magnitude}")
    limits = np.array(WORKSPACE_XY)
    frames, states, actions = [env.render()], [env.state()], []
    for _ in range(steps):
        move = rng.uniform(-magnitude, magnitude, size=2)
        target = states[-1][:2] + move * 0.05
        outside = (target < limits[:, 0]) | (target > limits[:, 1])
        move[outside] = -move[outside]
        action = np.array([move[0], move[1], 0.0, 0.0], dtype=np.float32)
        execute(env, action, frame_skip)
        actions.append(action)
        frames.append(env.render())
        states.append(env.state())
    return Trajectory(np.stack(frames), np.stack(states).astype(np.float32), np.stack(actions))


@torch.no_grad()
def infer_planar_actions(
    model, features: torch.Tensor, states: torch.Tensor, actions: torch.Tensor, planar: torch.Tensor
) -> torch.Tensor:
    """For every adjacent frame pair of a trajectory, the grid action of lowest energy (the action the model
    infers), with dz and gripper as recorded.

    Args:
        features: `(T + 1, N, D)`; states: `(T + 1, state_dim)`; actions: `(T, action_dim)`; planar: `(G, 2)`.

    Returns:
        `(T, 2)` inferred (dx, dy).
    """
    inferred = []
    for t in range(len(actions)):
        energy = energy_landscape(model, features[t], states[t], features[t + 1], planar, actions[t])
        inferred.append(planar[int(energy.argmin())])
    return torch.stack(inferred)


__all__ = [
    "MapSummary", "Trajectory", "action_grid", "direction_cosine", "encode_rendered", "energy_landscape",
    "fit_action_map",
    "infer_planar_actions", "random_guess_distance", "random_planar_trajectory", "summarize_map",
]
