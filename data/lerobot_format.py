"""Robot datasets in the LeRobot v3.0 layout: a writer and an episode reader.

The layout is the Hugging Face robotics ecosystem's (huggingface/lerobot `LeRobotDataset`, codebase v3.0), the
format real robot datasets are published in, so a trainer reading it reads them too:

    meta/info.json                                      fps, features (dtype, shape, names), path templates
    meta/stats.json                                     mean/std/min/max/count of every numeric feature
    meta/tasks.parquet                                  task strings (the index) -> task_index
    meta/episodes/chunk-000/file-000.parquet            one row per episode: length, where its rows and video are
    data/chunk-000/file-000.parquet                     one row per frame: numeric features + timestamp, indices
    videos/<camera key>/chunk-000/file-000.mp4          the camera's frames of the episodes of that file, in order

Several episodes share a data file and a video file; an episode's frames sit at
[from_timestamp, to_timestamp) of its video file, and its rows are those with its `episode_index`.

The `lerobot` package itself is not a dependency: its 0.5+ releases need Python >= 3.12 (the project supports
3.11), and 0.4.4 pins torch 2.10 and huggingface-hub < 0.36, which conflict with our torch and transformers 5.
The layout is therefore written and read here with `datasets`/pyarrow and our H.264 video I/O (`video_io`);
file names, columns and info.json fields follow lerobot's v3.0 dataset code (`lerobot/datasets/lerobot_dataset.py`,
`utils.py`); lerobot itself could not be run here to load what we write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vjepa_vlm.data.video_io import VideoDecodeError, read_video, write_video

CODEBASE_VERSION = "v3.0"
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
# lerobot's default: at most this many files in one chunk-NNN folder.
CHUNKS_SIZE = 1000
# Columns every frame row carries (lerobot's DEFAULT_FEATURES).
INDEX_FEATURES = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}


class LeRobotFormatError(ValueError):
    """A dataset folder does not follow the LeRobot v3.0 layout, or lacks what was asked of it."""


def video_feature(height: int, width: int, fps: int) -> dict:
    """The `features` entry of an RGB camera stored as H.264 video."""
    return {
        "dtype": "video",
        "shape": [height, width, 3],
        "names": ["height", "width", "channels"],
        "info": {
            "video.height": height, "video.width": width, "video.codec": "h264", "video.pix_fmt": "yuv420p",
            "video.is_depth_map": False, "video.fps": fps, "video.channels": 3, "has_audio": False,
        },
    }


def vector_feature(names: list[str] | tuple[str, ...], dtype: str = "float32") -> dict:
    """The `features` entry of a per-frame vector (state, action), one name per dimension."""
    return {"dtype": dtype, "shape": [len(names)], "names": list(names)}


def _hf_features(features: dict):
    import datasets

    columns = {}
    for key, feature in features.items():
        if feature["dtype"] == "video":
            continue
        if list(feature["shape"]) == [1]:
            columns[key] = datasets.Value(feature["dtype"])
        elif len(feature["shape"]) == 1:
            columns[key] = datasets.Sequence(datasets.Value(feature["dtype"]), length=feature["shape"][0])
        else:
            raise LeRobotFormatError(f"feature {key!r}: only scalars and vectors are written, got shape {feature['shape']}")
    return datasets.Features(columns)


def _to_numpy(column) -> np.ndarray:
    """A parquet column as an array: scalars as (T,), fixed-length lists as (T, D)."""
    import pyarrow as pa

    column = column.combine_chunks()
    if pa.types.is_fixed_size_list(column.type) or pa.types.is_list(column.type):
        return column.flatten().to_numpy().reshape(len(column), -1)
    return column.to_numpy()


def _file_location(file_number: int) -> dict:
    return {"chunk_index": file_number // CHUNKS_SIZE, "file_index": file_number % CHUNKS_SIZE}


class LeRobotWriter:
    """Write episodes into a new LeRobot v3.0 dataset folder.

    Episodes are buffered and written `episodes_per_file` at a time into one data parquet and one mp4 per
    camera (lerobot rolls files over by size; a count keeps memory bounded and files independent of timing).
    Call `finish()` once after the last episode to write the metadata.

    Args:
        root: an existing, empty folder (e.g. the staging folder of `manifests.atomic_output_dir`).
        fps: frames per second of every episode.
        features: the non-index features, `video_feature` for cameras and `vector_feature` for vectors.
        robot_type: free text stored in info.json.
        episodes_per_file: episodes per data/video file.
    """

    def __init__(
        self, root: str | Path, *, fps: int, features: dict, robot_type: str | None = None, episodes_per_file: int = 50
    ):
        if not isinstance(fps, int) or fps < 1:
            raise ValueError(f"fps must be a positive integer (info.json stores an int), got {fps!r}")
        if episodes_per_file < 1:
            raise ValueError(f"episodes_per_file must be >= 1, got {episodes_per_file}")
        bad = [key for key in features if "/" in key or key in INDEX_FEATURES]
        if bad:
            raise ValueError(f"feature names must not contain '/' nor be an index column {sorted(INDEX_FEATURES)}: {bad}")
        self.root = Path(root)
        self.fps = fps
        self.features = {**features, **INDEX_FEATURES}
        self.robot_type = robot_type
        self.episodes_per_file = episodes_per_file
        self.video_keys = [key for key, feature in features.items() if feature["dtype"] == "video"]
        self.vector_keys = [key for key, feature in features.items() if feature["dtype"] != "video"]
        self.tasks: dict[str, int] = {}
        self.episodes: list[dict] = []
        self._pending: list[tuple[dict, dict, int]] = []
        self._files_written = 0
        self._total_frames = 0
        self._sums: dict[str, list] = {key: [] for key in self.vector_keys}

    def add_episode(self, frames: dict[str, np.ndarray], columns: dict[str, np.ndarray], task: str) -> None:
        """Queue one episode.

        Args:
            frames: camera key -> uint8 (T, H, W, 3) frames.
            columns: vector key -> (T, D) values, D as declared in its feature.
            task: the episode's task text (one task per episode).
        """
        missing = sorted(set(self.video_keys) - frames.keys()) + sorted(set(self.vector_keys) - columns.keys())
        if missing:
            raise ValueError(f"episode {len(self.episodes)} lacks features {missing}")
        lengths = {key: len(value) for key, value in [*frames.items(), *columns.items()]}
        if len(set(lengths.values())) != 1 or 0 in lengths.values():
            raise ValueError(f"episode {len(self.episodes)}: features must have the same non-zero length, got {lengths}")
        for key in self.vector_keys:
            expected = tuple(self.features[key]["shape"])
            if np.shape(columns[key])[1:] != expected:
                shape = np.shape(columns[key])[1:]
                raise ValueError(f"episode {len(self.episodes)}: {key!r} rows have shape {shape}, expected {expected}")
        for key in self.video_keys:
            expected = tuple(self.features[key]["shape"])
            if np.shape(frames[key])[1:] != expected:
                shape = np.shape(frames[key])[1:]
                raise ValueError(f"episode {len(self.episodes)}: {key!r} frames have shape {shape}, expected {expected}")
        task_index = self.tasks.setdefault(task, len(self.tasks))
        self._pending.append((frames, columns, task_index))
        self.episodes.append({"length": next(iter(lengths.values())), "tasks": [task]})
        if len(self._pending) == self.episodes_per_file:
            self._flush()

    def _flush(self) -> None:
        import datasets
        import pyarrow.parquet as pq

        if not self._pending:
            return
        location = _file_location(self._files_written)
        first_episode = len(self.episodes) - len(self._pending)
        rows = {key: [] for key in self.features if key not in self.video_keys}
        video_frames = {key: [] for key in self.video_keys}
        video_start = 0
        for offset, (frames, columns, task_index) in enumerate(self._pending):
            episode_index = first_episode + offset
            meta = self.episodes[episode_index]
            length = meta["length"]
            for key in self.vector_keys:
                values = np.asarray(columns[key], dtype=self.features[key]["dtype"])
                rows[key].extend(values.tolist())
                self._sums[key].append(values.astype(np.float64))
            frame_index = np.arange(length)
            rows["timestamp"].extend((frame_index / self.fps).astype(np.float32).tolist())
            rows["frame_index"].extend(frame_index.tolist())
            rows["episode_index"].extend([episode_index] * length)
            rows["index"].extend(range(self._total_frames, self._total_frames + length))
            rows["task_index"].extend([task_index] * length)
            meta.update({
                "episode_index": episode_index,
                "data/chunk_index": location["chunk_index"], "data/file_index": location["file_index"],
                "dataset_from_index": self._total_frames, "dataset_to_index": self._total_frames + length,
            })
            for key in self.video_keys:
                video_frames[key].append(np.asarray(frames[key], dtype=np.uint8))
                meta.update({
                    f"videos/{key}/chunk_index": location["chunk_index"], f"videos/{key}/file_index": location["file_index"],
                    f"videos/{key}/from_timestamp": video_start / self.fps,
                    f"videos/{key}/to_timestamp": (video_start + length) / self.fps,
                })
            meta.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
            video_start += length
            self._total_frames += length
        data_path = self.root / DATA_PATH.format(**location)
        data_path.parent.mkdir(parents=True, exist_ok=True)
        # The table of a `datasets.Dataset` carries its features in the schema metadata, as lerobot's files do.
        pq.write_table(datasets.Dataset.from_dict(rows, features=_hf_features(self.features)).data.table, data_path)
        for key in self.video_keys:
            video_path = self.root / VIDEO_PATH.format(video_key=key, **location)
            video_path.parent.mkdir(parents=True, exist_ok=True)
            write_video(video_path, np.concatenate(video_frames[key]), fps=self.fps)
        self._pending = []
        self._files_written += 1

    def finish(self) -> dict:
        """Write the last file and the metadata; returns info.json's content."""
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self.episodes:
            raise ValueError("a dataset needs at least one episode")
        self._flush()
        episodes_path = self.root / EPISODES_PATH.format(chunk_index=0, file_index=0)
        episodes_path.parent.mkdir(parents=True, exist_ok=True)
        columns = list(dict.fromkeys(key for episode in self.episodes for key in episode))
        pq.write_table(pa.table({key: [episode[key] for episode in self.episodes] for key in columns}), episodes_path)
        # lerobot reads tasks with pandas and looks task strings up in the frame's index.
        pd.DataFrame({"task_index": list(self.tasks.values())}, index=list(self.tasks)).to_parquet(self.root / TASKS_PATH)
        stats = {}
        for key in self.vector_keys:
            values = np.concatenate(self._sums[key])
            stats[key] = {
                "mean": values.mean(0).tolist(), "std": values.std(0).tolist(),
                "min": values.min(0).tolist(), "max": values.max(0).tolist(), "count": [len(values)],
            }
        (self.root / STATS_PATH).write_text(json.dumps(stats, indent=1))
        info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": self.robot_type,
            "total_episodes": len(self.episodes),
            "total_frames": self._total_frames,
            "total_tasks": len(self.tasks),
            "chunks_size": CHUNKS_SIZE,
            "fps": self.fps,
            "splits": {"train": f"0:{len(self.episodes)}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if self.video_keys else None,
            "features": self.features,
        }
        (self.root / INFO_PATH).write_text(json.dumps(info, indent=1))
        return info


@dataclass
class Episode:
    """One episode read from a LeRobot dataset.

    Args:
        index: the episode's `episode_index`.
        frames: uint8 (T, H, W, 3) camera frames, or None when not asked for.
        state: float32 (T, state_dim).
        action: float32 (T, action_dim); row t is the command issued after frame t was observed.
        extra: other requested columns, (T, D) each.
    """

    index: int
    frames: np.ndarray | None
    state: np.ndarray
    action: np.ndarray
    extra: dict[str, np.ndarray]


class LeRobotEpisodes:
    """Episodes of a LeRobot v3.0 dataset folder: one camera's frames with the state and action vectors.

    Args:
        root: the dataset folder (holding meta/info.json).
        camera_key: the video feature to decode; the only one when None (an error if there are several).
        state_key, action_key: the vector features returned as `state` and `action`.
        state_dim, action_dim: expected sizes, checked against info.json when given.
        extra_keys: further per-frame columns to return in `Episode.extra` (e.g. evaluation-only data).
    """

    def __init__(
        self,
        root: str | Path,
        *,
        camera_key: str | None = None,
        state_key: str = "observation.state",
        action_key: str = "action",
        state_dim: int | None = None,
        action_dim: int | None = None,
        extra_keys: tuple[str, ...] = (),
    ):
        import pyarrow.parquet as pq

        self.root = Path(root)
        info_path = self.root / INFO_PATH
        if not info_path.is_file():
            raise LeRobotFormatError(f"{info_path} not found: {self.root} is not a LeRobot dataset folder")
        try:
            self.info = json.loads(info_path.read_text())
        except json.JSONDecodeError as error:
            raise LeRobotFormatError(f"{info_path}: not valid JSON ({error.msg})") from error
        for field in ("codebase_version", "fps", "features", "data_path"):
            if field not in self.info:
                raise LeRobotFormatError(f"{info_path}: missing field {field!r}")
        if self.info["codebase_version"] != CODEBASE_VERSION:
            raise LeRobotFormatError(
                f"{info_path}: codebase_version {self.info['codebase_version']!r} is not supported, expected "
                f"{CODEBASE_VERSION!r} (lerobot's convert_dataset_v21_to_v30 converts older datasets)"
            )
        features = self.info["features"]
        self.fps = float(self.info["fps"])
        videos = [key for key, feature in features.items() if feature.get("dtype") == "video"]
        if camera_key is None:
            if len(videos) != 1:
                raise LeRobotFormatError(f"{info_path}: pass camera_key, one of the video features {videos}")
            camera_key = videos[0]
        if camera_key not in videos:
            raise LeRobotFormatError(f"{info_path}: camera_key {camera_key!r} is not one of the video features {videos}")
        for role, key, dim in (("state_key", state_key, state_dim), ("action_key", action_key, action_dim)):
            if key not in features:
                raise LeRobotFormatError(f"{info_path}: {role} {key!r} is not among the features {sorted(features)}")
            shape = list(features[key].get("shape", []))
            if dim is not None and shape != [dim]:
                raise LeRobotFormatError(f"{info_path}: feature {key!r} has shape {shape}, expected [{dim}]")
        for key in extra_keys:
            if key not in features:
                raise LeRobotFormatError(f"{info_path}: extra key {key!r} is not among the features {sorted(features)}")
        if self.info.get("video_path") is None:
            raise LeRobotFormatError(f"{info_path}: video_path is null, the dataset has no videos")
        self.camera_key, self.state_key, self.action_key = camera_key, state_key, action_key
        self.video_fps = float(features[camera_key].get("info", {}).get("video.fps", self.fps))
        self.extra_keys = tuple(extra_keys)
        self.state_dim = features[state_key]["shape"][0]
        self.action_dim = features[action_key]["shape"][0]

        episode_files = sorted((self.root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
        if not episode_files:
            raise LeRobotFormatError(f"{self.root / 'meta' / 'episodes'}: no episode metadata parquet files")
        needed = [
            "episode_index", "length", "data/chunk_index", "data/file_index",
            f"videos/{camera_key}/chunk_index", f"videos/{camera_key}/file_index", f"videos/{camera_key}/from_timestamp",
        ]
        rows: list[dict] = []
        for path in episode_files:
            table = pq.read_table(path)
            absent = [column for column in needed if column not in table.column_names]
            if absent:
                raise LeRobotFormatError(f"{path}: missing episode columns {absent}")
            rows.extend(table.select(needed).to_pylist())
        self._episodes = {int(row["episode_index"]): row for row in rows}
        self.episode_indices = sorted(self._episodes)
        # Numeric columns of every data file read so far, by episode: a few floats per frame, small next to the
        # videos, and training revisits every episode.
        self._loaded: dict[Path, dict[int, dict[str, np.ndarray]]] = {}

    def __len__(self) -> int:
        return len(self.episode_indices)

    def length(self, episode_index: int) -> int:
        """Number of frames of an episode."""
        return int(self._meta(episode_index)["length"])

    def _meta(self, episode_index: int) -> dict:
        if episode_index not in self._episodes:
            first, last = self.episode_indices[0], self.episode_indices[-1]
            raise IndexError(f"{self.root}: no episode {episode_index} (episodes {first}..{last})")
        return self._episodes[episode_index]

    def _columns(self, episode_index: int) -> dict[str, np.ndarray]:
        import pyarrow.parquet as pq

        meta = self._meta(episode_index)
        location = {"chunk_index": meta["data/chunk_index"], "file_index": meta["data/file_index"]}
        path = self.root / self.info["data_path"].format(**location)
        if path not in self._loaded:
            if not path.is_file():
                raise LeRobotFormatError(f"{path}: data file of episode {episode_index} not found")
            wanted = ["episode_index", "frame_index", "timestamp", self.state_key, self.action_key, *self.extra_keys]
            schema = pq.read_schema(path)
            absent = [column for column in wanted if column not in schema.names]
            if absent:
                raise LeRobotFormatError(f"{path}: missing columns {absent}")
            table = pq.read_table(path, columns=wanted)
            episode_column = table.column("episode_index").to_numpy()
            by_episode = {}
            for index in np.unique(episode_column):
                rows = table.filter(episode_column == index)
                by_episode[int(index)] = {column: _to_numpy(rows.column(column)) for column in wanted[1:]}
            self._loaded[path] = by_episode
        columns = self._loaded[path].get(episode_index)
        if columns is None or len(columns["frame_index"]) != self.length(episode_index):
            found = 0 if columns is None else len(columns["frame_index"])
            expected = self.length(episode_index)
            raise LeRobotFormatError(f"{path}: episode {episode_index} has {found} rows, its metadata says {expected}")
        return columns

    def episode(self, episode_index: int, *, start: int = 0, num_frames: int | None = None, frames: bool = True) -> Episode:
        """Frames, states and actions of `num_frames` consecutive steps from `start` (the whole episode if None).

        Raises:
            LeRobotFormatError: the episode is shorter than the requested span, or its files lack columns.
            VideoDecodeError: the camera's video file is missing or unreadable (the message names the file).
        """
        length = self.length(episode_index)
        stop = length if num_frames is None else start + num_frames
        if start < 0 or stop > length or stop <= start:
            raise LeRobotFormatError(
                f"{self.root}: episode {episode_index} has {length} frames; frames [{start}, {stop}) were requested"
            )
        columns = self._columns(episode_index)
        decoded = None
        if frames:
            meta = self._meta(episode_index)
            key = self.camera_key
            path = self.root / self.info["video_path"].format(
                video_key=key, chunk_index=meta[f"videos/{key}/chunk_index"], file_index=meta[f"videos/{key}/file_index"]
            )
            # A frame's place in the shared video file is its episode's start time plus its own timestamp.
            times = meta[f"videos/{key}/from_timestamp"] + columns["timestamp"][start:stop].astype(np.float64)
            try:
                decoded = read_video(path, np.rint(times * self.video_fps).astype(int).tolist())
            except (VideoDecodeError, ValueError) as error:
                raise VideoDecodeError(f"episode {episode_index}, camera {key!r}: {error}") from error
        return Episode(
            index=episode_index,
            frames=decoded,
            state=columns[self.state_key][start:stop],
            action=columns[self.action_key][start:stop],
            extra={key: columns[key][start:stop] for key in self.extra_keys},
        )


def export_episode_videos(
    root: str | Path,
    out_dir: str | Path,
    *,
    camera_key: str | None = None,
    first_episode: int = 0,
    num_episodes: int | None = None,
) -> Path:
    """One mp4 per episode of a LeRobot dataset's camera, and a JSONL manifest of them (`{"video": name}` rows).

    Action-free pretraining (`train/pretrain.py`, paper section 3: pretrain, then post-train with actions) samples
    clips from whole video files; a v3.0 video file holds many episodes back to back, so its clips would cross
    episode boundaries and mix training with held-out episodes. Episodes are chosen by position, as the world-model
    trainer's `data.first_episode` / `data.num_episodes` choose them.

    Returns:
        The manifest path, `out_dir/manifest.jsonl`; it is written last, so its presence means the export finished.
    """
    reader = LeRobotEpisodes(root, camera_key=camera_key)
    stop = None if num_episodes is None else first_episode + num_episodes
    chosen = reader.episode_indices[first_episode:stop]
    if not chosen:
        raise LeRobotFormatError(f"{reader.root}: first_episode={first_episode} leaves no episode (of {len(reader)})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for episode in chosen:
        name = f"episode_{episode:06d}.mp4"
        write_video(out / name, reader.episode(episode).frames, reader.video_fps)
        names.append(name)
    manifest = out / "manifest.jsonl"
    partial = out / "manifest.jsonl.tmp"
    partial.write_text("".join(json.dumps({"video": name}) + "\n" for name in names))
    partial.replace(manifest)
    return manifest
