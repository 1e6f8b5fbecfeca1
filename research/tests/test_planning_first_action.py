import json

import numpy as np
import torch
from research_module import load_research_module

from vjepa_vlm import VJEPA2WorldModel, VJEPA2WorldModelConfig

torch.set_num_threads(1)

study = load_research_module("planning_first_action")


def test_axis_agreement_reads_a_swapped_sign_on_one_axis():
    rng = np.random.default_rng(0)
    true = rng.normal(size=(30, 3))
    planned = true * np.array([1.0, 0.5, -1.0])  # dy right but shorter, dz the wrong way
    cell = study.axis_agreement(planned, true)
    assert abs(cell["dx"]["correlation"] - 1) < 1e-9 and cell["dx"]["sign_agreement"] == 1.0
    assert abs(cell["dy"]["correlation"] - 1) < 1e-9 and cell["dy"]["sign_agreement"] == 1.0
    assert abs(cell["dz"]["correlation"] + 1) < 1e-9 and cell["dz"]["sign_agreement"] == 0.0
    assert cell["mean_planned_norm"] < cell["mean_true_norm"]


def test_camera_axes_are_orthonormal_and_a_plan_blind_along_the_line_of_sight_reads_only_the_image_axes():
    front = study.camera_axes("front")
    basis = np.stack(list(front.values()))
    np.testing.assert_allclose(basis @ basis.T, np.eye(3), atol=1e-12)
    # The front camera looks along -x from 30 degrees above; its image's right is the y axis.
    np.testing.assert_allclose(front["line_of_sight"], [-np.cos(np.radians(30)), 0, -0.5], atol=1e-12)
    np.testing.assert_allclose(np.abs(front["image_right"]), [0, 1, 0], atol=1e-12)
    rng = np.random.default_rng(0)
    true = rng.normal(size=(40, 3))
    sight = study.camera_axes("oblique")["line_of_sight"]
    planned = true - np.outer(true @ sight, sight) + np.outer(rng.normal(size=40), sight)
    cell = study.camera_agreement(planned, true, "oblique")
    assert cell["image_right"]["correlation"] > 0.999 and cell["image_up"]["correlation"] > 0.999
    assert abs(cell["line_of_sight"]["correlation"]) < 0.4 and cell["line_of_sight"]["true_std"] > 0.5


def test_one_plan_per_episode_and_std_against_the_true_goal_offset(tmp_path):
    model_dir = tmp_path / "wm"
    torch.manual_seed(0)
    VJEPA2WorldModel(VJEPA2WorldModelConfig.from_preset("vjepa2-ac-tiny")).save_pretrained(model_dir)
    out = tmp_path / "first.json"
    result = study.main(["--model", str(model_dir), "--episodes", "2", "--samples", "8", "--top-k", "2",
                         "--iterations", "1", "--init-std", "1,2", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["summary"].keys() == {"1.0", "2.0"} and saved["camera"] == "front"
    assert saved["summary"]["1.0"]["camera_axes"].keys() == {"image_right", "image_up", "line_of_sight"}
    rows = result["episodes"]
    assert [(r["episode"], r["init_std"]) for r in rows] == [(0, 1.0), (0, 2.0), (1, 1.0), (1, 2.0)]
    # Reach goals are 8-25 cm away (1.6-5 units); planned moves stay in the Fetch box of +-2 units per axis.
    assert all(1.6 <= np.linalg.norm(r["true"]) <= 5.0 and max(map(abs, r["planned"])) <= 2.0 for r in rows)
    assert rows[0]["true"] == rows[1]["true"] and rows[0]["planned"] != rows[1]["planned"]
