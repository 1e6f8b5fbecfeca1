"""JSONL manifests: reading, writing, atomic output directories and Hugging Face `datasets` views.

Media paths inside a manifest are relative to the dataset root, the parent of the manifest's split folder
(`root/{split}/name.jsonl` -> `root/videos/...`).
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
import shutil
import signal
import threading
import uuid
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterable, Iterator

MEDIA_KEYS = ("video", "image")


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> int:
    """Write one JSON object per line; returns the number of rows."""
    count = 0
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def read_jsonl(path: str | Path) -> list[dict]:
    """Rows of a JSONL file; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not valid JSON ({error.msg})") from error
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object per line, got {type(row).__name__}")
            rows.append(row)
    return rows


def dataset_root(manifest_path: str | Path) -> Path:
    """Directory that the media paths of `manifest_path` are relative to."""
    return Path(manifest_path).resolve().parent.parent


def load_manifest_as_dataset(path: str | Path, *, absolute_paths: bool = False):
    """A `datasets.Dataset` with one row per manifest line.

    Args:
        path: a JSONL manifest.
        absolute_paths: rewrite the "video"/"image" columns to absolute paths (root = `dataset_root(path)`).

    Rows may differ in keys (multiple-choice rows carry "options", open ones "candidates"); missing keys
    become None instead of being dropped, which is what `Dataset.from_list` would do with its first row's keys.
    """
    import datasets

    rows = read_jsonl(path)
    keys = list(dict.fromkeys(key for row in rows for key in row))
    if absolute_paths:
        root = dataset_root(path)
        rows = [{k: str(root / v) if k in MEDIA_KEYS and v is not None else v for k, v in row.items()} for row in rows]
    return datasets.Dataset.from_list([{key: row.get(key) for key in keys} for row in rows])


class OutputExistsError(FileExistsError):
    """The output directory exists and replacing it was not asked for.

    `path` is kept so a command-line front end can name its own flag (e.g. `--overwrite`) instead of the
    keyword argument this message names.
    """

    def __init__(self, path: Path):
        self.path = path
        super().__init__(f"output directory {path} already exists; pass overwrite=True to replace it")


@contextmanager
def _locked(directory: Path, *, blocking: bool) -> Iterator[bool]:
    """Hold an exclusive flock on `directory`; yields False (holding nothing) if non-blocking and taken.

    The kernel drops the lock when its holder dies, even by SIGKILL, so an unlocked staging folder is one
    whose writer is gone.
    """
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(descriptor)


def _remove_stale_siblings(out_dir: Path) -> None:
    """Delete staging (`.NAME.tmp-*`) and retired (`.NAME.old-*`) folders that killed runs left beside `out_dir`."""
    for sibling in out_dir.parent.glob(f".{glob.escape(out_dir.name)}.*-*"):
        kind = sibling.name[len(out_dir.name) + 2 :].split("-", 1)[0]
        if kind not in ("tmp", "old") or not sibling.is_dir():
            continue
        if kind == "old":
            # Retired folders are garbage from the moment they are renamed; a live run deleting one too is harmless.
            shutil.rmtree(sibling, ignore_errors=True)
            continue
        with _locked(sibling, blocking=False) as stale:
            if stale:
                shutil.rmtree(sibling, ignore_errors=True)


@contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """Turn SIGTERM into SystemExit in this process while the block runs, so cleanup code runs.

    Forked workers inherit the handler; they keep the default behaviour (die at once) since only this
    process owns the staging folder.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    owner = os.getpid()

    def handler(signum, frame):
        if os.getpid() != owner:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def atomic_output_dir(out_dir: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory that replaces `out_dir` by rename only if the block succeeds.

    An existing `out_dir` is an error (`OutputExistsError`) unless `overwrite`; then it is swapped out by two
    renames and deleted, so readers see either the complete old or the complete new directory, never a mix.
    The staging folder is removed when the block fails, is interrupted or gets SIGTERM; one left by a run
    killed outright (SIGKILL, power loss) is removed by the next run writing the same `out_dir`. Folders are
    created like `mkdir` does, with the permissions the umask allows.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise OutputExistsError(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    with ExitStack() as held:
        # Under the parent's lock, creating and locking our staging folder is atomic for other runs' scans.
        with _locked(out_dir.parent, blocking=True):
            _remove_stale_siblings(out_dir)
            staging.mkdir()
            held.enter_context(_locked(staging, blocking=True))
        try:
            with _terminate_as_exit():
                yield staging
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        retired = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
        # A signal between the two renames would leave no `out_dir` at all, so signals wait until both are done.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        try:
            if out_dir.exists():
                os.rename(out_dir, retired)
            os.rename(staging, out_dir)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    shutil.rmtree(retired, ignore_errors=True)
