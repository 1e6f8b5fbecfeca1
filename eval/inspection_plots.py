"""Pictures of the world-model diagnostics drawn with Pillow (the project has no plotting library): energy
heatmaps with markers, a labelled x-y plot, and frame strips with row labels."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

# A dark-blue -> green -> yellow ramp (viridis-like): low energy dark, high energy bright.
RAMP = np.array([(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)], dtype=np.float64)


def colorize(values: np.ndarray) -> np.ndarray:
    """`(H, W)` floats -> `(H, W, 3)` uint8 through `RAMP`, scaled to the array's own min and max."""
    low, high = float(values.min()), float(values.max())
    unit = (values - low) / (high - low) if high > low else np.zeros_like(values)
    position = unit * (len(RAMP) - 1)
    index = np.clip(position.astype(int), 0, len(RAMP) - 2)
    fraction = (position - index)[..., None]
    return (RAMP[index] * (1 - fraction) + RAMP[index + 1] * fraction).astype(np.uint8)


def heatmap_panel(energy: np.ndarray, extent: float, true_xy: Sequence[float], argmin_xy: Sequence[float],
                  title: str, side: int = 240) -> Image.Image:
    """A `(points, points)` landscape (row = dy from -extent at the bottom, column = dx) with the true action as
    a white cross and the argmin as a red circle; about `side` pixels wide whatever the grid."""
    points = energy.shape[0]
    cell = max(1, side // points)
    side = points * cell
    margin_top, margin = 18, 4
    heat = Image.fromarray(colorize(energy[::-1])).resize((side, side), Image.NEAREST)
    panel = Image.new("RGB", (side + 2 * margin, side + margin_top + margin), "white")
    panel.paste(heat, (margin, margin_top))
    draw = ImageDraw.Draw(panel)

    def to_pixel(xy):
        u = (xy[0] + extent) / (2 * extent) * (points - 1) + 0.5
        v = (xy[1] + extent) / (2 * extent) * (points - 1) + 0.5
        return margin + u * cell, margin_top + side - v * cell

    x, y = to_pixel(true_xy)
    draw.line([x - 6, y - 6, x + 6, y + 6], fill="white", width=2)
    draw.line([x - 6, y + 6, x + 6, y - 6], fill="white", width=2)
    x, y = to_pixel(argmin_xy)
    draw.ellipse([x - 6, y - 6, x + 6, y + 6], outline="red", width=2)
    draw.text((margin, 3), title, fill="black")
    return panel


def hstack(images: Sequence[Image.Image], gap: int = 6) -> Image.Image:
    width = sum(image.width for image in images) + gap * (len(images) - 1)
    result = Image.new("RGB", (width, max(image.height for image in images)), "white")
    x = 0
    for image in images:
        result.paste(image, (x, 0))
        x += image.width + gap
    return result


def line_plot(xs: Sequence[float], series: dict[str, Sequence[float]], xlabel: str, ylabel: str, title: str,
              size=(560, 380)) -> Image.Image:
    """Lines with dots through (x, y) for each named series, axes labelled with their ranges."""
    colors = ("black", "red", "blue", "green")
    width, height = size
    left, right, top, bottom = 70, 20, 30, 45
    values = [v for ys in series.values() for v in ys]
    x_low, x_high = min(xs), max(xs)
    y_low, y_high = min(values), max(values)
    x_span, y_span = (x_high - x_low) or 1.0, (y_high - y_low) or 1.0
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([left, top, width - right, height - bottom], outline="black")

    def to_pixel(x, y):
        return (left + (x - x_low) / x_span * (width - left - right),
                height - bottom - (y - y_low) / y_span * (height - top - bottom))

    for (name, ys), color in zip(series.items(), colors):
        pixels = [to_pixel(x, y) for x, y in zip(xs, ys)]
        draw.line(pixels, fill=color, width=2)
        for px, py in pixels:
            draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=color)
    for i, name in enumerate(series):
        draw.text((left + 8, top + 6 + 14 * i), name, fill=colors[i % len(colors)])
    draw.text((left, 8), title, fill="black")
    draw.text((left, height - bottom + 22), f"{xlabel}: {x_low:g} .. {x_high:g}", fill="black")
    draw.text((4, top), f"{y_high:.3g}", fill="black")
    draw.text((4, height - bottom - 10), f"{y_low:.3g}", fill="black")
    draw.text((4, (top + height - bottom) // 2), ylabel[:10], fill="black")
    return image


def frame_strip(rows: Sequence[np.ndarray], labels: Sequence[str], scale: int = 2, label_width: int = 110) -> Image.Image:
    """Rows of frames, each `(T, H, W, 3)` uint8 (rows may be shorter: left-aligned), with a label per row."""
    height, width = rows[0].shape[1:3]
    columns = max(len(row) for row in rows)
    cell_w, cell_h = width * scale + 2, height * scale + 2
    image = Image.new("RGB", (label_width + columns * cell_w, len(rows) * cell_h), "white")
    draw = ImageDraw.Draw(image)
    for r, (row, label) in enumerate(zip(rows, labels)):
        draw.text((4, r * cell_h + cell_h // 2 - 6), label, fill="black")
        for c, frame in enumerate(row):
            tile = Image.fromarray(frame).resize((width * scale, height * scale), Image.NEAREST)
            image.paste(tile, (label_width + c * cell_w + 1, r * cell_h + 1))
    return image


__all__ = ["colorize", "frame_strip", "heatmap_panel", "hstack", "line_plot"]
