"""The Fetch pick-and-place simulator (gymnasium-robotics on MuJoCo) seen through one fixed camera.

`make_fetch_env` builds `FetchPickAndPlace-v4` rendering `size` x `size` RGB frames offscreen and wraps it in
`FetchCamera`, which hides the goal marker (goals come from images, never from a drawn target) and reads
the quantities play recording needs: the end-effector state (gripper xyz + finger opening) and the block pose.

The simulator is the optional `robot` extra (`pip install "vjepa-vlm[robot]"`: mujoco < 3.4, because with 4.x
the Fetch setup fails an assertion, and gymnasium-robotics 1.4.2). Rendering is offscreen through EGL by
default (`MUJOCO_GL=egl`, which Mesa provides on a CPU-only machine).
"""

from __future__ import annotations

import gc
import os

import numpy as np

ENV_ID = "FetchPickAndPlace-v4"
# Front view of the table from the far side: gripper, fingers and block all visible (measured in issue #19).
DEFAULT_CAMERA = {"distance": 1.4, "azimuth": 180.0, "elevation": -30.0, "lookat": (1.3, 0.75, 0.45)}
# The front camera looks along the robot's x axis, so a gripper moving in x hardly moves in the image (issue #20:
# planners misread dx). Turned 45 degrees around the table and looking down at 45 degrees, x, y and z displacements
# all cross the image; gripper, block and the play workspace stay in view at 64 px (checked on rendered frames).
OBLIQUE_CAMERA = {"distance": 1.3, "azimuth": 135.0, "elevation": -45.0, "lookat": (1.25, 0.75, 0.5)}
# One camera cannot see motion along its line of sight; looking down at 72 degrees puts that line near z, the axis
# along which reach goals vary least, and leaves x and y in the image plane (whole table in view at 64 px).
OVERHEAD_CAMERA = {"distance": 1.5, "azimuth": 180.0, "elevation": -72.0, "lookat": (1.22, 0.75, 0.5)}
# Named cameras for recording and evaluation; a world model is evaluated through the camera it was trained on.
CAMERAS = {"front": DEFAULT_CAMERA, "oblique": OBLIQUE_CAMERA, "overhead": OVERHEAD_CAMERA}
STATE_NAMES = ("x", "y", "z", "gripper_opening")
ACTION_NAMES = ("dx", "dy", "dz", "gripper")
BLOCK_POSE_NAMES = ("x", "y", "z", "qw", "qx", "qy", "qz")
# The Fetch controller moves the mocap target by action * 0.05 m per step (gymnasium-robotics' `_set_action`).
ACTION_SCALE_M = 0.05
# Zero-shot scene variants (the paper's "other labs"): what changes from the scene play is recorded in.
VARIANTS = ("default", "block_colour", "table_texture", "camera_shift")
# A red block instead of the dark grey one (block_mat's rgba in gymnasium-robotics' shared.xml is 0.2 0.2 0.2).
VARIANT_BLOCK_RGBA = (0.85, 0.15, 0.1, 1.0)
# A grey checkerboard, 8 squares per table face, instead of the plain light grey table.
VARIANT_TABLE_SQUARES = 8
# The camera turned 15 degrees around the table and 5 degrees steeper.
VARIANT_CAMERA_SHIFT = {"azimuth": 15.0, "elevation": -5.0}


def camera_settings(name: str) -> dict:
    """The MuJoCo free-camera settings of a named camera (a copy)."""
    if name not in CAMERAS:
        raise ValueError(f"unknown camera {name!r}; expected one of {sorted(CAMERAS)}")
    return dict(CAMERAS[name])


def camera_name_of(settings: dict) -> str:
    """The name of the camera with these settings (as recording.json stores them), or a ValueError."""
    def same(value, expected) -> bool:
        return np.shape(value) == np.shape(expected) and bool(np.allclose(value, expected))

    for name, camera in CAMERAS.items():
        if all(same(settings.get(key, np.nan), value) for key, value in camera.items()):
            return name
    raise ValueError(f"camera settings {settings} are none of the named cameras {sorted(CAMERAS)}")


class SimulatorUnavailableError(RuntimeError):
    """The simulator packages are missing or MuJoCo cannot render offscreen."""


def _import_simulator():
    # MuJoCo picks its OpenGL backend when first imported; its default (GLFW) needs a display.
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        import gymnasium
        import gymnasium_robotics
        import mujoco
    except ModuleNotFoundError as error:
        raise SimulatorUnavailableError(
            f"the Fetch simulator needs the `robot` extra (pip install \"vjepa-vlm[robot]\"): {error}"
        ) from error
    except Exception as error:  # MuJoCo loads its GL backend on import: a missing library fails here
        raise _rendering_error(error) from error
    gymnasium.register_envs(gymnasium_robotics)
    return gymnasium, mujoco


def _rendering_error(error: BaseException) -> SimulatorUnavailableError:
    backend = os.environ.get("MUJOCO_GL")
    return SimulatorUnavailableError(
        f"MuJoCo cannot render offscreen with MUJOCO_GL={backend} ({type(error).__name__}: {error}). "
        "On a machine without a display use MUJOCO_GL=egl with an EGL library (Mesa's libegl1 works on the CPU), "
        "or MUJOCO_GL=osmesa with the libosmesa6 system package."
    )


class FetchCamera:
    """A Fetch env rendering one fixed camera, with the goal marker hidden and state read-outs.

    A thin wrapper in the gymnasium sense: `reset(seed=...)` and `step(action)` are the env's own (rewards and
    goals are passed through untouched; play recording ignores them), `render()` returns the camera frame.

    Args:
        env: a `gymnasium.make(ENV_ID, render_mode="rgb_array", ...)` environment.
    """

    def __init__(self, env):
        self.env = env
        self.sim = env.unwrapped
        _, mujoco = _import_simulator()
        self._mujoco = mujoco
        model = self.sim.model
        # `_render_callback` moves the goal site before every render; an invisible site cannot leak the goal.
        model.site_rgba[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "target0"), 3] = 0.0
        self._grip_site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "robot0:grip")
        self._finger_qpos = [
            model.jnt_qposadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, f"robot0:{side}_gripper_finger_joint")]
            for side in ("l", "r")
        ]
        self._block_qpos = model.jnt_qposadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, "object0:joint")]
        self.fps = round(1.0 / self.sim.dt)
        # Everything the next step depends on, the mocap target (where the arm is being pulled) included.
        self._STATE = mujoco.mjtState.mjSTATE_INTEGRATION

    def reset(self, *, seed: int):
        return self.env.reset(seed=seed)

    def step(self, action):
        return self.env.step(np.asarray(action, dtype=np.float32))

    def render(self) -> np.ndarray:
        # Envs in one process share the thread's GL state: gymnasium makes a viewer's context current only when it
        # creates it, and closing or collecting another env frees its context, which releases whatever context the
        # thread had current (MuJoCo's EGL `free` calls eglReleaseThread): this env would then render black. So
        # its own context is made current before every render, with no garbage collection in between.
        collecting = gc.isenabled()
        gc.disable()
        try:
            viewer = self.sim.mujoco_renderer.viewer
            if viewer is not None:
                viewer.make_context_current()
            return np.ascontiguousarray(self.env.render())
        except Exception as error:  # the GL backend fails in many ways (ImportError, RuntimeError, GLError)
            raise _rendering_error(error) from error
        finally:
            if collecting:
                gc.enable()

    def state(self) -> np.ndarray:
        """End-effector state: gripper site xyz (m) and finger opening (sum of the two finger joints, m)."""
        data = self.sim.data
        return np.array([*data.site_xpos[self._grip_site], sum(data.qpos[i] for i in self._finger_qpos)], dtype=np.float32)

    def block_pose(self) -> np.ndarray:
        """Block position (m) and orientation quaternion (w, x, y, z) from its free joint."""
        return self.sim.data.qpos[self._block_qpos : self._block_qpos + 7].astype(np.float32)

    def get_state(self) -> np.ndarray:
        """The full simulation state (positions, velocities, mocap target, time): `set_state` returns to it."""
        state = np.empty(self._mujoco.mj_stateSize(self.sim.model, self._STATE))
        self._mujoco.mj_getState(self.sim.model, self.sim.data, state, self._STATE)
        return state

    def set_state(self, state: np.ndarray) -> None:
        self._mujoco.mj_setState(self.sim.model, self.sim.data, state, self._STATE)
        self._mujoco.mj_forward(self.sim.model, self.sim.data)

    @property
    def table_height(self) -> float:
        """Height of the block's centre when it rests on the table."""
        return float(self.sim.height_offset)

    def close(self) -> None:
        self.env.close()


def check_frame_size(size: int) -> None:
    """Frames are square and H.264 (yuv420p) needs even sides; below 16 pixels the block is not visible."""
    if not isinstance(size, int) or size < 16 or size % 2:
        raise ValueError(f"size must be an even integer >= 16, got {size!r}")


def _apply_scene_variant(model, mujoco, variant: str) -> None:
    """Change the block's colour or the table's texture in the compiled model. The renderer copies materials and
    uploads textures when its GL context is created (at the first render), so this must run before it."""
    def material(name: str) -> int:
        return mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_MATERIAL, name)

    if variant == "block_colour":
        model.mat_rgba[material("block_mat")] = VARIANT_BLOCK_RGBA
    elif variant == "table_texture":
        # The model's one unused texture (the cube map `texture_block`) is repainted as a checkerboard: textures
        # cannot be added to a compiled model, but their pixels can be rewritten before they are uploaded.
        texture = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_TEXTURE, "texture_block")
        width, height, channels = model.tex_width[texture], model.tex_height[texture], model.tex_nchannel[texture]
        square = max(1, width // VARIANT_TABLE_SQUARES)
        rows, cols = np.indices((height, width)) // square
        shade = np.where((rows + cols) % 2 == 0, 235, 170).astype(np.uint8)
        start = model.tex_adr[texture]
        model.tex_data[start : start + height * width * channels] = np.repeat(shade.ravel(), channels)
        model.mat_texid[material("table_mat"), int(mujoco.mjtTextureRole.mjTEXROLE_RGB)] = texture
        model.mat_rgba[material("table_mat")] = (1.0, 1.0, 1.0, 1.0)


def make_fetch_env(
    size: int = 64, max_steps: int = 100, camera: str | dict | None = None, variant: str = "default"
) -> FetchCamera:
    """Build the Fetch pick-and-place simulator rendering `size` x `size` frames and check that it renders.

    Args:
        size: frame side in pixels (even, for H.264).
        max_steps: the env's time limit (gymnasium's `TimeLimit`), at least the longest episode recorded.
        camera: a name of `CAMERAS`, or MuJoCo free-camera settings (distance, azimuth, elevation, lookat);
            `DEFAULT_CAMERA` if None.
        variant: one of `VARIANTS`: the recorded scene ("default"), a red block, a checkered table, or the
            camera turned by `VARIANT_CAMERA_SHIFT` (added to `camera`).

    Raises:
        SimulatorUnavailableError: the `robot` extra is missing or offscreen rendering does not work.
    """
    check_frame_size(size)
    if not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    gymnasium, mujoco = _import_simulator()
    camera = camera_settings(camera) if isinstance(camera, str) else dict(DEFAULT_CAMERA if camera is None else camera)
    if variant == "camera_shift":
        camera.update({key: camera[key] + shift for key, shift in VARIANT_CAMERA_SHIFT.items()})
    camera["lookat"] = np.asarray(camera["lookat"], dtype=np.float64)
    try:
        env = gymnasium.make(
            ENV_ID, render_mode="rgb_array", width=size, height=size, max_episode_steps=max_steps,
            default_camera_config=camera,
        )
    except Exception as error:  # MuJoCo's GL backend is loaded here: a missing EGL fails at this point
        raise _rendering_error(error) from error
    _apply_scene_variant(env.unwrapped.model, mujoco, variant)
    wrapped = FetchCamera(env)
    # The first render creates the GL context, where a backend that imported but cannot render fails.
    wrapped.reset(seed=0)
    wrapped.render()
    return wrapped
