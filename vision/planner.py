"""Planning with a latent world model: the cross-entropy method (CEM) over action sequences, a receding-horizon
(MPC) loop around it, and sub-goal schedules (paper section 3.2, appendix B.2).

The planner knows nothing of a particular model: it is handed `imagine(actions) -> features`, which maps a batch
of candidate action sequences `(S, horizon, action_dim)` to the imagined features of the last step `(S, N, D)`,
and the goal's features `(N, D)`. The energy of a candidate is the mean L1 distance between both, layer-normed
(equation 5 of the paper). `VJEPA2WorldModel.plan` supplies `imagine` for V-JEPA 2-AC; tests supply a toy world.

CEM as the paper describes it and the reference code runs it (facebookresearch/vjepa2
`notebooks/utils/mpc_utils.py`, `cem`; `world_model_wrapper.py`, `mpc_args`): a Gaussian per step and action
dimension starts at mean 0 and std `init_std`; each iteration samples `samples` sequences, scores all of them in
one call of `imagine`, and moves mean and std towards those of the `top_k` lowest energies, keeping a fraction
`momentum_mean` / `momentum_std` of the previous value; the final mean is the plan. Samples are projected onto the
action constraint before they are scored: the reference clips every motion coordinate to a box of half-width
`max_norm` (0.05), the paper samples in the L1 ball of radius 0.075. The gripper is its own dimension: it is kept
in its own range and never counts towards the motion constraint.

Warm start (`CEMConfig.warm_start`, a planner prior for the receding-horizon loop, off by default): the paper and the
reference code start every plan's Gaussians at mean 0, so a dimension the energy is indifferent to (in the tiny Fetch
model: the gripper) ends wherever its top-k samples happen to average, a fresh coin flip at every step. "shift"
starts from the previous plan moved one step on (its first action was executed; the new last step at 0), as
DINO-WM's MPC hands the unexecuted remainder to the next CEM; at horizon 1 it is the same as "none". "hold_gripper"
starts the gripper dimension of every step at the gripper command executed last (motion still at 0), so an
indifferent energy keeps the grip instead of flipping it. Either prior only moves where the search starts: the
model still has to read the gripper for the plan to move away from it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import accumulate

import torch
import torch.nn.functional as F

CONSTRAINTS = ("box", "l1")
WARM_STARTS = ("none", "shift", "hold_gripper")


@dataclass
class CEMConfig:
    """Settings of the cross-entropy method.

    Args:
        samples: candidate sequences per iteration (paper: 800; reference code: 400).
        top_k: elites whose statistics update the Gaussians (10 in both).
        iterations: refinement iterations (10 in both).
        horizon: actions per sequence (paper: 1; reference code: 2).
        momentum_mean: fraction of the previous mean kept at each update (reference: 0.15).
        momentum_std: fraction of the previous std kept at each update (reference: 0.15).
        init_std: std of the Gaussians before the first iteration (paper: unit variance).
        constraint: "box" (every motion coordinate clipped to [-max_norm, max_norm], as the reference code does)
            or "l1" (motion part projected onto the L1 ball of radius max_norm, as the paper says).
        max_norm: half-width of the box or radius of the L1 ball, in the model's action units (reference box
            0.05; paper ball 0.075, both in metres of end-effector displacement).
        gripper_dim: index of the gripper command in an action (None: no gripper); kept in `gripper_range`.
        gripper_range: (low, high) of the gripper command.
        seed: seed of the sampling noise; the same seed and inputs give the same plan.
        action_map: optional 2x2 matrix ((a, b), (c, d)) applied to the planned motion (dx, dy) before the plan is
            returned and projected onto the constraint again: a camera calibration mapping the model's inferred
            action axes to the robot's (`scripts/calibrate_camera.py` fits one; paper appendix B.4). None: as planned.
        warm_start: where an MPC step's search starts (`warm_start_mean`): "none" (mean 0 at every step, as the
            paper and the reference code), "shift" (the previous plan one step on) or "hold_gripper" (the gripper
            dimension at the gripper command executed last; needs `gripper_dim`).
        gripper_candidates: gripper commands tried after the last iteration with the final mean's motion held
            fixed: the plan keeps whichever of its own gripper command and these scores the lowest energy (the
            same command at every step of the horizon), at the cost of one more batched `imagine` call. () (the
            default, as the paper and the reference code): no such search. Why: where the grip changes the energy
            far less than the motion does, the samples' motion noise decides which are elites and the gripper
            dimension ends wherever they happen to average; with the motion fixed, the model's energy alone
            compares the grips (needs `gripper_dim`; every candidate within `gripper_range`).
    """

    samples: int = 800
    top_k: int = 10
    iterations: int = 10
    horizon: int = 1
    momentum_mean: float = 0.15
    momentum_std: float = 0.15
    init_std: float = 1.0
    constraint: str = "box"
    max_norm: float = 0.05
    gripper_dim: int | None = None
    gripper_range: tuple[float, float] = (-1.0, 1.0)
    seed: int = 0
    action_map: tuple[tuple[float, float], tuple[float, float]] | None = None
    warm_start: str = "none"
    gripper_candidates: tuple[float, ...] = ()

    def __post_init__(self):
        errors = []
        self.gripper_candidates = tuple(float(c) for c in self.gripper_candidates)
        if self.gripper_candidates and self.gripper_dim is None:
            errors.append("CEMConfig.gripper_candidates need gripper_dim (which dimension is the gripper)")
        outside = [c for c in self.gripper_candidates
                   if not (self.gripper_range[0] <= c <= self.gripper_range[1] and math.isfinite(c))]
        if outside:
            errors.append(f"CEMConfig.gripper_candidates {outside} are outside gripper_range {self.gripper_range}")
        if self.warm_start not in WARM_STARTS:
            errors.append(f"CEMConfig.warm_start must be one of {WARM_STARTS}, got {self.warm_start!r}")
        elif self.warm_start == "hold_gripper" and self.gripper_dim is None:
            errors.append("CEMConfig.warm_start='hold_gripper' needs gripper_dim (which dimension is the gripper)")
        if self.action_map is not None:
            matrix = torch.as_tensor(self.action_map, dtype=torch.float64)
            if matrix.shape != (2, 2) or not torch.isfinite(matrix).all():
                errors.append(f"CEMConfig.action_map must be a finite 2x2 matrix, got {self.action_map!r}")
            else:
                self.action_map = tuple(tuple(float(v) for v in row) for row in matrix.tolist())
        for name in ("samples", "top_k", "iterations", "horizon"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                errors.append(f"CEMConfig.{name} must be an integer >= 1, got {value!r}")
        if isinstance(self.top_k, int) and isinstance(self.samples, int) and self.top_k > self.samples:
            errors.append(f"CEMConfig.top_k={self.top_k} must not exceed samples={self.samples}")
        for name in ("momentum_mean", "momentum_std"):
            if not 0.0 <= getattr(self, name) < 1.0:
                errors.append(f"CEMConfig.{name} must be in [0, 1), got {getattr(self, name)}")
        if self.init_std <= 0 or self.max_norm <= 0:
            errors.append(f"CEMConfig.init_std and max_norm must be > 0, got {self.init_std} and {self.max_norm}")
        if self.constraint not in CONSTRAINTS:
            errors.append(f"CEMConfig.constraint must be one of {CONSTRAINTS}, got {self.constraint!r}")
        low, high = self.gripper_range
        if low >= high:
            errors.append(f"CEMConfig.gripper_range must be (low, high) with low < high, got {self.gripper_range}")
        if errors:
            raise ValueError("; ".join(errors))

    @property
    def predictions_per_action(self) -> int:
        """Imagined steps the planner pays for one planned action (one batched call per step and iteration, and
        one for the gripper candidates)."""
        grips = len(self.gripper_candidates) + 1 if self.gripper_candidates else 0
        return (self.samples * self.iterations + grips) * self.horizon


def l1_energy(imagined: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
    """Equation 5: mean L1 distance between layer-normed imagined features `(S, N, D)` and goal features `(N, D)`;
    returns `(S,)`. Layer norm without affine parameters, the space V-JEPA 2-AC predicts in (idempotent on
    features that are already normalized)."""
    imagined = F.layer_norm(imagined, (imagined.shape[-1],))
    goal = F.layer_norm(goal, (goal.shape[-1],))
    return (imagined - goal.unsqueeze(0)).abs().flatten(1).mean(1)


def project_l1_ball(vectors: torch.Tensor, radius: float) -> torch.Tensor:
    """Euclidean projection of each row of `(..., d)` onto the L1 ball of `radius` (Duchi et al. 2008)."""
    flat = vectors.reshape(-1, vectors.shape[-1])
    magnitude = flat.abs()
    outside = magnitude.sum(1) > radius
    if not outside.any():
        return vectors
    # Soft-threshold by the theta that brings the L1 norm down to the radius.
    ordered, _ = magnitude.sort(1, descending=True)
    cumulative = ordered.cumsum(1) - radius
    index = torch.arange(1, flat.shape[1] + 1, dtype=flat.dtype, device=flat.device)
    count = (ordered - cumulative / index > 0).sum(1, keepdim=True).clamp(min=1)
    theta = cumulative.gather(1, count - 1) / count.to(flat.dtype)
    shrunk = flat.sign() * (magnitude - theta).clamp(min=0)
    return torch.where(outside.unsqueeze(1), shrunk, flat).reshape(vectors.shape)


def constrain(actions: torch.Tensor, config: CEMConfig) -> torch.Tensor:
    """Project `(..., action_dim)` actions onto the configured motion constraint and the gripper range."""
    action_dim = actions.shape[-1]
    motion = [d for d in range(action_dim) if d != _gripper_index(config, action_dim)]
    result = actions.clone()
    if config.constraint == "box":
        result[..., motion] = actions[..., motion].clamp(-config.max_norm, config.max_norm)
    else:
        result[..., motion] = project_l1_ball(actions[..., motion], config.max_norm)
    if len(motion) < action_dim:
        gripper = _gripper_index(config, action_dim)
        result[..., gripper] = actions[..., gripper].clamp(*config.gripper_range)
    return result


def _gripper_index(config: CEMConfig, action_dim: int) -> int | None:
    if config.gripper_dim is None:
        return None
    if not -action_dim <= config.gripper_dim < action_dim:
        raise ValueError(f"CEMConfig.gripper_dim={config.gripper_dim} is outside an action of {action_dim} dims")
    return config.gripper_dim % action_dim


@dataclass
class PlanResult:
    """A plan: `actions` `(horizon, action_dim)` (the final mean), the energy of the best sample of each
    iteration, and how many times `imagine` was called."""

    actions: torch.Tensor
    best_energy: list[float]
    imagine_calls: int


@torch.no_grad()
def cem_plan(
    imagine: Callable[[torch.Tensor], torch.Tensor],
    goal_features: torch.Tensor,
    action_dim: int,
    config: CEMConfig,
    init_mean: torch.Tensor | None = None,
) -> PlanResult:
    """Minimize `l1_energy(imagine(actions), goal_features)` over action sequences with CEM.

    Args:
        imagine: `(S, horizon, action_dim)` candidate actions -> `(S, N, D)` imagined features after the last one.
        goal_features: `(N, D)` features of the goal image.
        action_dim: features of one action.
        config: CEM settings.
        init_mean: `(horizon, action_dim)` mean of the Gaussians before the first iteration (`warm_start_mean`);
            None: 0, as the paper.
    """
    if goal_features.ndim != 2:
        raise ValueError(f"goal_features must be (tokens, dim), got {tuple(goal_features.shape)}")
    _gripper_index(config, action_dim)
    generator = torch.Generator().manual_seed(config.seed)
    shape = (config.horizon, action_dim)
    if init_mean is None:
        mean = torch.zeros(shape)
    elif tuple(init_mean.shape) != shape or not torch.isfinite(init_mean).all():
        raise ValueError(f"init_mean must be finite and (horizon, action_dim) = {shape}, got {tuple(init_mean.shape)}")
    else:
        mean = init_mean.detach().to("cpu", torch.float32).clone()
    std = torch.full(shape, float(config.init_std))
    best_energy, calls = [], 0
    for _ in range(config.iterations):
        noise = torch.randn((config.samples, *shape), generator=generator)
        candidates = constrain(mean + std * noise, config)
        imagined = imagine(candidates.to(goal_features.device, goal_features.dtype))
        calls += 1
        if imagined.ndim != 3 or imagined.shape[0] != config.samples or imagined.shape[1:] != goal_features.shape:
            raise ValueError(
                f"imagine must return ({config.samples}, {', '.join(map(str, goal_features.shape))}) features "
                f"(samples, goal tokens, goal dim), got {tuple(imagined.shape)}"
            )
        energy = l1_energy(imagined.float(), goal_features.float()).cpu()
        order = energy.argsort()[: config.top_k]
        elites = candidates[order]
        best_energy.append(float(energy[order[0]]))
        mean = config.momentum_mean * mean + (1 - config.momentum_mean) * elites.mean(0)
        std = config.momentum_std * std + (1 - config.momentum_std) * elites.std(0, unbiased=False)
    plan = constrain(mean, config)
    if config.gripper_candidates:
        plan = _best_grip(imagine, goal_features, plan, config)
        calls += 1
    return PlanResult(constrain(apply_action_map(plan, config.action_map), config), best_energy, calls)


def _best_grip(imagine, goal_features: torch.Tensor, plan: torch.Tensor, config: CEMConfig) -> torch.Tensor:
    """`plan` `(horizon, action_dim)` with the gripper command of whichever of its own and
    `config.gripper_candidates` (at every step) gives the lowest energy, its motion unchanged; ties keep the plan's."""
    gripper = _gripper_index(config, plan.shape[-1])
    candidates = plan.unsqueeze(0).repeat(len(config.gripper_candidates) + 1, 1, 1)
    candidates[1:, :, gripper] = torch.tensor(config.gripper_candidates).unsqueeze(1)
    energy = l1_energy(imagine(candidates.to(goal_features.device, goal_features.dtype)).float(), goal_features.float())
    return candidates[int(energy.cpu().argmin())]


def warm_start_mean(
    config: CEMConfig,
    action_dim: int,
    previous_plan: torch.Tensor | None = None,
    executed: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """The initial CEM mean `(horizon, action_dim)` of the next MPC step under `config.warm_start`, or None (mean 0).

    Args:
        config: the planner's settings (its `warm_start`, `horizon`, `gripper_dim`).
        action_dim: features of one action.
        previous_plan: `(horizon, action_dim)` the last plan (None at an episode's first step: "shift" starts at 0).
        executed: `(action_dim,)` the action executed last (None: nothing commanded yet, "hold_gripper" starts at 0).
            Its gripper command is kept in `gripper_range`.
    """
    if config.warm_start == "none":
        return None
    shape = (config.horizon, action_dim)
    mean = torch.zeros(shape)
    if config.warm_start == "shift":
        if previous_plan is not None:
            if tuple(previous_plan.shape) != shape:
                raise ValueError(f"previous_plan must be (horizon, action_dim) = {shape}, got {tuple(previous_plan.shape)}")
            mean[:-1] = previous_plan[1:].detach().to("cpu", torch.float32)
        return mean
    if executed is not None:
        if tuple(executed.shape) != (action_dim,):
            raise ValueError(f"executed must be (action_dim,) = ({action_dim},), got {tuple(executed.shape)}")
        gripper = _gripper_index(config, action_dim)
        mean[:, gripper] = float(executed[gripper].clamp(*config.gripper_range))
    return mean


def apply_action_map(actions: torch.Tensor, action_map=None) -> torch.Tensor:
    """`(..., action_dim)` actions with their first two coordinates (dx, dy) replaced by `action_map @ (dx, dy)`;
    the other coordinates (dz, gripper) are kept. None returns the actions unchanged."""
    if action_map is None:
        return actions
    if actions.shape[-1] < 2:
        raise ValueError(f"an action map needs actions with >= 2 coordinates (dx, dy), got {tuple(actions.shape)}")
    matrix = torch.as_tensor(action_map, dtype=actions.dtype, device=actions.device)
    mapped = actions.clone()
    mapped[..., :2] = actions[..., :2] @ matrix.T
    return mapped


@dataclass
class SubgoalSchedule:
    """Goals in order, each pursued for a fixed number of MPC steps (pick-and-place: 4, 10 and 4, appendix B.2).

    Args:
        goals: one item per sub-goal (features, images, or anything the caller plans towards).
        steps: MPC steps spent on each goal; the last goal stays active after its steps run out.
    """

    goals: Sequence
    steps: Sequence[int]

    def __post_init__(self):
        if not self.goals or len(self.goals) != len(self.steps):
            raise ValueError(f"a schedule needs one step count per goal, got {len(self.goals)} goals and {len(self.steps)} counts")
        if any(not isinstance(s, int) or s < 1 for s in self.steps):
            raise ValueError(f"every sub-goal needs >= 1 steps, got {list(self.steps)}")

    @property
    def total_steps(self) -> int:
        return sum(self.steps)

    def index_at(self, step: int) -> int:
        """Which goal is active at MPC step `step` (0-based)."""
        for index, end in enumerate(accumulate(self.steps)):
            if step < end:
                return index
        return len(self.goals) - 1

    def goal_at(self, step: int):
        return self.goals[self.index_at(step)]


def run_mpc(
    plan: Callable[[object, object, int], torch.Tensor],
    execute: Callable[[torch.Tensor], object],
    observation,
    schedule: SubgoalSchedule,
    steps: int | None = None,
    on_step: Callable[[int, torch.Tensor, object], None] | None = None,
) -> list[torch.Tensor]:
    """Receding-horizon control: plan from the current observation towards the active goal, execute only the
    first action, observe, replan.

    Args:
        plan: `(observation, goal, step) -> (horizon, action_dim)` actions.
        execute: runs one action and returns the next observation.
        observation: the first observation.
        schedule: the goals and how long each is pursued.
        steps: MPC steps (default: the schedule's total).
        on_step: called after every executed step with (step, action, new observation).

    Returns:
        the executed actions.
    """
    executed = []
    for step in range(schedule.total_steps if steps is None else steps):
        action = plan(observation, schedule.goal_at(step), step)[0]
        observation = execute(action)
        executed.append(action)
        if on_step is not None:
            on_step(step, action, observation)
    return executed


__all__ = [
    "CONSTRAINTS",
    "WARM_STARTS",
    "CEMConfig",
    "PlanResult",
    "SubgoalSchedule",
    "apply_action_map",
    "cem_plan",
    "constrain",
    "l1_energy",
    "project_l1_ball",
    "run_mpc",
    "warm_start_mean",
]
