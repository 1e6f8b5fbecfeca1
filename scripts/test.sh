#!/usr/bin/env bash
# The README's test command: install into .venv (created if absent) and run the test suite.
# lmms-eval (the `eval` extra) needs torchvision, so the test environment takes torch 2.14.1 + torchvision 0.29.1.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
pip install -q torch==2.14.1 torchvision==0.29.1 -e ".[test,eval]"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
pytest -q --durations=15 "$@"
