"""The local lmms-eval tasks over a synthetic world, pointed at any world directory without environment variables.

The shipped task YAMLs (`eval/tasks/vjepa_synth_*.yaml`) read `./synthetic_world`. `write_task_configs` writes,
for another world directory, one small YAML per task that `include:`s the shipped one and replaces only the
data location (`dataset_kwargs.data_dir` and `lmms_eval_specific_kwargs.default.world_dir`), so prompts and
scoring stay those of the shipped files. Run lmms-eval with `--include_path` set to the returned directory:

    lmms-eval --model vjepa2_vlm --model_args pretrained=CKPT --include_path OUT --tasks vjepa_synth
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import yaml
from lmms_eval.utils import load_yaml_config

TASKS_DIR = Path(__file__).resolve().parent / "tasks"
LOCAL_TASKS = ("vjepa_synth_video_mc", "vjepa_synth_video_mc_ppl", "vjepa_synth_video_mc_cloze", "vjepa_synth_video_open",
               "vjepa_synth_image_qa")
TASK_TAG = "vjepa_synth"


def write_task_configs(world_dir: str | Path, out_dir: str | Path, *, split: str = "test", cache_dir: str | Path | None = None) -> Path:
    """Write the local tasks' YAMLs for `world_dir` into `out_dir` (created; files replaced atomically).

    Args:
        world_dir: a directory written by `vjepa_vlm.data.synthetic_world.generate_world`.
        out_dir: where the task YAMLs go; pass it to lmms-eval's `--include_path`.
        split: the world split evaluated ("test").
        cache_dir: datasets' Arrow cache for these tasks; None keeps lmms-eval's default (the HF cache).
    """
    world = Path(world_dir).resolve()
    for name in ("video_qa.jsonl", "video_qa_cloze.jsonl", "image_qa.jsonl"):
        if not (world / split / name).is_file():
            raise FileNotFoundError(
                f"world_dir={str(world_dir)!r} has no {split}/{name}; expected a directory written by "
                "vjepa_vlm.data.synthetic_world.generate_world"
            )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for task in LOCAL_TASKS:
        shipped = TASKS_DIR / f"{task}.yaml"
        dataset_kwargs = dict(load_yaml_config(str(shipped), mode="simple")["dataset_kwargs"])
        dataset_kwargs["data_dir"] = str(world)
        dataset_kwargs["data_files"] = {split: f"{split}/{Path(dataset_kwargs['data_files']['test']).name}"}
        if cache_dir is not None:
            dataset_kwargs["cache_dir"] = str(Path(cache_dir).resolve())
        override = {
            "include": str(shipped),
            "test_split": split,
            "dataset_kwargs": dataset_kwargs,
            "lmms_eval_specific_kwargs": {"default": {"world_dir": str(world)}},
        }
        write_text_atomically(out / f"{task}.yaml", yaml.safe_dump(override, sort_keys=False))
    return out


def write_text_atomically(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it over `path`."""
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        stream.write(text)
    os.replace(temp, path)
