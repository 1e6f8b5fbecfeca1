import numpy as np
import pytest

from vjepa_vlm.data.video_io import VideoDecodeError, read_video, sample_frame_indices, video_info, write_video


def _gradient_clip(frames=12, height=32, width=48):
    t = np.arange(frames)[:, None, None, None]
    y = np.arange(height)[None, :, None, None]
    x = np.arange(width)[None, None, :, None]
    c = np.array([0, 1, 2])[None, None, None, :]
    return ((x * 4 + y * 2 + t * 8 + c * 40) % 256).astype(np.uint8)


@pytest.fixture
def clip_path(tmp_path):
    path = tmp_path / "clip.mp4"
    write_video(path, _gradient_clip(), fps=12.0)
    return path


def test_round_trip_keeps_shape_metadata_and_content(clip_path):
    frames = _gradient_clip()
    decoded = read_video(clip_path)
    assert decoded.shape == frames.shape and decoded.dtype == np.uint8
    # H.264 is lossy (yuv420p); a smooth gradient survives within a few intensity levels on average.
    assert np.abs(decoded.astype(int) - frames).mean() < 6
    info = video_info(clip_path)
    assert (info.num_frames, info.height, info.width) == (12, 32, 48)
    assert info.fps == pytest.approx(12.0)


def test_selected_indices_keep_order_and_repeats(clip_path):
    everything = read_video(clip_path)
    picked = read_video(clip_path, [5, 0, 5, 11])
    np.testing.assert_array_equal(picked, everything[[5, 0, 5, 11]])


def test_out_of_range_or_negative_indices_name_the_file(clip_path):
    with pytest.raises(ValueError, match="clip.mp4.*out of range"):
        read_video(clip_path, [0, 12])
    with pytest.raises(ValueError, match="clip.mp4"):
        read_video(clip_path, [-1])


def test_missing_and_corrupt_files_raise_video_decode_error(tmp_path):
    with pytest.raises(VideoDecodeError, match="missing.mp4"):
        read_video(tmp_path / "missing.mp4")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(VideoDecodeError, match="corrupt.mp4"):
        read_video(corrupt)
    with pytest.raises(VideoDecodeError, match="corrupt.mp4"):
        video_info(corrupt)


def test_write_rejects_bad_frames(tmp_path):
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "odd.mp4", np.zeros((2, 31, 32, 3), np.uint8), fps=8)
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "float.mp4", np.zeros((2, 32, 32, 3), np.float32), fps=8)
    with pytest.raises(ValueError, match="fps"):
        write_video(tmp_path / "fps.mp4", np.zeros((2, 32, 32, 3), np.uint8), fps=0)
    assert not any(tmp_path.iterdir())


def test_uniform_sampling_spreads_over_the_clip():
    assert sample_frame_indices(64, 4) == [8, 24, 40, 56]
    assert sample_frame_indices(64, 4, start=32) == [36, 44, 52, 60]
    assert sample_frame_indices(3, 6) == [0, 0, 1, 1, 2, 2]


def test_fps_sampling_steps_by_frame_rate_ratio_and_clamps_at_the_end():
    assert sample_frame_indices(100, 4, mode="fps", video_fps=30, target_fps=15) == [0, 2, 4, 6]
    assert sample_frame_indices(10, 5, mode="fps", video_fps=24, target_fps=8, start=2) == [2, 5, 8, 9, 9]


def test_sampling_rejects_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        sample_frame_indices(10, 2, mode="random")
    with pytest.raises(ValueError, match="video_fps"):
        sample_frame_indices(10, 2, mode="fps")
    with pytest.raises(ValueError, match="start"):
        sample_frame_indices(10, 2, start=10)
    with pytest.raises(ValueError, match="num_samples"):
        sample_frame_indices(10, 0)
