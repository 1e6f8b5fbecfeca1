"""Object vocabulary of the synthetic world: colors, geometric shapes and real handwritten digits as alpha sprites.

A sprite is a square float32 alpha mask in [0, 1]; the renderer scales, rotates and colors it.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image

# Saturated colors far from the muted background palette (see synthetic_render.draw_background).
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 90, 235),
    "yellow": (235, 215, 40),
    "magenta": (210, 60, 200),
    "cyan": (40, 205, 215),
    "orange": (245, 140, 30),
    "white": (240, 240, 240),
}
COLOR_NAMES = tuple(COLORS)

SHAPES = ("circle", "square", "triangle", "star", "cross", "ring")
DIGITS = tuple(f"digit {d}" for d in range(10))
CATEGORIES = SHAPES + DIGITS
# Rotation of a circle or ring is invisible, so rotation classes never use them.
ROTATION_SYMMETRIC = frozenset({"circle", "ring"})

SPRITE_RESOLUTION = 32
_SUPERSAMPLE = 4


def object_phrase(category: str, color: str) -> str:
    """Noun phrase used in captions and questions, e.g. 'red triangle' or 'blue digit 3'."""
    return f"{color} {category}"


def _shape_coverage(shape: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Boolean inside-test on normalized coordinates in [-1, 1] (y points down, as in images)."""
    radius = np.hypot(x, y)
    if shape == "circle":
        return radius <= 0.9
    if shape == "ring":
        return (radius <= 0.9) & (radius >= 0.5)
    if shape == "square":
        return np.maximum(np.abs(x), np.abs(y)) <= 0.72
    if shape == "cross":
        return ((np.abs(x) <= 0.28) & (np.abs(y) <= 0.88)) | ((np.abs(y) <= 0.28) & (np.abs(x) <= 0.88))
    if shape == "triangle":
        vertices = np.array([[0.0, -0.9], [0.86, 0.62], [-0.86, 0.62]])
        inside = np.ones_like(x, dtype=bool)
        for (x0, y0), (x1, y1) in zip(vertices, np.roll(vertices, -1, axis=0)):
            inside &= (x1 - x0) * (y - y0) - (y1 - y0) * (x - x0) >= 0
        return inside
    if shape == "star":
        # Boundary radius alternates linearly (in angle) between 5 outer tips and 5 inner corners.
        phase = (np.arctan2(x, -y) / (2 * np.pi) * 5) % 1.0
        boundary = 0.38 + (0.95 - 0.38) * np.abs(2 * phase - 1)
        return radius <= boundary
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


@lru_cache(maxsize=None)
def shape_sprite(shape: str, resolution: int = SPRITE_RESOLUTION) -> np.ndarray:
    """Anti-aliased alpha mask of a geometric shape (coverage averaged over a supersampled grid)."""
    fine = resolution * _SUPERSAMPLE
    coords = (np.arange(fine) + 0.5) / fine * 2 - 1
    y, x = np.meshgrid(coords, coords, indexing="ij")
    coverage = _shape_coverage(shape, x, y).astype(np.float32)
    return coverage.reshape(resolution, _SUPERSAMPLE, resolution, _SUPERSAMPLE).mean(axis=(1, 3))


@lru_cache(maxsize=1)
def _digit_bank() -> tuple[np.ndarray, np.ndarray]:
    # Imported lazily: scikit-learn's import is the slowest part of a worker's start-up.
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images.astype(np.float32) / 16.0, digits.target.astype(np.int64)


def digit_sprite(digit: int, rng: np.random.Generator, resolution: int = SPRITE_RESOLUTION) -> np.ndarray:
    """A randomly chosen real handwritten `digit` (scikit-learn's 8x8 bank) upscaled to an alpha mask."""
    images, targets = _digit_bank()
    choices = np.flatnonzero(targets == digit)
    image = images[rng.choice(choices)]
    upscaled = np.asarray(Image.fromarray(image).resize((resolution, resolution), Image.BICUBIC))
    # A soft threshold turns the blurry grey strokes into an opaque glyph with smooth edges.
    return np.clip((upscaled - 0.3) * 3.0, 0.0, 1.0).astype(np.float32)


def make_sprite(category: str, rng: np.random.Generator, resolution: int = SPRITE_RESOLUTION) -> np.ndarray:
    """Alpha mask for any entry of CATEGORIES."""
    if category in SHAPES:
        return shape_sprite(category, resolution)
    if category in DIGITS:
        return digit_sprite(int(category.split()[-1]), rng, resolution)
    raise ValueError(f"unknown object category {category!r}; expected one of {CATEGORIES}")
