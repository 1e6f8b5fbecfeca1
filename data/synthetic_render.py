"""Vectorized rendering of synthetic scenes: a textured background plus alpha-composited, posed sprites."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from vjepa_vlm.data.synthetic_motion import Track


@dataclass
class SceneObject:
    """One object to draw.

    Args:
        sprite: (R, R) alpha mask in [0, 1].
        color: RGB in 0..255.
        diameter: base diameter in pixels (the sprite's side before `track.scale`).
        track: per-frame pose.
    """

    sprite: np.ndarray
    color: tuple[int, int, int]
    diameter: float
    track: Track


def draw_background(frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """(T, H, W, 3) float32 muted, low-frequency textured background with mild per-frame sensor noise.

    Kept dark and desaturated so every palette color stands out; the per-frame noise makes a still scene
    differ between frames, as a real camera would.
    """
    cells = int(rng.integers(3, 9))
    coarse = rng.uniform(-1, 1, size=(cells, cells, 3)).astype(np.float32)
    base = rng.uniform(55, 110)
    tint = rng.uniform(-12, 12, size=3)
    texture = np.stack(
        [np.asarray(Image.fromarray(coarse[..., c]).resize((size, size), Image.BICUBIC)) for c in range(3)], axis=-1
    )
    still = base + tint + 22.0 * texture + rng.normal(0, 4.0, size=(size, size, 3))
    noise = rng.standard_normal(size=(frames, size, size, 3), dtype=np.float32)
    noise *= 2.0
    noise += still.astype(np.float32)[None]
    return noise


def _alpha_for_frames(obj: SceneObject, size: int) -> tuple[np.ndarray, tuple[slice, slice]]:
    """Per-frame alpha of `obj` inside the bounding box that contains it in every frame."""
    track = obj.track
    reach = 0.5 * obj.diameter * track.scale.max() * np.sqrt(2) + 1
    x0 = int(max(np.floor(track.center[:, 0].min() - reach), 0))
    x1 = int(min(np.ceil(track.center[:, 0].max() + reach), size))
    y0 = int(max(np.floor(track.center[:, 1].min() - reach), 0))
    y1 = int(min(np.ceil(track.center[:, 1].max() + reach), size))
    ys, xs = np.meshgrid(np.arange(y0, y1) + 0.5, np.arange(x0, x1) + 0.5, indexing="ij")
    dx = xs[None] - track.center[:, 0, None, None]
    dy = ys[None] - track.center[:, 1, None, None]
    # Inverse pose: undo the clockwise rotation (y down), then the scale, to land in sprite coordinates.
    cos, sin = np.cos(track.angle)[:, None, None], np.sin(track.angle)[:, None, None]
    u = cos * dx + sin * dy
    v = -sin * dx + cos * dy
    resolution = obj.sprite.shape[0]
    pixels_per_texel = (obj.diameter * track.scale / resolution)[:, None, None]
    su = u / pixels_per_texel + resolution / 2 - 0.5
    sv = v / pixels_per_texel + resolution / 2 - 0.5
    return _bilinear(obj.sprite, su, sv), (slice(y0, y1), slice(x0, x1))


def _bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sample `image` at fractional coordinates; zero outside."""
    padded = np.pad(image, 1)
    x = np.clip(x + 1, 0, padded.shape[1] - 1.001)
    y = np.clip(y + 1, 0, padded.shape[0] - 1.001)
    ix, iy = x.astype(np.int64), y.astype(np.int64)
    fx, fy = (x - ix).astype(np.float32), (y - iy).astype(np.float32)
    top = padded[iy, ix] * (1 - fx) + padded[iy, ix + 1] * fx
    bottom = padded[iy + 1, ix] * (1 - fx) + padded[iy + 1, ix + 1] * fx
    return top * (1 - fy) + bottom * fy


def render_scene(objects: list[SceneObject], background: np.ndarray) -> np.ndarray:
    """Composite `objects` (back to front) over `background` (T, H, W, 3 float); returns uint8 frames."""
    canvas = background.copy()
    size = canvas.shape[1]
    for obj in objects:
        alpha, (rows, cols) = _alpha_for_frames(obj, size)
        region = canvas[:, rows, cols]
        color = np.asarray(obj.color, dtype=np.float32)
        region += alpha[..., None] * (color - region)
    return np.clip(canvas, 0, 255).round().astype(np.uint8)
