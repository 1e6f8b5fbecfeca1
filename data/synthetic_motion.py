"""Motion classes of the synthetic world (SSv2-like templates) and the trajectories that realize them.

Every class is built so that a single frame cannot tell it from its time-reversed partner (left-to-right vs
right-to-left, clockwise vs counter-clockwise, growing vs shrinking, approaching vs moving away, starting vs
stopping): classifying them needs time. Coordinates are pixels with y pointing down; angles are radians,
positive = clockwise on screen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class MotionClass:
    """One motion template.

    Args:
        name: short key used on the command line and in manifests' `motion_name`.
        label: SSv2-style template text (the class name published in meta.json).
        caption: caption template; `{a}` is the main object, `{b}` the second object.
        num_objects: objects taking part in the motion (1 or 2); the rest of the scene stays still.
        family: which open question asks about it (see synthetic_labels).
        event_verb: verb of the event an anticipation clip must predict, or None when nothing happens.
        event_noun: "a" or "b": which object the event's noun names.
        needs_visible_rotation: rotation classes exclude rotation-symmetric shapes.
    """

    name: str
    label: str
    caption: str
    num_objects: int
    family: str
    event_verb: str | None = None
    event_noun: str = "a"
    needs_visible_rotation: bool = False


# Screen directions of the translation classes (y points down).
DIRECTIONS: dict[str, tuple[int, int]] = {
    "right": (1, 0),
    "left": (-1, 0),
    "up": (0, -1),
    "down": (0, 1),
    "up and right": (1, -1),
    "up and left": (-1, -1),
    "down and right": (1, 1),
    "down and left": (-1, 1),
}

_TRANSLATIONS = [
    MotionClass("move_right", "Moving something from left to right", "{a} moves {speed} from left to right", 1, "direction"),
    MotionClass("move_left", "Moving something from right to left", "{a} moves {speed} from right to left", 1, "direction"),
    MotionClass("move_up", "Moving something up", "{a} moves {speed} up", 1, "direction"),
    MotionClass("move_down", "Moving something down", "{a} moves {speed} down", 1, "direction"),
    MotionClass("move_up_right", "Moving something diagonally up and to the right", "{a} moves {speed} up and to the right", 1, "direction"),
    MotionClass("move_up_left", "Moving something diagonally up and to the left", "{a} moves {speed} up and to the left", 1, "direction"),
    MotionClass("move_down_right", "Moving something diagonally down and to the right", "{a} moves {speed} down and to the right", 1, "direction"),
    MotionClass("move_down_left", "Moving something diagonally down and to the left", "{a} moves {speed} down and to the left", 1, "direction"),
]
_TRANSLATION_DIRECTION = dict(zip((m.name for m in _TRANSLATIONS), DIRECTIONS))

MOTION_CLASSES: tuple[MotionClass, ...] = (
    *_TRANSLATIONS,
    MotionClass("rotate_cw", "Rotating something clockwise", "{a} rotates clockwise", 1, "rotation", needs_visible_rotation=True),
    MotionClass("rotate_ccw", "Rotating something counter-clockwise", "{a} rotates counter-clockwise", 1, "rotation", needs_visible_rotation=True),
    MotionClass("grow", "Something getting bigger", "{a} grows bigger", 1, "size"),
    MotionClass("shrink", "Something getting smaller", "{a} shrinks", 1, "size"),
    MotionClass("bounce", "Something bouncing off a wall", "{a} bounces off the {wall} wall", 1, "bounce", "bounce"),
    MotionClass("still", "Something staying still", "{a} stays still", 1, "direction"),
    MotionClass("start", "Something starting to move", "{a} is still, then starts moving {direction}", 1, "start_stop", "start"),
    MotionClass("stop", "Something moving and then stopping", "{a} moves {direction}, then stops", 1, "start_stop", "stop"),
    MotionClass("approach", "Moving something towards something else", "{a} moves towards {b}", 2, "approach"),
    MotionClass("move_away", "Moving something away from something else", "{a} moves away from {b}", 2, "approach"),
    MotionClass("push", "Pushing something with something else", "{a} pushes {b}", 2, "push", "push", "b"),
    MotionClass("collide", "Two things colliding and bouncing apart", "{a} and {b} collide and bounce apart", 2, "collide", "collide", "b"),
    MotionClass("pass_behind", "Something passing behind something else", "{a} passes behind {b}", 2, "occlusion", "hide", "b"),
    MotionClass("pass_front", "Something passing in front of something else", "{a} passes in front of {b}", 2, "occlusion", "cover", "b"),
)
MOTION_NAMES = tuple(m.name for m in MOTION_CLASSES)
MOTIONS_BY_NAME = {m.name: m for m in MOTION_CLASSES}
ANTICIPATION_VERBS = tuple(dict.fromkeys(m.event_verb for m in MOTION_CLASSES if m.event_verb))

# Fraction of the clip (of T - 1 frames) inside which events happen: late enough to leave an anticipation
# context before them, early enough that the consequence is visible.
EVENT_WINDOW = (0.4, 0.7)
_MAX_TRIES = 200
# Speed of the single mover before a bounce, stop or push event under `shared_motion`, as a share of the free span
# crossed over the whole clip: push's own range, which bounce and stop fit as well (their events fall in
# EVENT_WINDOW, so at most 0.8 * 0.7 of the span is crossed on either side of the event).
SHARED_EVENT_SPEED = (0.5, 0.8)


@dataclass
class Track:
    """Per-frame pose of one object.

    Args:
        center: (T, 2) pixel coordinates (x, y).
        scale: (T,) multiplier of the object's base diameter.
        angle: (T,) clockwise rotation in radians.
    """

    center: np.ndarray
    scale: np.ndarray
    angle: np.ndarray

    @classmethod
    def static(cls, center: np.ndarray, frames: int, angle: float = 0.0) -> Track:
        return cls(np.tile(np.asarray(center, dtype=np.float64), (frames, 1)), np.ones(frames), np.full(frames, angle))

    def is_moving(self) -> bool:
        return bool(np.ptp(self.center, axis=0).max() > 0.5 or np.ptp(self.scale) > 0.01 or np.ptp(self.angle) > 0.01)


@dataclass
class MotionSample:
    """Trajectories of the objects taking part in a motion and what the labels say about them.

    Args:
        tracks: one Track per participating object, main object first.
        event_frame: first frame of the clip's event (contact, bounce, start, stop, overlap), or None.
        facts: label-relevant values (direction, speed word, wall, which object is faster, ...).
        z_order: drawing order of the participants, back to front (indices into tracks).
    """

    tracks: list[Track]
    event_frame: int | None = None
    facts: dict = field(default_factory=dict)
    z_order: tuple[int, ...] = (0, 1)


def event_window(frames: int) -> tuple[int, int]:
    """Inclusive range of frames where an event may happen in a `frames`-frame clip."""
    return int(np.ceil(EVENT_WINDOW[0] * (frames - 1))), int(np.floor(EVENT_WINDOW[1] * (frames - 1)))


def _fits(points: np.ndarray, radius: float, size: int) -> bool:
    return bool(points.min() >= radius + 1 and points.max() <= size - 1 - radius)


def _lerp(start: np.ndarray, end: np.ndarray, progress: np.ndarray) -> np.ndarray:
    return start[None, :] + (end - start)[None, :] * progress[:, None]


def _unit(rng: np.random.Generator) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi)
    return np.array([np.cos(angle), np.sin(angle)])


def _translate(direction: str, frames: int, size: int, radius: float, rng: np.random.Generator) -> MotionSample:
    lo, hi = radius + 1, size - 1 - radius
    step = np.array(DIRECTIONS[direction], dtype=np.float64)
    speed = "quickly" if rng.random() < 0.5 else "slowly"
    travel = (hi - lo) * (rng.uniform(0.7, 0.9) if speed == "quickly" else rng.uniform(0.35, 0.5))
    start = np.array([rng.uniform(lo + travel * max(-s, 0), hi - travel * max(s, 0)) for s in step])
    center = _lerp(start, start + step * travel, np.linspace(0, 1, frames))
    return MotionSample([Track(center, np.ones(frames), np.full(frames, rng.uniform(-0.3, 0.3)))], facts={"direction": direction, "speed": speed})


def _still(frames: int, size: int, radius: float, rng: np.random.Generator) -> MotionSample:
    center = rng.uniform(radius + 1, size - 1 - radius, size=2)
    return MotionSample([Track.static(center, frames, rng.uniform(-0.3, 0.3))], facts={"direction": "nowhere"})


def _rotate(clockwise: bool, frames: int, size: int, radius: float, rng: np.random.Generator) -> MotionSample:
    # Under 30 degrees a frame, so the sense stays unambiguous even for 4-fold symmetric shapes (45 degrees).
    total = min(rng.uniform(2 * np.pi / 3, 4 * np.pi / 3), np.radians(30) * (frames - 1))
    angle = rng.uniform(0, 2 * np.pi) + (1 if clockwise else -1) * np.linspace(0, total, frames)
    center = rng.uniform(radius + 1, size - 1 - radius, size=2)
    track = Track.static(center, frames)
    track.angle = angle
    return MotionSample([track], facts={"sense": "clockwise" if clockwise else "counter-clockwise"})


def _resize(grow: bool, frames: int, size: int, radius: float, rng: np.random.Generator) -> MotionSample:
    small, large = rng.uniform(0.5, 0.65), rng.uniform(1.15, 1.3)
    scale = np.linspace(small, large, frames) if grow else np.linspace(large, small, frames)
    center = rng.uniform(radius * large + 1, size - 1 - radius * large, size=2)
    track = Track.static(center, frames, rng.uniform(-0.3, 0.3))
    track.scale = scale
    return MotionSample([track], facts={"size_change": "bigger" if grow else "smaller"})


def _shared_speed(span: float, frames: int, rng: np.random.Generator) -> float:
    return rng.uniform(*SHARED_EVENT_SPEED) * span / (frames - 1)


# Each wall as (axis, sign of the velocity component that reaches it).
_WALLS = {"left": (0, -1), "right": (0, 1), "top": (1, -1), "bottom": (1, 1)}


def _shared_bounce(frames: int, size: int, radius: float, rng: np.random.Generator) -> MotionSample:
    """A bounce whose course comes from stop's eight directions and push's speeds: at the event the mover meets a
    wall it is heading to and its velocity across that wall flips, along the wall it keeps."""
    lo, hi = radius + 1, size - 1 - radius
    event = int(rng.integers(*event_window(frames), endpoint=True))
    step = np.array(DIRECTIONS[str(rng.choice(list(DIRECTIONS)))], dtype=np.float64)
    walls = [w for w, (axis, sign) in _WALLS.items() if step[axis] == sign]
    wall = walls[int(rng.integers(len(walls)))]
    axis, sign = _WALLS[wall]
    velocity = step / np.linalg.norm(step) * _shared_speed(hi - lo, frames, rng)
    time = np.arange(frames, dtype=np.float64) - event
    center = np.empty((frames, 2))
    center[:, axis] = (hi if sign > 0 else lo) - sign * abs(velocity[axis]) * np.abs(time)
    along = velocity[1 - axis] * time
    center[:, 1 - axis] = rng.uniform(lo - along.min(), hi - along.max()) + along
    return MotionSample([Track(center, np.ones(frames), np.full(frames, rng.uniform(-0.3, 0.3)))], event, {"wall": wall})


def _bounce(frames: int, size: int, radius: float, rng: np.random.Generator, shared_motion: bool = False) -> MotionSample:
    if shared_motion:
        return _shared_bounce(frames, size, radius, rng)
    lo, hi = radius + 1, size - 1 - radius
    event = int(rng.integers(*event_window(frames), endpoint=True))
    wall = str(rng.choice(["left", "right", "top", "bottom"]))
    axis = 0 if wall in ("left", "right") else 1
    speed = rng.uniform(0.5, 0.9) * (hi - lo) / max(event, frames - 1 - event)
    offset = speed * np.abs(np.arange(frames) - event)
    along = lo + offset if wall in ("left", "top") else hi - offset
    center = np.empty((frames, 2))
    center[:, axis] = along
    center[:, 1 - axis] = rng.uniform(lo, hi)
    return MotionSample([Track(center, np.ones(frames), np.full(frames, rng.uniform(-0.3, 0.3)))], event, {"wall": wall})


def _start_or_stop(starts: bool, frames: int, size: int, radius: float, rng: np.random.Generator,
                   shared_motion: bool = False) -> MotionSample:
    lo, hi = radius + 1, size - 1 - radius
    event = int(rng.integers(*event_window(frames), endpoint=True))
    direction = str(rng.choice(list(DIRECTIONS)))
    step = np.array(DIRECTIONS[direction], dtype=np.float64)
    if shared_motion and not starts:
        # A unit step, so a diagonal mover is not sqrt(2) times faster than the others.
        step /= np.linalg.norm(step)
        travel = _shared_speed(hi - lo, frames, rng) * event
    else:
        travel = (hi - lo) * rng.uniform(0.45, 0.8)
    start = np.array([rng.uniform(lo + travel * max(-s, 0), hi - travel * max(s, 0)) for s in step])
    time = np.arange(frames)
    progress = np.clip((time - event) / (frames - 1 - event), 0, 1) if starts else np.clip(time / event, 0, 1)
    center = _lerp(start, start + step * travel, progress)
    track = Track(center, np.ones(frames), np.full(frames, rng.uniform(-0.3, 0.3)))
    return MotionSample([track], event, {"direction": direction, "start_or_stop": "start" if starts else "stop"})


def _approach(towards: bool, frames: int, size: int, radii: tuple[float, float], rng: np.random.Generator) -> MotionSample:
    ra, rb = radii
    span = size - 2 - 2 * ra
    for _ in range(_MAX_TRIES):
        target = rng.uniform(rb + 1, size - 1 - rb, size=2)
        direction = _unit(rng)
        near = target + direction * (ra + rb + rng.uniform(2, 5))
        far = near + direction * span * rng.uniform(0.35, 0.6)
        if _fits(np.stack([near, far]), ra, size):
            progress = np.linspace(0, 1, frames)
            center = _lerp(far, near, progress) if towards else _lerp(near, far, progress)
            tracks = [Track(center, np.ones(frames), np.zeros(frames)), Track.static(target, frames)]
            return MotionSample(tracks, facts={"relation": "towards" if towards else "away from"})
    raise RuntimeError(f"could not place an approach of radii {radii} in a {size}px frame")


def _push(frames: int, size: int, radii: tuple[float, float], rng: np.random.Generator, shared_motion: bool = False) -> MotionSample:
    ra, rb = radii
    span = size - 2 - 2 * ra
    time = np.arange(frames, dtype=np.float64)
    for _ in range(_MAX_TRIES):
        event = int(rng.integers(*event_window(frames), endpoint=True))
        if shared_motion:
            step = np.array(DIRECTIONS[str(rng.choice(list(DIRECTIONS)))], dtype=np.float64)
            direction = step / np.linalg.norm(step)
        else:
            direction = _unit(rng)
        speed = span * rng.uniform(0.5, 0.8) / (frames - 1)
        b_start = rng.uniform(rb + 1, size - 1 - rb, size=2)
        a_center = (b_start - direction * (ra + rb))[None, :] + direction[None, :] * speed * (time - event)[:, None]
        b_center = b_start[None, :] + direction[None, :] * speed * np.clip(time - event, 0, None)[:, None]
        if _fits(a_center, ra, size) and _fits(b_center, rb, size):
            tracks = [Track(a_center, np.ones(frames), np.zeros(frames)), Track(b_center, np.ones(frames), np.zeros(frames))]
            return MotionSample(tracks, event, {"first_mover": "a"})
    raise RuntimeError(f"could not place a push of radii {radii} in a {size}px frame")


def _collide(frames: int, size: int, radii: tuple[float, float], rng: np.random.Generator) -> MotionSample:
    ra, rb = radii
    time = np.arange(frames, dtype=np.float64)
    for _ in range(_MAX_TRIES):
        event = int(rng.integers(*event_window(frames), endpoint=True))
        direction = _unit(rng)
        longest = max(event, frames - 1 - event)
        fast = (size - 2 - 2 * ra) * rng.uniform(0.45, 0.7) / longest
        slow = fast / rng.uniform(2.0, 3.0)
        a_is_faster = bool(rng.random() < 0.5)
        speed_a, speed_b = (fast, slow) if a_is_faster else (slow, fast)
        contact = rng.uniform(ra + 1, size - 1 - ra, size=2)
        # Each object reverses its own velocity at contact, so the faster one stays faster throughout.
        distance = np.abs(time - event)[:, None]
        a_center = (contact - direction * ra)[None, :] - direction[None, :] * speed_a * distance
        b_center = (contact + direction * rb)[None, :] + direction[None, :] * speed_b * distance
        if _fits(a_center, ra, size) and _fits(b_center, rb, size):
            tracks = [Track(a_center, np.ones(frames), np.zeros(frames)), Track(b_center, np.ones(frames), np.zeros(frames))]
            return MotionSample(tracks, event, {"faster": "a" if a_is_faster else "b"})
    raise RuntimeError(f"could not place a collision of radii {radii} in a {size}px frame")


def _pass(behind: bool, frames: int, size: int, radii: tuple[float, float], rng: np.random.Generator) -> MotionSample:
    ra, rb = radii
    time = np.arange(frames, dtype=np.float64)
    for _ in range(_MAX_TRIES):
        event = int(rng.integers(*event_window(frames), endpoint=True))
        direction = _unit(rng)
        normal = np.array([-direction[1], direction[0]])
        occluder = rng.uniform(rb + 1, size - 1 - rb, size=2)
        # Overlap starts at the event; by the last frame the mover's centre is well past the occluder's centre.
        speed = rng.uniform(1.0, 1.3) * (ra + 2 * rb) / (frames - 1 - event)
        touching = occluder + normal * rng.uniform(-0.3, 0.3) * rb - direction * (ra + rb)
        a_center = touching[None, :] + direction[None, :] * speed * (time - event)[:, None]
        if _fits(a_center, ra, size):
            tracks = [Track(a_center, np.ones(frames), np.zeros(frames)), Track.static(occluder, frames)]
            z_order = (0, 1) if behind else (1, 0)
            return MotionSample(tracks, event, {"occlusion": "behind" if behind else "in front of"}, z_order)
    raise RuntimeError(f"could not place an occlusion of radii {radii} in a {size}px frame")


def sample_motion(name: str, frames: int, size: int, radii: tuple[float, ...], rng: np.random.Generator,
                  shared_motion: bool = False) -> MotionSample:
    """Trajectories realizing motion class `name`.

    Args:
        name: a MOTION_NAMES entry.
        frames: clip length T.
        size: frame side in pixels.
        radii: base radius in pixels of each participating object (main object first).
        rng: the clip's random generator.
        shared_motion: the movers of bounce, stop and push draw their course from one distribution: a speed in
            SHARED_EVENT_SPEED (push's range) along one of the eight DIRECTIONS (stop's), so how fast and which
            way a mover goes before one of these events does not tell which comes; only what lies ahead of it
            (a wall, an object, nothing) does. Off by default: the clips are those of earlier worlds.
    """
    if name not in MOTIONS_BY_NAME:
        raise ValueError(f"unknown motion {name!r}; expected one of {MOTION_NAMES}")
    ra = radii[0]
    if name in _TRANSLATION_DIRECTION:
        return _translate(_TRANSLATION_DIRECTION[name], frames, size, ra, rng)
    single = {
        "rotate_cw": lambda: _rotate(True, frames, size, ra, rng),
        "rotate_ccw": lambda: _rotate(False, frames, size, ra, rng),
        "grow": lambda: _resize(True, frames, size, ra, rng),
        "shrink": lambda: _resize(False, frames, size, ra, rng),
        "bounce": lambda: _bounce(frames, size, ra, rng, shared_motion),
        "still": lambda: _still(frames, size, ra, rng),
        "start": lambda: _start_or_stop(True, frames, size, ra, rng),
        "stop": lambda: _start_or_stop(False, frames, size, ra, rng, shared_motion),
    }
    if name in single:
        return single[name]()
    pair = (radii[0], radii[1])
    double = {
        "approach": lambda: _approach(True, frames, size, pair, rng),
        "move_away": lambda: _approach(False, frames, size, pair, rng),
        "push": lambda: _push(frames, size, pair, rng, shared_motion),
        "collide": lambda: _collide(frames, size, pair, rng),
        "pass_behind": lambda: _pass(True, frames, size, pair, rng),
        "pass_front": lambda: _pass(False, frames, size, pair, rng),
    }
    return double[name]()
