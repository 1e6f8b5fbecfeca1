"""Sampling one synthetic scene: which motion, which objects, where they go, and drawing it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vjepa_vlm.data.synthetic_labels import SceneObjectLabel
from vjepa_vlm.data.synthetic_motion import MOTIONS_BY_NAME, MotionClass, MotionSample, Track, sample_motion
from vjepa_vlm.data.synthetic_objects import CATEGORIES, COLOR_NAMES, COLORS, make_sprite
from vjepa_vlm.data.synthetic_render import SceneObject, draw_background, render_scene
from vjepa_vlm.data.synthetic_splits import sample_main_appearance

# Object diameters as fractions of the frame side. The main object is drawn larger than the others (grow/shrink
# rescale it over time), so "the object" of an image-level label is identifiable in a single frame.
MAIN_DIAMETER = (0.22, 0.28)
OTHER_DIAMETER = (0.15, 0.19)
_PLACEMENT_TRIES = 50


@dataclass
class Scene:
    """A sampled clip before rendering.

    Args:
        motion: the clip's motion class.
        sample: trajectories, event frame and facts of the participating objects.
        objects: drawable objects, main object first, then the second participant, then distractors.
        labels: appearance labels aligned with `objects`.
        draw_order: indices into `objects`, back to front.
        compositional: whether the main-object triple is held out of train.
    """

    motion: MotionClass
    sample: MotionSample
    objects: list[SceneObject]
    labels: list[SceneObjectLabel]
    draw_order: list[int]
    compositional: bool


def _place_distractor(tracks: list[Track], radii: list[float], radius: float, size: int, rng: np.random.Generator) -> np.ndarray | None:
    """A still position clear of every frame of every placed object, or None when nothing fits."""
    for _ in range(_PLACEMENT_TRIES):
        point = rng.uniform(radius + 1, size - 1 - radius, size=2)
        clear = all(
            np.hypot(*(track.center - point).T).min() > radius + other * track.scale.max() + 2
            for track, other in zip(tracks, radii)
        )
        if clear:
            return point
    return None


def sample_scene(motion_name: str, *, frames: int, size: int, max_objects: int, compositional: bool, rng: np.random.Generator,
                 shared_event_motion: bool = False) -> Scene:
    """Sample a scene showing `motion_name` with 1..max_objects objects of distinct categories and colors.

    Distractors are still and placed clear of the moving objects' paths, so they never take part in the
    motion; when no clear spot exists the scene simply has fewer objects (counting labels use the real count).
    """
    motion = MOTIONS_BY_NAME[motion_name]
    category, color = sample_main_appearance(motion_name, compositional, rng)
    wanted = int(rng.integers(motion.num_objects, max_objects, endpoint=True))
    free_categories = [c for c in CATEGORIES if c != category]
    free_colors = [k for k in COLOR_NAMES if k != color]
    others = rng.choice(len(free_categories), size=wanted - 1, replace=False)
    other_colors = rng.choice(len(free_colors), size=wanted - 1, replace=False)
    appearances = [(category, color)] + [(free_categories[i], free_colors[j]) for i, j in zip(others, other_colors)]
    diameters = [rng.uniform(*MAIN_DIAMETER) * size] + [rng.uniform(*OTHER_DIAMETER) * size for _ in range(wanted - 1)]

    participants = motion.num_objects
    sample = sample_motion(motion_name, frames, size, tuple(d / 2 for d in diameters[:participants]), rng, shared_event_motion)
    tracks = list(sample.tracks)
    for diameter in diameters[participants:]:
        point = _place_distractor(tracks, [d / 2 for d in diameters[: len(tracks)]], diameter / 2, size, rng)
        if point is None:
            break
        tracks.append(Track.static(point, frames, rng.uniform(-0.3, 0.3)))

    objects, labels = [], []
    for index, track in enumerate(tracks):
        obj_category, obj_color = appearances[index]
        objects.append(SceneObject(make_sprite(obj_category, rng), COLORS[obj_color], diameters[index], track))
        role = "main" if index == 0 else "second" if index < participants else "distractor"
        labels.append(SceneObjectLabel(obj_category, obj_color, role, track.is_moving()))
    draw_order = list(range(participants, len(objects))) + [i for i in sample.z_order if i < participants]
    return Scene(motion, sample, objects, labels, draw_order, compositional)


def render(scene: Scene, frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 (T, size, size, 3) frames of `scene`."""
    return render_scene([scene.objects[i] for i in scene.draw_order], draw_background(frames, size, rng))
