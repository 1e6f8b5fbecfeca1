"""Video pixels for the VLM: frame sampling, shorter-side resize, center crop, ImageNet normalization.

A video always yields a fixed number of frames ("we choose to train with a fixed number of frames f_n",
appendix E.1), sampled uniformly over the whole video (the default; Table 22) or at a target frame rate.
"""

from pathlib import Path

import numpy as np
import torch

from vjepa_vlm.data.video_io import read_video, sample_frame_indices, video_info
from vjepa_vlm.image_processing_vjepa2_vlm import IMAGENET_MEAN, IMAGENET_STD, normalize, resize


def frames_to_pixels(frames, crop_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """uint8 (T, H, W, 3) frames -> normalized float (T, 3, crop_size, crop_size).

    The shorter side is resized to `crop_size` (aspect ratio kept), then the center square is cropped.
    """
    tensor = torch.as_tensor(np.asarray(frames))
    if tensor.ndim != 4 or tensor.shape[-1] != 3 or tensor.dtype != torch.uint8:
        raise ValueError(f"video frames must be uint8 of shape (T, H, W, 3), got dtype {tensor.dtype} shape {tuple(tensor.shape)}")
    pixels = tensor.permute(0, 3, 1, 2).float().div_(255.0)
    height, width = pixels.shape[-2:]
    scale = crop_size / min(height, width)
    new_h, new_w = max(crop_size, round(height * scale)), max(crop_size, round(width * scale))
    pixels = resize(pixels, new_h, new_w)
    top, left = (new_h - crop_size) // 2, (new_w - crop_size) // 2
    return normalize(pixels[:, :, top : top + crop_size, left : left + crop_size], mean, std)


def sample_frames(frames, num_frames: int) -> np.ndarray:
    """Uniformly pick `num_frames` frames of already-decoded (T, H, W, 3) frames."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or len(frames) == 0:
        raise ValueError(f"video frames must be a non-empty (T, H, W, 3) array, got shape {frames.shape}")
    return frames[sample_frame_indices(len(frames), num_frames, mode="uniform")]


def load_video_frames(
    path: str | Path, num_frames: int, sampling: str = "uniform", target_fps: float | None = None
) -> np.ndarray:
    """Decode `num_frames` uint8 frames of the video at `path` (raises `VideoDecodeError` if unreadable).

    Args:
        path: video file.
        num_frames: frames to return (a multiple of the encoder's tubelet size).
        sampling: "uniform" over the whole video, or "fps" (consecutive frames at `target_fps`, from the start).
        target_fps: frame rate for "fps" sampling (1 fps in the scaling setup, Table 22).
    """
    info = video_info(path)
    indices = sample_frame_indices(
        info.num_frames, num_frames, mode=sampling, video_fps=info.fps, target_fps=target_fps
    )
    return read_video(path, indices)
