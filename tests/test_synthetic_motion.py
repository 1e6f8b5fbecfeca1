import numpy as np
import pytest

from vjepa_vlm.data.synthetic_motion import MOTION_NAMES, MOTIONS_BY_NAME, Track, event_window, sample_motion
from vjepa_vlm.data.synthetic_objects import CATEGORIES, make_sprite
from vjepa_vlm.data.synthetic_render import SceneObject, render_scene


@pytest.mark.parametrize("name", MOTION_NAMES)
@pytest.mark.parametrize("frames,size", [(16, 64), (64, 256)])
def test_every_motion_stays_in_frame_and_places_its_event(name, frames, size):
    radii = (0.14 * size, 0.09 * size)
    for seed in range(5):
        sample = sample_motion(name, frames, size, radii[: MOTIONS_BY_NAME[name].num_objects], np.random.default_rng(seed))
        assert len(sample.tracks) == MOTIONS_BY_NAME[name].num_objects
        for track, radius in zip(sample.tracks, radii):
            assert track.center.shape == (frames, 2)
            reach = radius * track.scale.max()
            assert track.center.min() >= reach and track.center.max() <= size - reach
        if MOTIONS_BY_NAME[name].event_verb:
            low, high = event_window(frames)
            assert low <= sample.event_frame <= high


def _sample(name, seed=0):
    return sample_motion(name, 16, 64, (9.0, 6.0), np.random.default_rng(seed))


def test_time_reversed_partners_differ_only_in_the_direction_of_time():
    x = lambda name: _sample(name).tracks[0].center[:, 0]
    assert np.all(np.diff(x("move_right")) > 0) and np.all(np.diff(x("move_left")) < 0)
    assert np.all(np.diff(_sample("rotate_cw").tracks[0].angle) > 0)
    assert np.all(np.diff(_sample("rotate_ccw").tracks[0].angle) < 0)
    assert np.all(np.diff(_sample("grow").tracks[0].scale) > 0)
    assert np.all(np.diff(_sample("shrink").tracks[0].scale) < 0)
    gap = lambda s: np.linalg.norm(s.tracks[0].center - s.tracks[1].center, axis=1)
    assert np.all(np.diff(gap(_sample("approach"))) < 0) and np.all(np.diff(gap(_sample("move_away"))) > 0)


def test_interactions_follow_their_story():
    push = _sample("push")
    pushed = push.tracks[1].center
    assert np.allclose(pushed[: push.event_frame + 1], pushed[0]) and not np.allclose(pushed[-1], pushed[0])
    for seed in range(5):
        collide = _sample("collide", seed)
        speeds = [np.linalg.norm(np.diff(t.center, axis=0), axis=1).mean() for t in collide.tracks]
        assert (speeds[0] > speeds[1]) == (collide.facts["faster"] == "a")
        gap = np.linalg.norm(collide.tracks[0].center - collide.tracks[1].center, axis=1)
        assert np.argmin(gap) == collide.event_frame
    behind, front = _sample("pass_behind"), _sample("pass_front")
    assert behind.z_order == (0, 1) and front.z_order == (1, 0)
    stop = _sample("stop").tracks[0].center
    assert np.allclose(stop[-1], stop[_sample("stop").event_frame])


def test_unknown_motion_is_rejected():
    with pytest.raises(ValueError, match="unknown motion 'fly'"):
        sample_motion("fly", 16, 64, (9.0,), np.random.default_rng(0))


def test_positive_angle_rotates_clockwise_on_screen():
    sprite = np.zeros((32, 32), np.float32)
    sprite[2:6, 14:18] = 1.0
    track = Track.static(np.array([32.0, 32.0]), 2)
    track.angle = np.array([0.0, np.pi / 2])
    frames = render_scene([SceneObject(sprite, (255, 255, 255), 32, track)], np.zeros((2, 64, 64, 3), np.float32))
    ys, xs = np.nonzero(frames[0, ..., 0] > 128)
    assert ys.mean() < 25 and abs(xs.mean() - 32) < 2
    ys, xs = np.nonzero(frames[1, ..., 0] > 128)
    assert xs.mean() > 39 and abs(ys.mean() - 32) < 2


def test_sprites_cover_every_category_and_digits_are_real_handwriting():
    rng = np.random.default_rng(0)
    for category in CATEGORIES:
        sprite = make_sprite(category, rng)
        assert sprite.shape == (32, 32) and 0.05 < sprite.mean() < 0.8
    first, second = make_sprite("digit 3", rng), make_sprite("digit 3", rng)
    assert not np.array_equal(first, second)
    with pytest.raises(ValueError, match="unknown object category"):
        make_sprite("hexagon", rng)
