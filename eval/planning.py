"""Closed-loop evaluation of planners and policies in the Fetch simulator with image goals (paper section 4,
Tables 2-3, Figure 8): tasks, how their goal images are made, success criteria, and episodes.

One **agent step** is `frame_skip` simulator steps (5 at 25 Hz: the 5 fps the tiny world model is trained at).
Every policy returns one action per agent step in the world model's units: dx, dy, dz, gripper, each the *sum*
of the recorded per-step commands over those simulator steps (as `data/ac_dataset.summed_actions` builds them),
so 1 unit of motion is 5 cm; it is executed as `frame_skip` equal simulator steps, each clipped to the Fetch box.

**Goal configurations** come from the scripted true-state controller (`Oracle`) run from the episode's start
without rendering: it does the task (or each sub-task), the frame at the end of each phase is rendered as a goal
image, the gripper and block positions there are the goal configuration, and the simulator is put back to the
start (full state restored). A draw whose goal is degenerate (the block did not move enough, or was not lifted)
is redrawn from another reset seed; every episode's seeds are functions of (seed, episode index).

**Tasks and success** (at the end of the episode, distances in metres, 3-D):

    reach               gripper within 5 cm of the goal gripper position (goal 8-25 cm away)
    push                block within 5 cm of its goal on the table (pushed 8-15 cm by the oracle)
    push_subgoal        push with a first goal image: the closed fingers just behind the block (6 steps), then
                        push's goal image (9 steps); the same draws, final goals and criterion as push
    grasp               block >= 3 cm above its resting height (goal: picked and lifted ~10 cm)
    grasp_subgoal       grasp with a first goal image: the open fingers down around the block (6 steps), then
                        grasp's goal image (6 steps); the same draws, final goals and criterion as grasp
    grasp_subgoal3      grasp in three goal images: open fingers down around the block (6 steps), the fingers
                        closed on it on the table (2 steps), grasp's goal image (4 steps)
    reach_with_object   starts holding the lifted block; block within 5 cm of its goal (carried 8-20 cm)
    pick_and_place      block within 5 cm of its goal on the table; three goal images (grasped, above the goal,
                        placed) pursued for 4, 10 and 4 steps (appendix B.2)
    pick_and_place_subgoal  pick_and_place in five goal images: grasp_subgoal3's open fingers around the block and
                        fingers closed on it, then pick_and_place's own three; the same draws, goals and criterion

The distance curve of an episode is the gripper's distance to its goal (reach) or the block's distance to its
final goal (the others), before every step and after the last. An episode that raises is recorded with its
error and counts as a failure.
"""

from __future__ import annotations

import itertools
import json
import math
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from vjepa_vlm.data.ac_dataset import center_crop_box
from vjepa_vlm.data.pretrain_dataset import crop_and_normalize
from vjepa_vlm.data.robot_play import WORKSPACE_XY
from vjepa_vlm.data.robot_sim import (
    ACTION_NAMES,
    ACTION_SCALE_M,
    CAMERAS,
    STATE_NAMES,
    FetchCamera,
)
from vjepa_vlm.vision.planner import CEMConfig, warm_start_mean

SUCCESS_M = 0.05
LIFT_M = 0.03
FRAME_SKIP = 5
# Fetch's per-simulator-step command box: a summed action moves at most frame_skip units per coordinate.
STEP_BOX = 1.0
GOAL_DRAWS = 8


@dataclass(frozen=True)
class Task:
    """A task: sub-goal step counts (one entry per goal image) and whether it starts holding the block.

    A task with a `base` splits the base task's oracle run into stages: the same draws, start, goal images at the
    base's phase ends and success criterion, with a goal image at the end of each stage; `stage_waypoints` says
    how many of the base's waypoints each stage takes (one entry per goal image).
    """

    name: str
    subgoal_steps: tuple[int, ...]
    holding_start: bool = False
    base: str | None = None
    stage_waypoints: tuple[int, ...] = ()

    def __post_init__(self):
        if (self.base is None) != (not self.stage_waypoints) or (
                self.base is not None and len(self.stage_waypoints) != len(self.subgoal_steps)):
            raise ValueError(f"task {self.name}: a base task and one stage_waypoints entry per sub-goal go together "
                             f"(base={self.base}, stage_waypoints={self.stage_waypoints}, subgoal_steps="
                             f"{self.subgoal_steps})")

    @property
    def steps(self) -> int:
        return sum(self.subgoal_steps)

    @property
    def criterion(self) -> str:
        """The task whose draws, goals and success criterion this one has: its base, or itself."""
        return self.base or self.name


TASKS = {
    task.name: task
    for task in (
        Task("reach", (10,)),
        Task("push", (15,)),
        Task("push_subgoal", (6, 9), base="push", stage_waypoints=(2, 1)),
        Task("grasp", (12,)),
        # The oracle is down around the block after 6 steps, closes in 2 and has the block up 3 steps later.
        Task("grasp_subgoal", (6, 6), base="grasp", stage_waypoints=(2, 2)),
        Task("grasp_subgoal3", (6, 2, 4), base="grasp", stage_waypoints=(2, 1, 1)),
        Task("reach_with_object", (10,), holding_start=True),
        Task("pick_and_place", (4, 10, 4)),
        # Around the block, closed on it, lifted (grasp_subgoal3's 6, 2, 4), above the target, set down and released:
        # the oracle needs 6, 2, 3, 3-4 and 3 + 2 steps (episodes 0-19); one more for each move after the grip.
        Task("pick_and_place_subgoal", (6, 2, 4, 5, 6), base="pick_and_place", stage_waypoints=(2, 1, 1, 1, 2)),
    )
}


def check_tasks(names) -> list[Task]:
    unknown = [name for name in names if name not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; expected some of {list(TASKS)}")
    return [TASKS[name] for name in names]


@dataclass
class Waypoint:
    """Move the gripper to `target` (None: stay) with the `gripper` command (per simulator step, in [-1, 1]) for at
    most `steps` agent steps or until within `tolerance`."""

    target: np.ndarray | None
    gripper: float
    steps: int
    tolerance: float = 0.01


class Oracle:
    """The scripted controller that reads the true state: follows waypoints with one summed action per agent step.

    Args:
        waypoints: in order; each phase ends when its `steps` are spent or its target is within tolerance.
        frame_skip: simulator steps per agent step (bounds an agent step's motion to frame_skip x 5 cm).
        gain: fraction of the remaining offset commanded per agent step (below 1: the mocap target lags).
    """

    def __init__(self, waypoints: list[Waypoint], frame_skip: int = FRAME_SKIP, gain: float = 1.0):
        self.waypoints, self.frame_skip, self.gain = list(waypoints), frame_skip, gain
        self.index, self.taken = 0, 0

    @property
    def done(self) -> bool:
        return self.index >= len(self.waypoints)

    def act(self, position: np.ndarray) -> np.ndarray:
        while not self.done:
            waypoint = self.waypoints[self.index]
            near = waypoint.target is not None and np.linalg.norm(waypoint.target - position) < waypoint.tolerance
            if self.taken < waypoint.steps and not near:
                break
            self.index, self.taken = self.index + 1, 0
        if self.done:
            # Hold still, and keep squeezing (or keep open): a zero gripper command relaxes the fingers' grip.
            return np.r_[np.zeros(3), self.waypoints[-1].gripper * self.frame_skip].astype(np.float32)
        waypoint = self.waypoints[self.index]
        self.taken += 1
        move = np.zeros(3) if waypoint.target is None else self.gain * (waypoint.target - position) / ACTION_SCALE_M
        limit = STEP_BOX * self.frame_skip
        return np.r_[np.clip(move, -limit, limit), waypoint.gripper * self.frame_skip].astype(np.float32)


def execute(env: FetchCamera, action: np.ndarray, frame_skip: int = FRAME_SKIP) -> None:
    """One agent step: the summed action spread evenly over `frame_skip` simulator steps, each in the Fetch box."""
    per_step = np.clip(np.asarray(action, dtype=np.float64) / frame_skip, -STEP_BOX, STEP_BOX)
    for _ in range(frame_skip):
        env.step(per_step)


def run_waypoints(env: FetchCamera, waypoints: list[Waypoint], frame_skip: int = FRAME_SKIP) -> None:
    oracle = Oracle(waypoints, frame_skip)
    while not oracle.done:
        action = oracle.act(env.state()[:3])
        if not oracle.done:
            execute(env, action, frame_skip)


# Gripper commands per simulator step (+ opens, - closes: the fingers follow a target relative to where they are).
OPEN, CLOSE = 1.0, -1.0
UP = np.array([0.0, 0.0, 1.0])


def pick_waypoints(block: np.ndarray) -> list[Waypoint]:
    """Above the block with open fingers, down around it, close, lift ~10 cm."""
    return [
        Waypoint(block + UP * 0.08, OPEN, 8),
        Waypoint(block, OPEN, 6, tolerance=0.008),
        Waypoint(None, CLOSE, 2),
        Waypoint(block + UP * 0.1, CLOSE, 6),
    ]


@dataclass
class Phase:
    """Waypoints ending in one goal image."""

    waypoints: list[Waypoint]


@dataclass
class EpisodeSetup:
    """Everything an episode starts from: the simulator state, goal images, goal configurations, seeds."""

    task: Task
    index: int
    reset_seed: int
    start_state: np.ndarray
    goal_frames: list[np.ndarray]
    goal_gripper: list[np.ndarray]
    goal_block: list[np.ndarray]
    phases: list[Phase] = field(default_factory=list)
    # The summed gripper command executed last before the start: the pick's closing one for a task that starts
    # holding the block, 0 (nothing commanded) otherwise. A robot knows what it last commanded; a warm-started
    # planner starts its gripper search there.
    start_gripper: float = 0.0

    def distance(self, env: FetchCamera) -> float:
        if self.task.criterion == "reach":
            return float(np.linalg.norm(env.state()[:3] - self.goal_gripper[-1]))
        return float(np.linalg.norm(env.block_pose()[:3] - self.goal_block[-1]))

    def success(self, env: FetchCamera) -> bool:
        if self.task.criterion == "grasp":
            return bool(env.block_pose()[2] - env.table_height >= LIFT_M)
        return self.distance(env) < SUCCESS_M


def _split_stages(phases: list[Phase], stage_waypoints: tuple[int, ...]) -> list[Phase]:
    """One phase per stage: the same waypoints in the same order, so the oracle's run is unchanged."""
    waypoints = [w for phase in phases for w in phase.waypoints]
    if sum(stage_waypoints) != len(waypoints):
        raise ValueError(f"stages of {stage_waypoints} waypoints do not cover the base task's {len(waypoints)}")
    return [Phase(waypoints[a:b]) for a, b in itertools.pairwise(itertools.accumulate((0, *stage_waypoints)))]


def _plan_phases(task: Task, env: FetchCamera, rng: np.random.Generator) -> tuple[list[Phase], np.ndarray | None]:
    """The oracle's phases towards a freshly drawn goal, from the current state, and where they mean to leave the
    block on the table (push, pick-and-place; None for the others). A split task draws as its base task does and
    gets the base's phases (`make_setup` splits them into stages)."""
    if task.base is not None:
        return _plan_phases(TASKS[task.base], env, rng)
    gripper, block, table = env.state()[:3].astype(np.float64), env.block_pose()[:3].astype(np.float64), env.table_height

    def offset(low: float, high: float, z: tuple[float, float]) -> np.ndarray:
        while True:
            vector = np.r_[rng.uniform(-high, high, 2), rng.uniform(*z)]
            if low <= np.linalg.norm(vector) <= high:
                return vector

    if task.name == "reach":
        return [Phase([Waypoint(gripper + offset(0.08, 0.25, (-0.1, 0.1)), 0.0, 10, tolerance=0.005)])], None
    if task.name == "push":
        angle = rng.uniform(0, 2 * np.pi)
        direction = np.array([np.cos(angle), np.sin(angle), 0.0])
        behind = block - direction * 0.07
        goal = block + direction * rng.uniform(0.08, 0.15)
        approach = [Waypoint(behind + UP * 0.08, CLOSE, 8), Waypoint(behind + UP * 0.005, CLOSE, 6, tolerance=0.008)]
        shove = [Waypoint(goal - direction * 0.035 + UP * 0.005, CLOSE, 12, tolerance=0.005)]
        return [Phase(approach + shove)], goal
    if task.name == "grasp":
        return [Phase(pick_waypoints(block))], None
    if task.name == "reach_with_object":
        return [Phase([Waypoint(gripper + offset(0.08, 0.2, (-0.05, 0.1)), CLOSE, 10, tolerance=0.005)])], None
    # pick_and_place: the third goal image shows the block set down and released at a point on the table.
    while True:
        target = np.r_[block[:2] + rng.uniform(-0.2, 0.2, 2), table]
        if 0.1 <= np.linalg.norm(target[:2] - block[:2]) <= 0.2:
            break
    return [
        Phase(pick_waypoints(block)),
        Phase([Waypoint(target + UP * 0.1, CLOSE, 10, tolerance=0.008)]),
        Phase([Waypoint(target + UP * 0.005, CLOSE, 6, tolerance=0.008), Waypoint(None, OPEN, 2)]),
    ], target


def _acceptable(task: Task, env: FetchCamera, start_gripper: np.ndarray, start_block: np.ndarray,
                goal_gripper: np.ndarray, goal_block: np.ndarray, intended: np.ndarray | None) -> bool:
    """Whether a drawn goal makes a real task: not already satisfied at the start, and reached as intended (a
    block knocked off course or off the table is no goal)."""
    lifted = goal_block[2] - env.table_height
    if intended is not None:
        (x0, x1), (y0, y1) = WORKSPACE_XY
        on_table = x0 <= intended[0] <= x1 and y0 <= intended[1] <= y1 and abs(lifted) < 0.01
        if not on_table or np.linalg.norm(goal_block[:2] - intended[:2]) > 0.03:
            return False
    if task.criterion == "reach":
        return np.linalg.norm(goal_gripper - start_gripper) > 2 * SUCCESS_M
    if task.criterion == "push":
        return np.linalg.norm(goal_block - start_block) > 1.5 * SUCCESS_M
    if task.criterion == "grasp":
        return lifted > 2 * LIFT_M
    if task.criterion == "reach_with_object":
        return np.linalg.norm(goal_block - start_block) > 1.5 * SUCCESS_M and lifted > LIFT_M
    return np.linalg.norm(goal_block - start_block) > 2 * SUCCESS_M


def _stage_goals(env: FetchCamera, start: np.ndarray, base_phases: list[Phase], stages: list[Phase],
                 frame_skip: int = FRAME_SKIP) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """The goal image, gripper and block position at the end of every stage, each as the base task's oracle run
    makes it; the simulator is left wherever the last run ended.

    The base task renders its goal images in one oracle run, at the end of each of its phases, and a render in the
    middle of a run perturbs the contact solver (the block ends up to 2 mm elsewhere than without it). So every
    stage end comes from an oracle run from the start that renders at each base phase end it passes, as the base's
    run does: the goals at the base's phase ends are the base's own, to the bit (one run gives them all), and a
    stage that ends inside a base phase costs one more run from the start, stopped there.
    """
    waypoints = [w for phase in base_phases for w in phase.waypoints]
    renders = list(itertools.accumulate(len(phase.waypoints) for phase in base_phases))
    ends = list(itertools.accumulate(len(stage.waypoints) for stage in stages))
    goals = {}
    for run, end in enumerate([ends[-1], *(e for e in reversed(ends) if e not in renders)]):
        if run:
            env.set_state(start)
        done = 0
        for point in [*(r for r in renders if r < end), end]:
            run_waypoints(env, waypoints[done:point], frame_skip)
            done = point
            frame = env.render()
            if point in ends and point not in goals:
                goals[point] = frame, env.state()[:3].copy(), env.block_pose()[:3].copy()
    frames, grippers, blocks = zip(*(goals[end] for end in ends), strict=True)
    return list(frames), list(grippers), list(blocks)


def make_setup(env: FetchCamera, task: Task, seed: int, index: int, frame_skip: int = FRAME_SKIP) -> EpisodeSetup:
    """Reset, (grasp first for tasks that start holding the block), draw a goal, have the oracle reach it without
    rendering, render each phase's (a split task: stage's) end as a goal image (`_stage_goals`), and restore the
    start.

    Raises:
        RuntimeError: no acceptable goal in `GOAL_DRAWS` draws.
    """
    for draw in range(GOAL_DRAWS):
        rng = np.random.default_rng([seed, index, draw])
        reset_seed = int(rng.integers(2**31))
        env.reset(seed=reset_seed)
        if task.holding_start:
            run_waypoints(env, pick_waypoints(env.block_pose()[:3].astype(np.float64)), frame_skip)
            if env.block_pose()[2] - env.table_height < LIFT_M:
                continue
        start = env.get_state()
        start_gripper, start_block = env.state()[:3].copy(), env.block_pose()[:3].copy()
        base_phases, intended = _plan_phases(task, env, rng)
        phases = _split_stages(base_phases, task.stage_waypoints) if task.base is not None else base_phases
        frames, grippers, blocks = _stage_goals(env, start, base_phases, phases, frame_skip)
        ok = _acceptable(task, env, start_gripper, start_block, grippers[-1], blocks[-1], intended)
        env.set_state(start)
        if ok:
            start_gripper = CLOSE * frame_skip if task.holding_start else 0.0
            return EpisodeSetup(task, index, reset_seed, start, frames, grippers, blocks, phases, start_gripper)
    raise RuntimeError(f"{task.name}: no acceptable goal in {GOAL_DRAWS} draws for episode {index} (seed {seed})")


class Policy:
    """What an episode asks of a method: `reset(setup)` once, then `act(env, frame, step, goal_index)` per agent
    step, returning one summed action `(4,)`."""

    name = "policy"

    def reset(self, setup: EpisodeSetup) -> None:
        self.setup = setup

    def act(self, env: FetchCamera, frame: np.ndarray, step: int, goal_index: int) -> np.ndarray:
        raise NotImplementedError


class RandomPolicy(Policy):
    """Uniform random actions in the same box the planner searches (motion) and the full gripper range."""

    name = "random"

    def __init__(self, max_norm: float, gripper_range: tuple[float, float], seed: int = 0):
        self.max_norm, self.gripper_range, self.seed = max_norm, gripper_range, seed

    def reset(self, setup: EpisodeSetup) -> None:
        super().reset(setup)
        self.rng = np.random.default_rng([self.seed, setup.index, 1])

    def act(self, env, frame, step, goal_index):
        motion = self.rng.uniform(-self.max_norm, self.max_norm, 3)
        return np.r_[motion, self.rng.uniform(*self.gripper_range)].astype(np.float32)


class OraclePolicy(Policy):
    """The upper bound: the scripted controller that made the goal images, re-run from the start with the true
    state (its phases know the goal configuration). Goals are drawn so that it can reach them, so it succeeds
    unless the physics plays out differently the second time."""

    name = "oracle"

    def __init__(self, frame_skip: int = FRAME_SKIP):
        self.frame_skip = frame_skip

    def reset(self, setup: EpisodeSetup) -> None:
        super().reset(setup)
        self.oracle = Oracle([w for phase in setup.phases for w in phase.waypoints], self.frame_skip)

    def act(self, env, frame, step, goal_index):
        return self.oracle.act(env.state()[:3])


# Fetch defaults of the planner in the world model's (summed) action units, 1 unit = 5 cm: at most 10 cm per
# coordinate and agent step (the reference clips to 5 cm per step, the paper's L1 ball is 7.5 cm); the gripper
# command sums frame_skip per-step commands in [-1, 1].
FETCH_CEM = CEMConfig(max_norm=2.0, gripper_dim=3, gripper_range=(-float(FRAME_SKIP), float(FRAME_SKIP)))
# An imagined state moves by 5 cm per unit of dx, dy, dz; the finger opening is not integrated.
FETCH_STATE_SCALE = (ACTION_SCALE_M, ACTION_SCALE_M, ACTION_SCALE_M, 0.0)


def check_world_model(model, size: int, where: str) -> None:
    """The simulator's actions and states are 4-D and its frames `size` pixels: refuse a model that expects other."""
    config = model.config.predictor_config
    problems = []
    if config.action_dim != len(ACTION_NAMES):
        problems.append(f"action_dim={config.action_dim} (the simulator's actions are {ACTION_NAMES})")
    if config.state_dim != len(STATE_NAMES):
        problems.append(f"state_dim={config.state_dim} (the simulator's states are {STATE_NAMES})")
    if config.crop_size != size:
        problems.append(f"crop_size={config.crop_size} but goal images and frames are rendered at {size} pixels")
    if problems:
        raise ValueError(f"{where}: the world model does not fit the Fetch evaluation: {'; '.join(problems)}")


def model_camera(model, where: str) -> str:
    """The named camera (`robot_sim.CAMERAS`) a world model was trained on: `config.camera`, which the world-model
    trainer copies from its dataset's recording.json. Models saved before cameras were named carry none; they were
    all trained on the front camera."""
    camera = getattr(model.config, "camera", "front")
    if camera not in CAMERAS:
        raise ValueError(f"{where}: the world model's config.json names camera {camera!r}, none of {sorted(CAMERAS)}")
    return camera


def resolve_camera(requested: str | None, trained_on: dict[str, str]) -> str:
    """The camera an evaluation renders through: the one every model was trained on (`trained_on`: what -> camera
    name); a `requested` camera must be that one. A model sees only the view it learned, so a mismatch is refused
    (a turned camera is the `camera_shift` variant, relative to this one). Without models: `requested` or front."""
    if requested is not None and requested not in CAMERAS:
        raise ValueError(f"camera {requested!r} is none of {sorted(CAMERAS)}")
    names = sorted(set(trained_on.values()))
    if len(names) > 1:
        raise ValueError(f"the models were trained on different cameras ({trained_on}); evaluate them in separate runs")
    if requested is not None and names and requested != names[0]:
        raise ValueError(f"camera {requested!r} was asked for, but the models were trained on {names[0]!r} "
                         f"({trained_on}); leave the camera out to use theirs")
    return names[0] if names else requested or "front"


def load_action_map(path, azimuth_offset_deg: float | None = None) -> dict:
    """One camera's 2x2 calibration map from a `calibration.json` written by `scripts/calibrate_camera.py`.

    Args:
        path: the calibration file.
        azimuth_offset_deg: which of its cameras (`azimuth_offset_deg` of a row); None is allowed only when the
            file holds exactly one camera.

    Returns:
        {"map": ((a, b), (c, d)), "file", "variant", "azimuth_offset_deg", "condition_number"}: the map goes into
        `CEMConfig(action_map=...)`; the rest says which camera it was fitted at.

    Raises:
        FileNotFoundError, ValueError: naming the file and what is missing or malformed.
    """
    try:
        saved = json.loads(Path(path).read_text())
    except (FileNotFoundError, IsADirectoryError):
        raise FileNotFoundError(f"action map {path}: not a file (write one with scripts/calibrate_camera.py)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"action map {path}: not a JSON file ({error})") from None
    cameras = saved.get("cameras") if isinstance(saved, dict) else None
    if not isinstance(cameras, list) or not cameras or not all(isinstance(c, dict) for c in cameras):
        raise ValueError(f"action map {path}: expected calibrate_camera.py's calibration.json with a non-empty "
                         f"'cameras' list of objects")
    offsets = [camera.get("azimuth_offset_deg") for camera in cameras]
    if azimuth_offset_deg is None:
        if len(cameras) > 1:
            raise ValueError(f"action map {path}: it has {len(cameras)} cameras (azimuth offsets {offsets}); say "
                             f"which with an azimuth offset")
        camera = cameras[0]
    else:
        matches = [c for c in cameras if isinstance(c.get("azimuth_offset_deg"), (int, float))
                   and math.isclose(c["azimuth_offset_deg"], azimuth_offset_deg, abs_tol=1e-6)]
        if not matches:
            raise ValueError(f"action map {path}: no camera at azimuth offset {azimuth_offset_deg:g}; it has {offsets}")
        camera = matches[0]
    matrix = camera.get("map")
    valid = (isinstance(matrix, list) and len(matrix) == 2
             and all(isinstance(row, list) and len(row) == 2 for row in matrix)
             and all(isinstance(v, (int, float)) and math.isfinite(v) for row in matrix for v in row))
    if not valid:
        raise ValueError(f"action map {path}: the camera at azimuth offset {camera.get('azimuth_offset_deg')} has "
                         f"'map' {matrix!r}; expected a finite 2x2 matrix [[a, b], [c, d]]")
    return {"map": tuple(tuple(float(v) for v in row) for row in matrix), "file": str(path),
            "variant": saved.get("variant", "default"), "azimuth_offset_deg": camera.get("azimuth_offset_deg"),
            "condition_number": camera.get("condition_number")}


def frames_to_model(frames: np.ndarray, crop_size: int) -> torch.Tensor:
    """uint8 `(T, H, W, 3)` frames -> `(1, T, 3, crop, crop)` normalized as the world model was trained (center
    crop, ImageNet statistics); frames must already be `crop_size` pixels."""
    if frames.shape[1:3] != (crop_size, crop_size):
        raise ValueError(f"images are {frames.shape[1]}x{frames.shape[2]} but the world model expects {crop_size}x{crop_size}")
    return crop_and_normalize(frames, center_crop_box(*frames.shape[1:3]), crop_size).unsqueeze(0)


class PlannerPolicy(Policy):
    """V-JEPA 2-AC planning: encode the goal images once, then at every step encode the current frame and plan
    with CEM from it and the current state (`VJEPA2WorldModel.plan`); the first planned action is executed.

    Args:
        model: a `VJEPA2WorldModel` (eval mode).
        cem: planner settings; its seed is combined with the episode index and step, so runs are reproducible. Its
            `warm_start` starts each step's search from the previous plan or the gripper command executed last
            (the setup's `start_gripper` before the first step).
        name: the method's name in records and tables.
    """

    def __init__(self, model, cem: CEMConfig = FETCH_CEM, name: str = "vjepa2_ac"):
        self.model, self.cem, self.name = model, cem, name
        self.crop = model.config.predictor_config.crop_size
        self.state_scale = torch.tensor(FETCH_STATE_SCALE)
        self.action_dim = model.config.predictor_config.action_dim

    def reset(self, setup: EpisodeSetup) -> None:
        super().reset(setup)
        self.goals = self.model.encode_frames(frames_to_model(np.stack(setup.goal_frames), self.crop))[0]
        self.previous_plan = None
        self.executed = None
        if self.cem.gripper_dim is not None:
            self.executed = torch.zeros(self.action_dim)
            self.executed[self.cem.gripper_dim] = setup.start_gripper

    def act(self, env, frame, step, goal_index):
        features = self.model.encode_frames(frames_to_model(frame[None], self.crop))[0]
        state = torch.from_numpy(env.state()).unsqueeze(0)
        cem = replace(self.cem, seed=int(np.random.default_rng([self.cem.seed, self.setup.index, step]).integers(2**31)))
        init_mean = warm_start_mean(cem, self.action_dim, self.previous_plan, self.executed)
        result = self.model.plan(features, state, self.goals[goal_index], cem, state_scale=self.state_scale,
                                 init_mean=init_mean)
        self.previous_plan, self.executed = result.actions, result.actions[0]
        return result.actions[0].numpy()


class BCPolicy(Policy):
    """The goal-conditioned behaviour-cloning baseline (`vjepa_vlm.vision.bc_policy`): the current goal image's
    features, the current frame's and the state in, one action out, no search.

    Args:
        policy: a trained `GoalConditionedPolicy` (eval mode).
        model: the `VJEPA2WorldModel` whose frozen encoder the policy was trained on (only `encode_frames` is used).
        name: the method's name in records and tables.
    """

    def __init__(self, policy, model, name: str = "bc"):
        expected = (model.tokens_per_frame, model.config.predictor_config.encoder_hidden_size)
        got = (policy.config.tokens, policy.config.feature_dim)
        if got != expected:
            raise ValueError(f"{name}: the policy reads {got[0]} tokens of width {got[1]} but the encoder gives "
                             f"{expected[0]} of width {expected[1]}: not the encoder it was trained on")
        if (policy.config.state_dim, policy.config.action_dim) != (len(STATE_NAMES), len(ACTION_NAMES)):
            raise ValueError(f"{name}: the policy has state_dim={policy.config.state_dim}, action_dim="
                             f"{policy.config.action_dim}; the simulator's are {len(STATE_NAMES)} and {len(ACTION_NAMES)}")
        self.policy, self.model, self.name = policy, model, name
        self.crop = model.config.predictor_config.crop_size

    def reset(self, setup: EpisodeSetup) -> None:
        super().reset(setup)
        self.goals = self.model.encode_frames(frames_to_model(np.stack(setup.goal_frames), self.crop))[0]

    @torch.no_grad()
    def act(self, env, frame, step, goal_index):
        features = self.model.encode_frames(frames_to_model(frame[None], self.crop))[0]
        state = torch.from_numpy(env.state()).float().unsqueeze(0)
        return self.policy(features, self.goals[goal_index : goal_index + 1], state)[0].numpy()


def subgoal_index(task: Task, step: int) -> int:
    end = 0
    for index, steps in enumerate(task.subgoal_steps):
        end += steps
        if step < end:
            return index
    return len(task.subgoal_steps) - 1


def run_episode(env: FetchCamera, setup: EpisodeSetup, policy: Policy, frame_skip: int = FRAME_SKIP) -> dict:
    """Closed loop from the setup's start; returns the episode's record (a raising policy is a failure)."""
    env.set_state(setup.start_state)
    distances = [setup.distance(env)]
    # What a failure needs to be located (which grip was commanded, whether the block left the table): the actions
    # executed, and the finger opening and the block's height above its rest before every step and after the last.
    actions, fingers, lifts = [], [float(env.state()[3])], [float(env.block_pose()[2] - env.table_height)]
    record = {"task": setup.task.name, "episode": setup.index, "reset_seed": setup.reset_seed, "method": policy.name}
    started, acting = time.perf_counter(), 0.0
    # Where a task has sub-goals, how far the gripper is from each sub-goal's gripper position when its steps end:
    # it says which stage a failure is lost in.
    ends = np.cumsum(setup.task.subgoal_steps) if len(setup.task.subgoal_steps) > 1 else []
    if len(ends):
        record["subgoal_gripper_m"] = []
    try:
        policy.reset(setup)
        for step in range(setup.task.steps):
            frame = env.render()
            tick = time.perf_counter()
            action = policy.act(env, frame, step, subgoal_index(setup.task, step))
            acting += time.perf_counter() - tick
            execute(env, action, frame_skip)
            distances.append(setup.distance(env))
            actions.append([round(float(a), 3) for a in action])
            fingers.append(float(env.state()[3]))
            lifts.append(float(env.block_pose()[2] - env.table_height))
            if step + 1 in ends:
                gripper = env.state()[:3]
                record["subgoal_gripper_m"].append(round(float(np.linalg.norm(gripper - setup.goal_gripper[
                    len(record["subgoal_gripper_m"])])), 4))
        record.update(success=setup.success(env), error=None)
    except Exception as error:  # noqa: BLE001 - an episode that fails for any reason is a failure; the evaluation goes on
        record.update(success=False, error=f"{type(error).__name__}: {error}", traceback=traceback.format_exc(limit=3))
    record.update(
        final_distance=distances[-1],
        start_distance=distances[0],
        distances=[round(d, 4) for d in distances],
        actions=actions,
        fingers_m=[round(f, 4) for f in fingers],
        block_lifts_m=[round(h, 4) for h in lifts],
        block_lift_m=float(env.block_pose()[2] - env.table_height),
        seconds=round(time.perf_counter() - started, 3),
        act_seconds_per_step=round(acting / max(1, len(distances) - 1), 4),
    )
    return record


__all__ = [
    "FETCH_CEM",
    "FETCH_STATE_SCALE",
    "FRAME_SKIP",
    "LIFT_M",
    "SUCCESS_M",
    "TASKS",
    "BCPolicy",
    "EpisodeSetup",
    "Oracle",
    "OraclePolicy",
    "PlannerPolicy",
    "Policy",
    "RandomPolicy",
    "Task",
    "Waypoint",
    "check_tasks",
    "check_world_model",
    "execute",
    "frames_to_model",
    "load_action_map",
    "make_setup",
    "run_episode",
    "subgoal_index",
]
