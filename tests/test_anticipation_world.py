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


def speed_shares(motion: str, shared: bool, count: int = 40) -> np.ndarray:
    """Per clip: the main object's speed in the last context frame as a share of its free span per clip length."""
    rng = np.random.default_rng([11, len(motion), shared])
    speeds, spans = [], []
    for _ in range(count):
        scene = sample_scene(motion, frames=FRAMES, size=SIZE, max_objects=3, compositional=False, rng=rng,
                             shared_event_speed=shared)
        a, end = scene.sample.tracks[0].center, context_end(scene)
        speeds.append(np.linalg.norm(a[end - 1] - a[end - 2]))
        spans.append(SIZE - 2 - scene.objects[0].diameter)
    return np.array(speeds) * (FRAMES - 1) / np.array(spans)


def test_shared_event_speed_gives_bounce_stop_and_push_movers_one_speed_range():
    low, high = SHARED_EVENT_SPEED
    for motion in ("bounce", "stop", "push"):
        share = speed_shares(motion, shared=True)
        assert share.min() >= low - 1e-9 and share.max() <= high + 1e-9, motion
    # Off (the default), bounce and stop keep their own ranges: faster than push's on average, so speed hints the event.
    mean_share = {m: speed_shares(m, shared=False).mean() for m in ("bounce", "stop", "push")}
    assert mean_share["bounce"] > high and mean_share["stop"] > high and low <= mean_share["push"] <= high


@pytest.mark.parametrize("motion", ["bounce", "stop", "push"])
def test_shared_event_speed_keeps_the_event_on_course_and_in_frame(motion):
    rng = np.random.default_rng([5, len(motion)])
    for _ in range(20):
        scene = sample_scene(motion, frames=FRAMES, size=SIZE, max_objects=3, compositional=False, rng=rng,
                             shared_event_speed=True)
        event, end = scene.sample.event_frame, context_end(scene)
        a = scene.sample.tracks[0].center
        ra = scene.objects[0].diameter / 2
        assert a.min() >= ra + 1 - 1e-9 and a.max() <= SIZE - 1 - ra + 1e-9
        if motion == "stop":
            assert np.ptp(a[event:], axis=0).max() < 1e-9 and np.abs(a[end - 1] - a[end - 2]).max() > 0.1
            continue
        np.testing.assert_allclose(extrapolate(a, end, event), a[event], atol=1e-6)
        if motion == "bounce":
            assert np.isclose(a[event], ra + 1).any() or np.isclose(a[event], SIZE - 1 - ra).any()


def test_shared_event_speed_is_off_by_default_and_reaches_the_clips():
    assert WorldConfig().shared_event_speed is False
    plain = WorldConfig(frames=FRAMES, size=SIZE, fps=FPS, motions=("bounce", "stop"), anticipation_s=1.0)
    shared = WorldConfig(frames=FRAMES, size=SIZE, fps=FPS, motions=("bounce", "stop"), anticipation_s=1.0,
                         shared_event_speed=True)
    # Same seed and index: the same motion and event, only the mover's speed differs.
    for index in range(4):
        a, b = make_clip(plain, 0, "train", index, None), make_clip(shared, 0, "train", index, None)
        assert a["motion_name"] == b["motion_name"] and a["anticipation"] == b["anticipation"]
    args = parse_args(["--out", "x", "--train", "1", "--test", "1", "--seed", "0", "--shared-event-speed"])
    assert args.shared_event_speed is True
