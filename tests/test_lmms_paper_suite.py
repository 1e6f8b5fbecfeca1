"""The paper's seven video-QA benchmarks: their lmms-eval task configs parse, and our model takes their requests.

Nothing is downloaded: the configs are read from lmms-eval's installed task folder, and the requests are built
from each task's own generation settings around a local video (their datasets are not fetched).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lmms_eval import utils
from lmms_eval.api.task import TaskConfig
from lmms_eval.tasks import TaskManager
from lmms_helpers import build_tiny_checkpoint, make_request, visual_of, write_random_video

from vjepa_vlm.eval.lmms_model import VJEPA2VLMLmms
from vjepa_vlm.eval.paper_suite import FRAMES_BY_SETUP, PAPER_BENCHMARKS, suite_commands, suite_model_args

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="module")
def suite_configs(tmp_path_factory):
    """Each benchmark's task config (a group's first subtask), parsed with its `!function` hooks imported."""
    monkeypatch = pytest.MonkeyPatch()
    # PerceptionTest's utils read HF_HOME at import time; point it at an empty folder so nothing real is touched.
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf_home")))
    tasks_root = Path(utils.__file__).parent / "tasks"
    folders = [str(tasks_root / b.task_dir) for b in PAPER_BENCHMARKS]
    index = TaskManager("ERROR", include_path=folders, include_defaults=False).task_index
    configs = {}
    for benchmark in PAPER_BENCHMARKS:
        assert benchmark.task in index, f"{benchmark.task} is not an lmms-eval task"
        raw = utils.load_yaml_config(index[benchmark.task]["yaml_path"], mode="full")
        if index[benchmark.task]["type"] == "group":
            raw = utils.load_yaml_config(index[raw["task"][0]]["yaml_path"], mode="full")
        configs[benchmark.task] = TaskConfig(**raw)
    monkeypatch.undo()
    return configs


def test_suite_names_the_seven_benchmarks():
    names = {b.name.split(" (")[0] for b in PAPER_BENCHMARKS}
    assert names == {"PerceptionTest", "MVP", "TempCompass", "TemporalBench", "TOMATO", "TVBench", "MVBench"}
    assert [b.name for b in PAPER_BENCHMARKS if b.user_fetched] == ["MVP"]
    assert suite_model_args("ckpt", "controlled") == "pretrained=ckpt,num_frames=128,frame_sampling=uniform"
    assert all("num_frames=32" in c and "--model vjepa2_vlm" in c for c in suite_commands("ckpt", "scaling"))
    with pytest.raises(ValueError, match="setup"):
        suite_model_args("ckpt", "large")


def test_task_configs_parse_into_requests_our_model_serves(suite_configs):
    for task, config in suite_configs.items():
        assert config.output_type in ("generate_until", "multiple_choice"), task
        assert callable(config.doc_to_visual) and callable(config.doc_to_text), task
        assert isinstance(config.generation_kwargs, dict) and "until" in config.generation_kwargs, task


@pytest.mark.parametrize("setup", sorted(FRAMES_BY_SETUP))
def test_model_accepts_suite_requests_at_paper_frames(tmp_path, checkpoint, suite_configs, setup):
    video = str(write_random_video(tmp_path / "clip.mp4", frames=40))
    lm = VJEPA2VLMLmms.create_from_arg_string(suite_model_args(str(checkpoint), setup))
    assert lm.processor.num_frames == FRAMES_BY_SETUP[setup] and lm.processor.frame_sampling == "uniform"
    question = "What happens in the video?\nA. it falls\nB. it rises\nAnswer with the option's letter from the given choices directly."
    lm.task_dict = {task: {"test": [{"visuals": [video]}]} for task in suite_configs}
    requests = []
    for task, config in suite_configs.items():
        # Each task's own generation settings; the budget is capped so the random model stops quickly.
        gen_kwargs = dict(config.generation_kwargs, max_new_tokens=2)
        requests.append(make_request("generate_until", (question, gen_kwargs, visual_of, 0, task, "test"), task, 0))
    answers = lm.generate_until(requests)
    assert len(answers) == len(suite_configs) and all(isinstance(a, str) for a in answers)
    assert lm.missing_visuals == []


def test_tasks_that_read_hf_home_load_when_it_is_unset(tmp_path):
    """TempCompass's utils read os.environ["HF_HOME"] on import; lmms-eval loads our entry point, which gives
    HF_HOME huggingface_hub's default, before any task (a KeyError otherwise, and lmms-eval exits 0)."""
    env = {k: v for k, v in os.environ.items() if k != "HF_HOME"} | {"XDG_CACHE_HOME": str(tmp_path)}
    load_task = (
        "import os\n"
        "from lmms_eval import evaluator, utils\n"  # what the lmms-eval command imports first
        "from lmms_eval.tasks import TaskManager\n"
        f"index = TaskManager('ERROR', include_path={str(Path(utils.__file__).parent / 'tasks' / 'tempcompass')!r}, "
        "include_defaults=False).task_index\n"
        "utils.load_yaml_config(index['tempcompass_multi_choice']['yaml_path'], mode='full')\n"
        "print(os.environ['HF_HOME'])\n"
    )
    done = subprocess.run([sys.executable, "-c", load_task], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == str(tmp_path / "huggingface")
