"""JSONL manifests: reading, writing, atomic output directories and Hugging Face `datasets` views.

Media paths inside a manifest are relative to the dataset root, the parent of the manifest's split folder
(`root/{split}/name.jsonl` -> `root/videos/...`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
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


@contextmanager
def atomic_output_dir(out_dir: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory that replaces `out_dir` by rename only if the block succeeds.

    An existing `out_dir` is an error unless `overwrite`; then it is swapped out by two renames and deleted,
    so readers see either the complete old or the complete new directory, never a mix.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"output directory {out_dir} already exists; pass overwrite=True to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out_dir.exists():
        retired = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(out_dir, retired)
        os.rename(staging, out_dir)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.rename(staging, out_dir)
