"""Render a metrics.jsonl loss curve as a PNG with Pillow (no plotting library needed)."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw


def read_metric(metrics_path: str | os.PathLike, key: str = "loss") -> list[tuple[int, float]]:
    """(step, value) pairs of `key` from a JSONL log whose rows hold "step" and `key`."""
    points = []
    for line in Path(metrics_path).read_text().splitlines():
        row = json.loads(line)
        if key in row and math.isfinite(row[key]):
            points.append((int(row["step"]), float(row[key])))
    return points


def write_loss_curve(
    metrics_path: str | os.PathLike, png_path: str | os.PathLike, key: str = "loss", size=(640, 400)
) -> None:
    """Draw `key` against step (raw and moving average) with labelled axes; written atomically."""
    points = read_metric(metrics_path, key)
    if len(points) < 2:
        raise ValueError(f"{metrics_path} has {len(points)} '{key}' values; a curve needs at least 2")
    width, height = size
    left, right, top, bottom = 70, 20, 30, 40
    steps = [s for s, _ in points]
    values = [v for _, v in points]
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([left, top, width - right, height - bottom], outline="black")

    def to_xy(step, value):
        x = left + (step - steps[0]) / max(1, steps[-1] - steps[0]) * (width - left - right)
        y = height - bottom - (value - low) / span * (height - top - bottom)
        return x, y

    draw.line([to_xy(s, v) for s, v in points], fill=(174, 199, 232), width=1)
    window = max(1, len(points) // 50)
    smoothed = [sum(values[max(0, i - window + 1) : i + 1]) / len(values[max(0, i - window + 1) : i + 1]) for i in range(len(values))]
    draw.line([to_xy(s, v) for s, v in zip(steps, smoothed)], fill=(31, 119, 180), width=2)
    draw.text((left, 8), f"{key} vs step ({Path(metrics_path).parent.name}; dark: {window}-step moving average)", fill="black")
    draw.text((4, top), f"{high:.4g}", fill="black")
    draw.text((4, height - bottom - 10), f"{low:.4g}", fill="black")
    draw.text((left, height - bottom + 8), str(steps[0]), fill="black")
    draw.text((width - right - 40, height - bottom + 8), str(steps[-1]), fill="black")
    draw.text((width // 2 - 10, height - 18), "step", fill="black")
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=png_path.parent, suffix=".png", delete=False) as handle:
        image.save(handle, format="PNG")
    os.replace(handle.name, png_path)
