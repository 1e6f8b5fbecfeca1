"""Compositional train/test split of the synthetic world.

A (motion, object category, color) triple of the main object is *held out* when
    (motion index + category index + color index) % number of colors == 0.
Held-out triples never occur in train. In test, a `compositional_fraction` of clips is drawn from held-out
triples (flag `compositional: true`) and the rest from the same distribution as train. Every motion,
category and color, and every pair of them, still occurs in train (each (motion, category) pair loses one
color of eight; each (motion, color) and (category, color) pair loses at most a few partners), so a
compositional test clip shows known parts in a combination never seen together.
"""

from __future__ import annotations

import numpy as np

from vjepa_vlm.data.synthetic_motion import MOTIONS_BY_NAME, MOTION_NAMES
from vjepa_vlm.data.synthetic_objects import CATEGORIES, COLOR_NAMES, ROTATION_SYMMETRIC

SPLITS = ("train", "test")
SPLIT_RULES = __doc__.strip()


def is_held_out(motion: str, category: str, color: str) -> bool:
    """Whether the main-object triple is reserved for the compositional test."""
    total = MOTION_NAMES.index(motion) + CATEGORIES.index(category) + COLOR_NAMES.index(color)
    return total % len(COLOR_NAMES) == 0


def allowed_categories(motion: str) -> list[str]:
    """Main-object categories a motion can use (rotation needs a shape whose rotation is visible)."""
    if MOTIONS_BY_NAME[motion].needs_visible_rotation:
        return [c for c in CATEGORIES if c not in ROTATION_SYMMETRIC]
    return list(CATEGORIES)


def held_out_triples(motions: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """All held-out (motion, category, color) triples among `motions`, for meta.json."""
    return [(m, c, k) for m in motions for c in allowed_categories(m) for k in COLOR_NAMES if is_held_out(m, c, k)]


def sample_main_appearance(motion: str, held_out: bool, rng: np.random.Generator) -> tuple[str, str]:
    """(category, color) of the main object, inside (held_out=True) or outside the held-out set."""
    category = str(rng.choice(allowed_categories(motion)))
    colors = [k for k in COLOR_NAMES if is_held_out(motion, category, k) == held_out]
    return category, str(rng.choice(colors))
