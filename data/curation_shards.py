"""Resumable work split into shards across processes: each finished shard is a file, never recomputed.

Shard i of a list holds items [i * size, (i + 1) * size) and belongs to process i % world_size, so any number of
processes (`accelerate launch`, or one) splits the same work the same way. A shard's result is written to a
temporary name and renamed, so a crash leaves either a complete file or none; the rerun does only what is
missing, on whatever number of processes it has.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm


def shard_count(num_items: int, shard_size: int) -> int:
    return -(-num_items // shard_size)


def shard_path(work_dir: Path, index: int, suffix: str) -> Path:
    return work_dir / f"shard_{index:06d}{suffix}"


def _write(path: Path, result: Any) -> None:
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if path.suffix == ".npy":
        with open(temporary, "wb") as handle:
            np.save(handle, np.asarray(result))
    else:
        temporary.write_text(json.dumps(result))
    os.replace(temporary, path)


def _read(path: Path) -> Any:
    return np.load(path) if path.suffix == ".npy" else json.loads(path.read_text())


def run_shards(
    items: Sequence,
    work: Callable[[Sequence], Any],
    work_dir: str | Path,
    *,
    shard_size: int,
    suffix: str,
    rank: int = 0,
    world_size: int = 1,
    desc: str = "shards",
) -> int:
    """Compute this process's missing shards with `work(shard_items)`; returns how many items it computed.

    Args:
        items: the whole work list (the same on every process).
        work: maps a shard's items to its result, an array (suffix ".npy") or JSON-serializable data (".json").
        work_dir: folder of the shard files.
        shard_size: items per shard.
        suffix: ".npy" or ".json".
        rank, world_size: this process and the number of processes.
        desc: progress-bar label; the bar counts this process's shards, finished ones included, and only the
            first process shows it.
    """
    if suffix not in (".npy", ".json"):
        raise ValueError(f"suffix must be '.npy' or '.json', got {suffix!r}")
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    mine = list(range(rank, shard_count(len(items), shard_size), world_size))
    todo = [index for index in mine if not shard_path(work_dir, index, suffix).is_file()]
    computed = 0
    with tqdm(total=len(mine), initial=len(mine) - len(todo), desc=desc, disable=rank != 0) as bar:
        for index in todo:
            shard = items[index * shard_size : (index + 1) * shard_size]
            _write(shard_path(work_dir, index, suffix), work(shard))
            computed += len(shard)
            bar.update()
    return computed


def collect_shards(work_dir: str | Path, num_items: int, *, shard_size: int, suffix: str) -> list:
    """Every shard's result in order; a missing shard is an error naming it (a process died before writing it)."""
    work_dir = Path(work_dir)
    paths = [shard_path(work_dir, index, suffix) for index in range(shard_count(num_items, shard_size))]
    missing = [path.name for path in paths if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"{work_dir}: shards {missing[:5]} ({len(missing)} in all) are missing; rerun to compute them")
    return [_read(path) for path in paths]
