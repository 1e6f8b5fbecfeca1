import csv

import numpy as np
import pytest
from PIL import Image

from vjepa_vlm.data.epic_kitchens import (
    EPIC_COLUMNS,
    action_vocabulary,
    read_anticipation_manifest,
    read_epic_kitchens,
    read_segment_frames,
)
from vjepa_vlm.data.manifests import write_jsonl
from vjepa_vlm.data.video_io import write_video
from vjepa_vlm.eval.anticipation import context_indices


def frames(count: int) -> np.ndarray:
    """Frame i is uniformly grey level 10 * i, so a decoded frame tells its index."""
    return np.stack([np.full((16, 16, 3), 10 * i, np.uint8) for i in range(count)])


def write_csv(path, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*EPIC_COLUMNS, "narration"])
        writer.writeheader()
        writer.writerows(rows)


def row(narration, participant, video, start, stop, verb, noun):
    return dict(narration_id=narration, participant_id=participant, video_id=video, start_frame=start,
                stop_frame=stop, verb_class=verb, noun_class=noun, narration="take plate")


@pytest.fixture
def epic(tmp_path):
    """A synthetic EPIC-KITCHENS-100 layout: one video file, one frame folder, train and validation CSVs."""
    (tmp_path / "P01" / "videos").mkdir(parents=True)
    write_video(tmp_path / "P01" / "videos" / "P01_01.MP4", frames(20), 10.0)
    folder = tmp_path / "P02" / "rgb_frames" / "P02_03"
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames(20), start=1):
        Image.fromarray(frame).save(folder / f"frame_{i:010d}.jpg", quality=95)
    write_csv(tmp_path / "train.csv", [row("P01_01_0", "P01", "P01_01", 11, 15, 2, 7), row("P02_03_0", "P02", "P02_03", 9, 12, 0, 1)])
    write_csv(tmp_path / "val.csv", [row("P01_01_1", "P01", "P01_01", 16, 18, 2, 1)])
    with open(tmp_path / "video_info.csv", "w") as handle:
        handle.write("video_id,duration,fps,resolution\nP02_03,2.0,10.0,16x16\n")
    return tmp_path


def test_reads_official_csvs_over_videos_and_frame_folders(epic):
    actions = action_vocabulary(epic / "train.csv", epic / "val.csv")
    assert actions == {(0, 1): 0, (2, 1): 1, (2, 7): 2}
    train = read_epic_kitchens(epic / "train.csv", epic, actions, epic / "video_info.csv")
    video, folder = train
    assert (video.start_frame, video.stop_frame, video.labels, video.fps) == (10, 14, (2, 7, 2), 10.0)
    assert folder.source.is_dir() and folder.fps == 10.0 and folder.labels == (0, 1, 0)
    # 0.5 s before the stop frame (CSV 12 -> 11) at 5 fps: every second frame of the 10 fps source, up to 11 - 5.
    assert context_indices(folder, time=0.5, point=0.0, num_frames=3, fps=5.0).tolist() == [0, 2, 4]
    assert context_indices(folder, time=1.0, point=0.0, num_frames=3, fps=5.0).tolist() == [0, 0, 0]
    for segment in train:
        decoded = read_segment_frames(segment, np.array([3, 7]))
        assert decoded.shape == (2, 16, 16, 3)
        assert np.abs(decoded.mean(axis=(1, 2, 3)) - [30, 70]).max() < 4
    assert read_epic_kitchens(epic / "val.csv", epic, actions)[0].action == 1


def test_bad_annotations_name_the_file_and_what_was_expected(epic):
    actions = action_vocabulary(epic / "train.csv")
    with pytest.raises(ValueError, match="has no frame rate"):
        read_epic_kitchens(epic / "train.csv", epic, actions)
    with pytest.raises(ValueError, match=r"val.csv:2: \(verb_class, noun_class\) = \(2, 1\) is not in the action"):
        read_epic_kitchens(epic / "val.csv", epic, actions)
    write_csv(epic / "bad.csv", [row("x", "P09", "P09_01", 1, 2, 0, 1)])
    with pytest.raises(FileNotFoundError, match="P09/videos/P09_01.MP4 or P09/rgb_frames/P09_01/"):
        read_epic_kitchens(epic / "bad.csv", epic, {(0, 1): 0})
    (epic / "short.csv").write_text("narration_id,video_id\nx,P01_01\n")
    with pytest.raises(ValueError, match=r"short.csv: missing column\(s\) \['participant_id'"):
        action_vocabulary(epic / "short.csv")


def test_synthetic_manifest_rows_become_segments_at_the_event(tmp_path):
    (tmp_path / "test").mkdir()
    write_jsonl(tmp_path / "test" / "anticipation.jsonl", [
        {"id": "test-0", "video": "videos/test/0.mp4", "fps": 8.0, "event_frame": 30, "verb": 1, "noun": 4, "action": 20},
    ])
    (segment,) = read_anticipation_manifest(tmp_path / "test" / "anticipation.jsonl")
    assert segment.source == tmp_path / "videos/test/0.mp4"
    assert (segment.start_frame, segment.stop_frame, segment.labels) == (30, 30, (1, 4, 20))
    write_jsonl(tmp_path / "bad.jsonl", [{"video": "a.mp4", "fps": 8.0}])
    with pytest.raises(ValueError, match="bad.jsonl:1: missing key"):
        read_anticipation_manifest(tmp_path / "bad.jsonl", tmp_path)
