"""Robot play data: a noisy scripted exploration policy in the Fetch simulator, recorded as a LeRobot dataset.

Play is unlabeled interaction (section 3 of the paper: the action-conditioned predictor learns from robot
video with end-effector states, no rewards, successes and failures alike). Uniform random actions almost
never touch the block (40 episodes x 50 steps: moved > 1 cm in 5, lifted in 1), so `ScriptedPlay` chains
behaviours aimed at it — pick (approach, open, descend, close, lift, carry, sometimes drop), push, poke
(open and close the fingers around it), wander — with random-action stretches, Gaussian action noise and a
jittered grasp point, so many grasps fail. The policy reads the true block position; only the recorded
frames, states and actions are ever model inputs.

`record_play` writes (see `lerobot_format` for the layout):

    observation.images.NAME    the RGB frames of camera NAME of `robot_sim.CAMERAS` ("front" by default; H.264)
    observation.state          gripper xyz (m) + finger opening (m), the state before the step's action
    action                     the command sent at that step: dx, dy, dz in [-1, 1] (x 0.05 m), gripper (+1 opens)
    eval.block_pose            block xyz + quaternion; for evaluation only, never fed to a model
    meta/recording.json        seed, policy, simulator, camera (name and settings), and how often the block
                               moved / was lifted

Episode i depends only on (seed, i), so the dataset is identical whatever the worker count.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from vjepa_vlm.data.lerobot_format import LeRobotWriter, vector_feature, video_feature
from vjepa_vlm.data.manifests import OutputExistsError, atomic_output_dir
from vjepa_vlm.data.robot_sim import (
    ACTION_NAMES, ACTION_SCALE_M, BLOCK_POSE_NAMES, CAMERAS, ENV_ID, STATE_NAMES, camera_name_of, camera_settings,
    check_frame_size, make_fetch_env,
)


def camera_key(camera: str) -> str:
    """The dataset feature holding the frames of a named camera."""
    return f"observation.images.{camera}"


CAMERA_KEY = camera_key("front")
STATE_KEY = "observation.state"
ACTION_KEY = "action"
BLOCK_KEY = "eval.block_pose"
POLICIES = ("play", "random")
# A worker forked from a process that has rendered inherits its EGL display, and MuJoCo's renderer hangs on it
# (measured: a parent that had rendered once, then a fork pool of 2, never returned). Workers are forked from a
# fork server that has imported this module but never rendered: clean GL state, one import for all workers.
MP_CONTEXT = "forkserver"
TASKS = {"play": "scripted play with the block", "random": "uniform random actions"}
# The block counts as moved when its centre left its start by more than this, lifted when it rose this high.
MOVED_M = 0.01
LIFTED_M = 0.03
# Table region where carried and pushed blocks stay on the table and in the camera's view.
WORKSPACE_XY = ((1.1, 1.5), (0.5, 1.0))
BEHAVIOURS = ("pick", "push", "poke", "wander", "random")
# Named behaviour mixes (weights in BEHAVIOURS' order). "grasp" weights up the behaviours that close the fingers on
# the block, carry it and let it go (pick, poke), for a world model that must foresee the block following closed
# fingers: the default mix closes them within 3 cm of the block in 13% of agent steps (issue 20).
BEHAVIOUR_MIXES = {
    "default": (0.35, 0.25, 0.15, 0.15, 0.10),
    "grasp": (0.65, 0.10, 0.20, 0.03, 0.02),
}


@dataclass
class Waypoint:
    """Move towards `target` (or hold still when None) with the gripper command for at most `steps` steps."""

    target: np.ndarray | None
    gripper: float
    steps: int
    tolerance: float = 0.01
    random: bool = False


class ScriptedPlay:
    """A noisy scripted exploration policy; `act(state, block_pose)` returns the next action.

    Args:
        rng: the episode's random stream (noise levels, behaviours, targets).
        table_height: the block centre's height when it rests on the table.
        mix: a name of `BEHAVIOUR_MIXES`: how often each behaviour is chosen.
    """

    def __init__(self, rng: np.random.Generator, table_height: float, mix: str = "default"):
        self.rng = rng
        self.table = table_height
        self.weights = behaviour_weights(mix)
        self.noise_std = rng.uniform(0.05, 0.3)
        self.random_prob = rng.uniform(0.0, 0.15)
        self.gain = rng.uniform(0.7, 1.5)
        self.plan: list[Waypoint] = []
        self.taken = 0

    def _table_point(self, low: float, high: float) -> np.ndarray:
        (x0, x1), (y0, y1) = WORKSPACE_XY
        return np.array([self.rng.uniform(x0, x1), self.rng.uniform(y0, y1), self.table + self.rng.uniform(low, high)])

    def choose_behaviour(self) -> str:
        return BEHAVIOURS[self.rng.choice(len(BEHAVIOURS), p=self.weights)]

    def _behaviour(self, block: np.ndarray) -> list[Waypoint]:
        rng, up = self.rng, np.array([0.0, 0.0, 1.0])
        name = self.choose_behaviour()
        if name == "pick":
            # A grasp point off by up to ~2 cm fails often enough to record failures next to successes.
            grasp = block + np.r_[rng.normal(0.0, 0.01, 2), rng.uniform(-0.01, 0.01)]
            plan = [
                Waypoint(grasp + up * rng.uniform(0.06, 0.12), 1.0, 20),
                Waypoint(grasp, 1.0, 12, tolerance=0.006),
                Waypoint(None, -1.0, int(rng.integers(4, 8))),
                Waypoint(grasp + up * rng.uniform(0.05, 0.2), -1.0, 15),
                Waypoint(self._table_point(0.03, 0.25), -1.0, 25),
            ]
            if rng.random() < 0.7:
                plan += [Waypoint(None, 1.0, int(rng.integers(3, 7))), Waypoint(None, float(rng.uniform(-1, 1)), 3)]
            return plan
        if name == "push":
            angle = rng.uniform(0, 2 * np.pi)
            direction = np.array([np.cos(angle), np.sin(angle), 0.0])
            start = block - direction * rng.uniform(0.05, 0.08)
            gripper = float(rng.choice([-1.0, 1.0]))
            return [
                Waypoint(start + up * 0.08, gripper, 20),
                Waypoint(start, gripper, 10, tolerance=0.008),
                Waypoint(block + direction * rng.uniform(0.05, 0.2), gripper, 20),
                Waypoint(None, gripper, 2),
            ]
        if name == "poke":
            plan = [
                Waypoint(block + up * rng.uniform(0.05, 0.1), 1.0, 20),
                Waypoint(block + up * rng.uniform(0.0, 0.02), 1.0, 10),
            ]
            for _ in range(int(rng.integers(1, 4))):
                plan += [Waypoint(None, -1.0, int(rng.integers(2, 6))), Waypoint(None, 1.0, int(rng.integers(2, 6)))]
            return plan + [Waypoint(block + up * rng.uniform(0.05, 0.15), float(rng.uniform(-1, 1)), 10)]
        if name == "wander":
            stops = int(rng.integers(1, 4))
            return [Waypoint(self._table_point(0.02, 0.3), float(rng.uniform(-1, 1)), 20) for _ in range(stops)]
        return [Waypoint(None, 0.0, int(rng.integers(5, 20)), random=True)]

    def act(self, state: np.ndarray, block_pose: np.ndarray) -> np.ndarray:
        while self.plan and self.taken >= self.plan[0].steps:
            self.plan.pop(0)
            self.taken = 0
        if not self.plan:
            self.plan = self._behaviour(np.asarray(block_pose[:3], dtype=np.float64))
        waypoint = self.plan[0]
        self.taken += 1
        if waypoint.random or self.rng.random() < self.random_prob:
            return self.rng.uniform(-1.0, 1.0, 4).astype(np.float32)
        move = np.zeros(3)
        if waypoint.target is not None:
            offset = waypoint.target - state[:3]
            if np.linalg.norm(offset) < waypoint.tolerance:
                self.taken = waypoint.steps
            move = self.gain * offset / ACTION_SCALE_M
        move = move + self.rng.normal(0.0, self.noise_std, 3)
        return np.clip(np.r_[move, waypoint.gripper], -1.0, 1.0).astype(np.float32)


def behaviour_weights(mix: str) -> tuple[float, ...]:
    """The behaviour weights of a named mix; a clear error for an unknown name."""
    if mix not in BEHAVIOUR_MIXES:
        raise ValueError(f"behaviour mix must be one of {sorted(BEHAVIOUR_MIXES)}, got {mix!r}")
    return BEHAVIOUR_MIXES[mix]


class RandomActions:
    """Uniform random actions in the action box: the baseline that play is measured against."""

    def __init__(self, rng: np.random.Generator, table_height: float):
        self.rng = rng

    def act(self, state: np.ndarray, block_pose: np.ndarray) -> np.ndarray:
        return self.rng.uniform(-1.0, 1.0, 4).astype(np.float32)


def episode_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of episode `index`: independent of other episodes, of their order and of workers."""
    return np.random.default_rng([seed, index])


def record_episode(env, seed: int, index: int, steps: int, policy: str = "play", mix: str = "default") -> dict:
    """Run one episode of `steps` steps and return its frames, states, actions and block poses.

    Row t holds the frame and state observed before action t; the observation after the last action is
    not kept, so every row pairs an observation with the action taken from it (lerobot's convention).
    """
    rng = episode_rng(seed, index)
    env.reset(seed=int(rng.integers(2**31)))
    controller = ScriptedPlay(rng, env.table_height, mix) if policy == "play" else RandomActions(rng, env.table_height)
    frames, states, actions, blocks = [], [], [], []
    for _ in range(steps):
        frames.append(env.render())
        states.append(env.state())
        blocks.append(env.block_pose())
        actions.append(controller.act(states[-1], blocks[-1]))
        env.step(actions[-1])
    blocks = np.stack(blocks)
    return {
        "index": index,
        "fps": env.fps,
        "frames": np.stack(frames),
        "state": np.stack(states),
        "action": np.stack(actions),
        "block_pose": blocks,
        "moved": bool(np.linalg.norm(blocks[:, :3] - blocks[0, :3], axis=1).max() > MOVED_M),
        "lifted": bool((blocks[:, 2] - env.table_height).max() > LIFTED_M),
    }


_worker_env = None
_worker_error: Exception | None = None


def _init_worker(size: int, steps: int, camera: str) -> None:
    global _worker_env, _worker_error
    # An initializer that raises makes the pool start replacement workers forever; the first job reports it.
    try:
        _worker_env = make_fetch_env(size, steps, camera=camera)
    except Exception as error:
        _worker_error = error


def _episode_job(job: tuple) -> dict:
    if _worker_error is not None:
        raise _worker_error
    return record_episode(_worker_env, *job)


@dataclass
class PlaySummary:
    out_dir: Path
    episodes: int
    frames: int
    moved: int
    lifted: int
    seconds: float

    @property
    def episodes_per_minute(self) -> float:
        return 60.0 * self.episodes / self.seconds

    @property
    def steps_per_second(self) -> float:
        return self.frames / self.seconds


def record_play(
    out_dir: str | Path,
    *,
    episodes: int,
    seed: int,
    size: int = 64,
    steps: int = 100,
    workers: int = 1,
    policy: str = "play",
    episodes_per_file: int = 50,
    overwrite: bool = False,
    progress: bool = True,
    camera: str = "front",
    mix: str = "default",
) -> PlaySummary:
    """Record `episodes` play episodes of `steps` steps into a new LeRobot dataset at `out_dir`, atomically.

    Args:
        out_dir: dataset folder; must not exist unless `overwrite` (then replaced as a whole).
        episodes: number of episodes.
        seed: the only source of randomness: episode i depends on (seed, i) alone.
        size: frame side in pixels (even).
        steps: steps per episode (the simulator runs at 25 Hz).
        workers: simulator processes (each renders its own episodes; output does not depend on it).
        policy: "play" (scripted exploration) or "random" (uniform random actions, the baseline).
        episodes_per_file: episodes per data parquet / video file.
        overwrite: replace an existing `out_dir`.
        progress: progress bar over episodes on stderr.
        camera: a name of `robot_sim.CAMERAS`; the frames go into `camera_key(camera)`.
        mix: the play policy's behaviour mix, a name of `BEHAVIOUR_MIXES` (ignored by the random policy).

    Raises:
        SimulatorUnavailableError: the `robot` extra is missing or MuJoCo cannot render offscreen.
    """
    counts = (("episodes", episodes, 1), ("steps", steps, 2), ("workers", workers, 1), ("episodes_per_file", episodes_per_file, 1))
    for name, value, low in counts:
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    check_frame_size(size)
    if not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    behaviour_weights(mix)
    settings = camera_settings(camera)
    key = camera_key(camera)
    if Path(out_dir).exists() and not overwrite:
        raise OutputExistsError(Path(out_dir))
    started = time.perf_counter()
    # Built before any output exists, so a machine that cannot render fails without leaving anything behind.
    env = make_fetch_env(size, steps, camera=camera) if workers == 1 else None
    moved = lifted = 0
    try:
        with atomic_output_dir(out_dir, overwrite=overwrite) as root:
            jobs = [(seed, index, steps, policy, mix) for index in range(episodes)]
            pool = None
            if env is None:
                context = multiprocessing.get_context(MP_CONTEXT)
                context.set_forkserver_preload([__name__])
                pool = context.Pool(workers, _init_worker, (size, steps, camera))
            with pool or nullcontext():
                # imap keeps episode order, so the files do not depend on the worker count.
                made = (record_episode(env, *job) for job in jobs) if pool is None else pool.imap(_episode_job, jobs)
                writer = None
                bar = tqdm(made, total=episodes, desc=f"play {Path(out_dir).name}", unit="episode", file=sys.stderr, disable=not progress)
                for record in bar:
                    if writer is None:
                        features = {
                            key: video_feature(size, size, fps=record["fps"]),
                            STATE_KEY: vector_feature(STATE_NAMES),
                            ACTION_KEY: vector_feature(ACTION_NAMES),
                            BLOCK_KEY: vector_feature(BLOCK_POSE_NAMES),
                        }
                        writer = LeRobotWriter(
                            root, fps=record["fps"], features=features, robot_type="fetch", episodes_per_file=episodes_per_file
                        )
                    writer.add_episode(
                        {key: record["frames"]},
                        {STATE_KEY: record["state"], ACTION_KEY: record["action"], BLOCK_KEY: record["block_pose"]},
                        TASKS[policy],
                    )
                    moved += record["moved"]
                    lifted += record["lifted"]
            writer.finish()
            recording = {
                "simulator": ENV_ID, "policy": policy, "behaviour_mix": mix, "seed": seed, "episodes": episodes, "steps": steps, "size": size,
                "camera": settings, "camera_name": camera, "camera_key": key,
                "evaluation_only": [BLOCK_KEY],
                "block_moved_episodes": moved, "block_lifted_episodes": lifted,
                "moved_threshold_m": MOVED_M, "lifted_threshold_m": LIFTED_M,
            }
            (root / "meta" / "recording.json").write_text(json.dumps(recording, indent=1))
    finally:
        if env is not None:
            env.close()
    return PlaySummary(Path(out_dir), episodes, episodes * steps, moved, lifted, time.perf_counter() - started)


def recorded_camera(root: str | Path) -> str | None:
    """The camera name a dataset was recorded with, from its `meta/recording.json` (None without that file: not a
    recording of this simulator). Recordings made before cameras had names store only the settings."""
    path = Path(root) / "meta" / "recording.json"
    if not path.is_file():
        return None
    recording = json.loads(path.read_text())
    name = recording.get("camera_name")
    if name is None:
        if not isinstance(recording.get("camera"), dict):
            raise ValueError(f"{path}: expected a 'camera_name' or a 'camera' object of settings")
        try:
            return camera_name_of(recording["camera"])
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
    if name not in CAMERAS:
        raise ValueError(f"{path}: camera_name {name!r} is none of {sorted(CAMERAS)}")
    return name
