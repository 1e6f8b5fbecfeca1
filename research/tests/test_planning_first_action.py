import importlib.util
import json
from pathlib import Path

import numpy as np
import torch

from vjepa_vlm import VJEPA2WorldModel, VJEPA2WorldModelConfig

torch.set_num_threads(1)

_spec = importlib.util.spec_from_file_location(
    "planning_first_action", Path(__file__).parents[1] / "planning_first_action.py"
)
study = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(study)


def test_axis_agreement_reads_a_swapped_sign_on_one_axis():
    rng = np.random.default_rng(0)
    true = rng.normal(size=(30, 3))
    planned = true * np.array([1.0, 0.5, -1.0])  # dy right but shorter, dz the wrong way
    cell = study.axis_agreement(planned, true)
    assert abs(cell["dx"]["correlation"] - 1) < 1e-9 and cell["dx"]["sign_agreement"] == 1.0
    assert abs(cell["dy"]["correlation"] - 1) < 1e-9 and cell["dy"]["sign_agreement"] == 1.0
    assert abs(cell["dz"]["correlation"] + 1) < 1e-9 and cell["dz"]["sign_agreement"] == 0.0
    assert cell["mean_planned_norm"] < cell["mean_true_norm"]


def test_one_plan_per_episode_and_std_against_the_true_goal_offset(tmp_path):
    model_dir = tmp_path / "wm"
    torch.manual_seed(0)
    VJEPA2WorldModel(VJEPA2WorldModelConfig.from_preset("vjepa2-ac-tiny")).save_pretrained(model_dir)
    out = tmp_path / "first.json"
    result = study.main(["--model", str(model_dir), "--episodes", "2", "--samples", "8", "--top-k", "2",
                         "--iterations", "1", "--init-std", "1,2", "--out", str(out)])
    assert json.loads(out.read_text())["summary"].keys() == {"1.0", "2.0"}
    rows = result["episodes"]
    assert [(r["episode"], r["init_std"]) for r in rows] == [(0, 1.0), (0, 2.0), (1, 1.0), (1, 2.0)]
    # Reach goals are 8-25 cm away (1.6-5 units); planned moves stay in the Fetch box of +-2 units per axis.
    assert all(1.6 <= np.linalg.norm(r["true"]) <= 5.0 and max(map(abs, r["planned"])) <= 2.0 for r in rows)
    assert rows[0]["true"] == rows[1]["true"] and rows[0]["planned"] != rows[1]["planned"]
