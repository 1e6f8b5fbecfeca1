"""Image pixels for the VLM: the paper's modified Dynamic S² tiling (appendix E.1).

Repeating an image over the encoder's frames at one low resolution loses fine detail (appendix E.1), so an image
is instead cut into native-resolution tiles of the encoder's crop size: the tile grid (rows x cols, at most
`max_tiles` tiles) is the one that keeps the most of the image's own pixels for the least padding, the image
is resized into that canvas with its aspect ratio kept and padded, and the canvas is cut into tiles. A global
thumbnail (the whole image at the crop size) comes first so the LLM also sees the full scene; a one-tile grid
is its own thumbnail. Each tile is encoded as a still image, i.e. one tubelet.
"""

import numpy as np
import torch
import torch.nn.functional as F

from vjepa_vlm.data.normalization import IMAGENET_MEAN, IMAGENET_STD, frames_to_unit_float, normalize_frames


def to_float_chw(image) -> torch.Tensor:
    """A PIL image, or a uint8 (H, W, 3) array/tensor, as a float (3, H, W) tensor in [0, 1]."""
    if hasattr(image, "convert"):
        image = np.asarray(image.convert("RGB"))
    if np.ndim(image) != 3:
        raise ValueError(f"image must be uint8 RGB of shape (H, W, 3), got shape {np.shape(image)}")
    return frames_to_unit_float(np.array(image))


def resize(pixels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear, antialiased resize of float (N, 3, H, W) or (3, H, W) pixels."""
    batched = pixels if pixels.ndim == 4 else pixels.unsqueeze(0)
    out = F.interpolate(batched, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return out.clamp_(0.0, 1.0) if pixels.ndim == 4 else out[0].clamp_(0.0, 1.0)


def select_tile_grid(height: int, width: int, tile_size: int, max_tiles: int) -> tuple[int, int]:
    """The (rows, cols) grid of `tile_size` tiles that keeps the most native pixels, then wastes the fewest.

    A grid's canvas is `rows * tile_size` by `cols * tile_size`; the image is scaled to fit it with its
    aspect ratio kept, and never counts for more pixels than it has.
    """
    if height < 1 or width < 1 or max_tiles < 1:
        raise ValueError(f"need a non-empty image and max_tiles >= 1, got {height}x{width}, max_tiles={max_tiles}")
    best, best_key = (1, 1), None
    for rows in range(1, max_tiles + 1):
        for cols in range(1, max_tiles // rows + 1):
            canvas_h, canvas_w = rows * tile_size, cols * tile_size
            scale = min(canvas_h / height, canvas_w / width)
            kept = min(height * width * scale * scale, height * width)
            key = (kept, -(canvas_h * canvas_w - kept))
            if best_key is None or key > best_key:
                best, best_key = (rows, cols), key
    return best


def dynamic_s2_tiles(
    image, tile_size: int, max_tiles: int, mean=IMAGENET_MEAN, std=IMAGENET_STD
) -> torch.Tensor:
    """Normalized tiles of one image: `(1 + rows * cols, 3, tile_size, tile_size)`, thumbnail first.

    A 1x1 grid returns the single resized image (it is its own thumbnail).

    Args:
        image: PIL image or uint8 (H, W, 3) array/tensor.
        tile_size: the encoder's crop size.
        max_tiles: largest rows * cols (16 in stage 2, 32 in stage 3 of the scaling setup, Table 22).
        mean, std: normalization statistics (ImageNet, like V-JEPA 2's pretraining).
    """
    pixels = to_float_chw(image)
    _, height, width = pixels.shape
    rows, cols = select_tile_grid(height, width, tile_size, max_tiles)
    thumbnail = resize(pixels, tile_size, tile_size).unsqueeze(0)
    if rows * cols == 1:
        return normalize_frames(thumbnail, mean, std)
    scale = min(rows * tile_size / height, cols * tile_size / width)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    # Pad with the mean colour so padding becomes exactly 0 after normalization.
    canvas = torch.tensor(mean, dtype=pixels.dtype).view(3, 1, 1).expand(3, rows * tile_size, cols * tile_size).clone()
    top, left = (rows * tile_size - new_h) // 2, (cols * tile_size - new_w) // 2
    canvas[:, top : top + new_h, left : left + new_w] = resize(pixels, new_h, new_w)
    tiles = canvas.reshape(3, rows, tile_size, cols, tile_size).permute(1, 3, 0, 2, 4).reshape(-1, 3, tile_size, tile_size)
    return normalize_frames(torch.cat([thumbnail, tiles]), mean, std)


def num_image_tiles(height: int, width: int, tile_size: int, max_tiles: int) -> int:
    """How many tiles `dynamic_s2_tiles` returns for an image of this size."""
    rows, cols = select_tile_grid(height, width, tile_size, max_tiles)
    return 1 if rows * cols == 1 else 1 + rows * cols
