import json

import numpy as np
import pytest
import torch
from research_module import load_research_module

from vjepa_vlm import VJEPA2WorldModel, VJEPA2WorldModelConfig

torch.set_num_threads(1)

study = load_research_module("planning_push")


def test_the_simulator_control_pushes_the_block_and_the_study_scores_both_situations(tmp_path):
    model_dir = tmp_path / "wm"
    torch.manual_seed(0)
    VJEPA2WorldModel(VJEPA2WorldModelConfig.from_preset("vjepa2-ac-tiny")).save_pretrained(model_dir)
    out = tmp_path / "push.json"
    result = study.main(["--model", str(model_dir), "--episodes", "1", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["summary"].keys() == set(study.SITUATIONS) and saved["camera"] == "front"
    rows = {row["situation"]: row for row in result["episodes"]}
    behind = rows["behind_block"]
    assert behind["candidates"] == list(study.SITUATIONS["behind_block"])
    moved = dict(zip(behind["candidates"], np.array(behind["block_moved"])))
    to_goal = dict(zip(behind["candidates"], np.array(behind["block_to_goal"])))
    # Pushing moves the block towards its goal; staying, backing away and passing over (first two steps) do not.
    assert moved["push"][-1] > 0.03 and to_goal["push"][-1] < to_goal["still"][-1] - 0.03
    assert moved["still"].max() < 0.005 and moved["away"].max() < 0.005 and moved["over"][:2].max() < 0.005
    actions = dict(zip(behind["candidates"], np.array(behind["actions"])))
    # Over reaches the push's end point: the same summed motion, lifted and lowered on the way.
    np.testing.assert_allclose(actions["over"][:, :3].sum(0), actions["push"][:, :3].sum(0), atol=1e-3)
    assert actions["over"][0, 2] - actions["push"][0, 2] == pytest.approx(study.LIFT_UNITS, abs=1e-3)
    assert (np.array(behind["actions"])[:, :, 3] < 0).all()  # fingers squeezed, as the oracle pushes
    for row in rows.values():
        for source in ("model", "simulator"):
            energy = np.array(row[source]["energy"])
            assert energy.shape == (len(row["candidates"]), study.STEPS) and (energy > 0).all()
    step = saved["summary"]["behind_block"]["steps"][2]["simulator"]
    energy = np.array(behind["simulator"]["energy"])
    gap = energy[behind["candidates"].index("over"), 2] - energy[behind["candidates"].index("push"), 2]
    assert step["mean_gap_over_minus_push"] == gap and step["share_push_below_over"] == (gap > 0)
    assert min(behind["simulator"]["push_vs_over"]) > 0
    assert set(saved["summary"]["start"]["steps"][0]["model"]) == {
        "mean_energy", "share_to_behind_below_to_arm_goal", "mean_gap_to_arm_goal_minus_to_behind"}
