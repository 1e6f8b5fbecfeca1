"""Video pixels for the VLM: frame sampling, shorter-side resize, center crop, ImageNet normalization.

A video always yields a fixed number of frames ("we choose to train with a fixed number of frames f_n",
appendix E.1), sampled uniformly over the whole video (the default; Table 22) or at a target frame rate.
Sampling and decoding live in `vjepa_vlm.data.video_io` (the data layer reads videos without the processor)
and are re-exported here, next to the pixel preprocessing that follows them.
"""

import numpy as np
import torch

from vjepa_vlm.data.normalization import IMAGENET_MEAN, IMAGENET_STD, frames_to_unit_float, normalize_frames
from vjepa_vlm.data.video_io import load_video_frames, sample_frames
from vjepa_vlm.image_processing_vjepa2_vlm import resize


def frames_to_pixels(frames, crop_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """uint8 (T, H, W, 3) frames -> normalized float (T, 3, crop_size, crop_size).

    The shorter side is resized to `crop_size` (aspect ratio kept), then the center square is cropped.
    """
    pixels = frames_to_unit_float(frames)
    if pixels.ndim != 4:
        raise ValueError(f"video frames must be uint8 of shape (T, H, W, 3), got shape {np.shape(frames)}")
    height, width = pixels.shape[-2:]
    scale = crop_size / min(height, width)
    new_h, new_w = max(crop_size, round(height * scale)), max(crop_size, round(width * scale))
    pixels = resize(pixels, new_h, new_w)
    top, left = (new_h - crop_size) // 2, (new_w - crop_size) // 2
    return normalize_frames(pixels[:, :, top : top + crop_size, left : left + crop_size], mean, std)


__all__ = ["frames_to_pixels", "load_video_frames", "sample_frames"]
