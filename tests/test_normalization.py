"""One normalizer for every pixel consumer; its values are bit-identical to the three it replaced."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vjepa_vlm.data.normalization import IMAGENET_MEAN, IMAGENET_STD, frames_to_unit_float, normalize_frames
from vjepa_vlm.data.pretrain_dataset import crop_and_normalize
from vjepa_vlm.image_processing_vjepa2_vlm import dynamic_s2_tiles, resize
from vjepa_vlm.video_processing_vjepa2_vlm import frames_to_pixels

torch.set_num_threads(1)
MEAN4, STD4 = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


@pytest.fixture
def frames():
    return np.random.default_rng(0).integers(0, 256, (4, 30, 44, 3), dtype=np.uint8)


def test_uint8_frames_match_the_probes_former_normalizer(frames):
    former = (torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0 - MEAN4) / STD4
    ours = normalize_frames(frames)
    assert ours.shape == (4, 3, 30, 44) and torch.equal(ours, former)
    # Memory layout decides which resize kernel runs downstream, so it must match too.
    assert ours.stride() == former.stride()
    assert torch.equal(normalize_frames(torch.from_numpy(frames)), former)


def test_video_processor_pixels_match_its_former_arithmetic(frames):
    pixels = torch.as_tensor(frames).permute(0, 3, 1, 2).float().div_(255.0)
    pixels = resize(pixels, 20, round(44 * 20 / 30))
    left = (pixels.shape[-1] - 20) // 2
    former = (pixels[:, :, :, left : left + 20] - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert torch.equal(frames_to_pixels(frames, crop_size=20), former)


def test_pretraining_crops_match_their_former_arithmetic(frames):
    box = (3, 5, 20, 30)
    clip = torch.from_numpy(np.ascontiguousarray(frames[:, 3:23, 5:35])).permute(0, 3, 1, 2)
    clip = F.interpolate(clip.float() / 255.0, size=(16, 16), mode="bilinear", antialias=True)
    assert torch.equal(crop_and_normalize(frames, box, 16), (clip - MEAN4) / STD4)


def test_image_tiles_match_their_former_arithmetic():
    image = np.random.default_rng(1).integers(0, 256, (32, 80, 3), dtype=np.uint8)
    tiles = dynamic_s2_tiles(image, tile_size=32, max_tiles=4)
    thumbnail = resize(torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div_(255.0), 32, 32)
    former = (thumbnail - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert torch.equal(tiles[0], former)


def test_leading_dimensions_and_custom_statistics():
    batch = np.full((2, 3, 4, 5, 3), 255, dtype=np.uint8)
    out = normalize_frames(batch, mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 1.0))
    assert out.shape == (2, 3, 3, 4, 5)
    assert out[..., 0, :, :].eq(1.0).all() and out[..., 1, :, :].eq(2.0).all() and out[..., 2, :, :].eq(0.5).all()
    float_pixels = frames_to_unit_float(batch[0])
    assert torch.equal(normalize_frames(float_pixels), normalize_frames(batch[0]))


def test_wrong_inputs_name_the_expected_layout():
    with pytest.raises(ValueError, match=r"uint8 of shape \(\.\.\., H, W, 3\)"):
        normalize_frames(np.zeros((2, 8, 8, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"uint8 of shape"):
        normalize_frames(np.zeros((2, 8, 8, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, H, W\)"):
        normalize_frames(torch.zeros(2, 8, 8, 3))
