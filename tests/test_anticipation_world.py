"""The anticipation world's events can be foreseen from a context that ends up to 1.75 s before them.

The world of docs/anticipation.md (64 frames at 8 fps, motions bounce / start / stop / push / collide) is only a
fair anticipation benchmark if what happens at the event follows from the context: these tests extrapolate the
context's motion at constant velocity and check that it lands on the event.
"""

import numpy as np
import pytest
from vjepa_vlm.data.synthetic_motion import SHARED_EVENT_SPEED, event_window
from vjepa_vlm.data.synthetic_scene import sample_scene
from vjepa_vlm.data.synthetic_world import WorldConfig, make_clip
from vjepa_vlm.scripts.make_synthetic_data import parse_args

FRAMES, SIZE, FPS = 64, 64, 8.0
LONGEST_ANTICIPATION_S = 1.75  # the top of the training range U(0.25, 1.75) s
GAP = int(LONGEST_ANTICIPATION_S * FPS)


def scenes(motion: str, count: int = 12):
    rng = np.random.default_rng([7, len(motion)])
    return [sample_scene(motion, frames=FRAMES, size=SIZE, max_objects=3, compositional=False, rng=rng) for _ in range(count)]


def context_end(scene) -> int:
    return scene.sample.event_frame - GAP


def extrapolate(center: np.ndarray, end: int, frame: int) -> np.ndarray:
    """Constant-velocity extrapolation to `frame` from the last two context frames (< end)."""
    velocity = center[end - 1] - center[end - 2]
    return center[end - 1] + velocity * (frame - end + 1)


def test_the_documented_world_leaves_a_context_at_the_longest_anticipation_time():
    config = WorldConfig(frames=FRAMES, size=SIZE, fps=FPS, motions=("bounce", "start", "stop", "push", "collide"),
                         anticipation_s=1.0)
    first_event = event_window(config.frames)[0]
    assert first_event - GAP >= 8  # at least a tubelet-aligned 2 s context at 4 fps has real frames in it
    assert config.anticipation_frames == 8


@pytest.mark.parametrize("motion", ["bounce", "push", "collide"])
def test_contact_is_where_the_context_is_heading(motion):
    for scene in scenes(motion):
        event, end = scene.sample.event_frame, context_end(scene)
        a = scene.sample.tracks[0].center
        ra = scene.objects[0].diameter / 2
        predicted_a = extrapolate(a, end, event)
        np.testing.assert_allclose(predicted_a, a[event], atol=1e-6)
        assert np.abs(a[end - 1] - a[end - 2]).max() > 0.1  # it visibly moves during the context
        if motion == "bounce":
            lo, hi = ra + 1, SIZE - 1 - ra
            assert np.isclose(predicted_a, lo).any() or np.isclose(predicted_a, hi).any()  # at a wall
            continue
        b = scene.sample.tracks[1].center
        rb = scene.objects[1].diameter / 2
        predicted_b = extrapolate(b, end, event)
        np.testing.assert_allclose(np.linalg.norm(predicted_a - predicted_b), ra + rb, atol=1e-6)  # touching
        if motion == "push":
            assert np.ptp(b[:end], axis=0).max() < 1e-9  # the pushed object waits still in the context
        # Before contact the two close in: the context shows which object is about to be hit (the noun).
        distance = np.linalg.norm(a[:end] - b[:end], axis=-1)
        assert (np.diff(distance) < 0).all()
        assert scene.labels[1].role == "second"


def test_start_and_stop_differ_by_motion_in_the_context():
    for scene in scenes("start"):
        a = scene.sample.tracks[0].center
        assert np.ptp(a[: context_end(scene)], axis=0).max() < 1e-9
        assert np.ptp(a[scene.sample.event_frame :], axis=0).max() > 1
    for scene in scenes("stop"):
        a, end = scene.sample.tracks[0].center, context_end(scene)
        assert np.abs(a[end - 1] - a[end - 2]).max() > 0.1
        assert np.ptp(a[scene.sample.event_frame :], axis=0).max() < 1e-9


def context_courses(motion: str, shared: bool, count: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Per clip: the main object's speed in the last context frame as a share of its free span per clip length,
    and its heading in degrees."""
    rng = np.random.default_rng([11, len(motion), shared])
    shares, headings = [], []
    for _ in range(count):
        scene = sample_scene(motion, frames=FRAMES, size=SIZE, max_objects=3, compositional=False, rng=rng,
                             shared_event_motion=shared)
        a, end = scene.sample.tracks[0].center, context_end(scene)
        velocity = a[end - 1] - a[end - 2]
        shares.append(np.linalg.norm(velocity) * (FRAMES - 1) / (SIZE - 2 - scene.objects[0].diameter))
        headings.append(np.degrees(np.arctan2(velocity[1], velocity[0])))
    return np.array(shares), np.array(headings)


def test_shared_event_motion_gives_bounce_stop_and_push_movers_one_course_distribution():
    low, high = SHARED_EVENT_SPEED
    for motion in ("bounce", "stop", "push"):
        share, heading = context_courses(motion, shared=True)
        assert share.min() >= low - 1e-9 and share.max() <= high + 1e-9, motion
        assert np.allclose(heading / 45, np.round(heading / 45), atol=1e-6), motion  # one of the 8 directions
        assert len(np.unique(np.round(heading))) >= 5, motion  # diagonals too, for bounce as well
    # Off (the default), each keeps its own course: bounce runs along an axis, push any way, bounce and stop are
    # faster than push on average: speed and heading hint the event.
    default = {m: context_courses(m, shared=False) for m in ("bounce", "stop", "push")}
    assert default["bounce"][0].mean() > high and default["stop"][0].mean() > high and low <= default["push"][0].mean() <= high
    assert np.allclose(default["bounce"][1] / 90, np.round(default["bounce"][1] / 90), atol=1e-6)
    assert not np.allclose(default["push"][1] / 45, np.round(default["push"][1] / 45), atol=1e-3)


@pytest.mark.parametrize("motion", ["bounce", "stop", "push"])
def test_shared_event_motion_keeps_the_event_on_course_and_in_frame(motion):
    rng = np.random.default_rng([5, len(motion)])
    for _ in range(20):
        scene = sample_scene(motion, frames=FRAMES, size=SIZE, max_objects=3, compositional=False, rng=rng,
                             shared_event_motion=True)
        event, end = scene.sample.event_frame, context_end(scene)
        a = scene.sample.tracks[0].center
        ra = scene.objects[0].diameter / 2
        assert a.min() >= ra + 1 - 1e-9 and a.max() <= SIZE - 1 - ra + 1e-9
        if motion == "stop":
            assert np.ptp(a[event:], axis=0).max() < 1e-9 and np.abs(a[end - 1] - a[end - 2]).max() > 0.1
            continue
        np.testing.assert_allclose(extrapolate(a, end, event), a[event], atol=1e-6)
        if motion == "bounce":
            axis = 0 if scene.sample.facts["wall"] in ("left", "right") else 1
            wall = ra + 1 if scene.sample.facts["wall"] in ("left", "top") else SIZE - 1 - ra
            assert np.isclose(a[event, axis], wall)
            before, after = a[event] - a[event - 1], a[event + 1] - a[event]
            np.testing.assert_allclose(after[axis], -before[axis], atol=1e-9)  # across the wall it flips
            np.testing.assert_allclose(after[1 - axis], before[1 - axis], atol=1e-9)  # along the wall it keeps


def test_shared_event_motion_is_off_by_default_and_reaches_the_clips():
    assert WorldConfig().shared_event_motion is False
    plain = WorldConfig(frames=FRAMES, size=SIZE, fps=FPS, motions=("bounce", "stop"), anticipation_s=1.0)
    shared = WorldConfig(frames=FRAMES, size=SIZE, fps=FPS, motions=("bounce", "stop"), anticipation_s=1.0,
                         shared_event_motion=True)
    # Same seed and index: the same motion and event, only the mover's speed differs.
    for index in range(4):
        a, b = make_clip(plain, 0, "train", index, None), make_clip(shared, 0, "train", index, None)
        assert a["motion_name"] == b["motion_name"] and a["anticipation"] == b["anticipation"]
    args = parse_args(["--out", "x", "--train", "1", "--test", "1", "--seed", "0", "--shared-event-motion"])
    assert args.shared_event_motion is True
