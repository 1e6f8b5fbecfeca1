import json

import numpy as np
import pandas as pd
import torch
from research_module import load_research_module

from vjepa_vlm import VJEPA2WorldModel, VJEPA2WorldModelConfig

torch.set_num_threads(1)

study = load_research_module("planning_gripper")


def test_the_simulator_control_sees_the_grip_and_the_study_scores_both_situations(tmp_path):
    model_dir = tmp_path / "wm"
    torch.manual_seed(0)
    VJEPA2WorldModel(VJEPA2WorldModelConfig.from_preset("vjepa2-ac-tiny")).save_pretrained(model_dir)
    out = tmp_path / "gripper.json"
    result = study.main(["--model", str(model_dir), "--episodes", "1", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["summary"].keys() == {"around_block", "holding", "closing_stage"} and saved["camera"] == "front"
    rows = {row["situation"]: row for row in result["episodes"]}
    labels = [(c["gripper"], c["motion"]) for c in rows["holding"]["candidates"]]
    assert labels == [(g, m) for g in study.GRIPPERS for m in study.MOTIONS]
    lift = {label: np.array(values) for label, values in zip(labels, rows["holding"]["lift"])}
    # Squeezing keeps the held block up; opening, or no command (the fingers relax), drops it within the steps.
    assert lift[-5.0, "still"][-1] > study.LIFT_M and lift[5.0, "still"][-1] < 0.01 and lift[0.0, "still"][-1] < 0.01
    around = {label: np.array(values) for label, values in zip(labels, rows["around_block"]["lift"])}
    assert around[-5.0, "towards_goal"][-1] > study.LIFT_M and around[5.0, "towards_goal"][-1] < 0.01
    # The closing stage starts where around_block does; its goal (fingers closed on the block) is hardly a move away.
    closing = {label: np.array(values) for label, values in zip(labels, rows["closing_stage"]["lift"])}
    assert max(abs(v).max() for v in closing.values()) < 0.01
    assert np.abs(np.array(rows["closing_stage"]["candidates"][1]["action"][:3])).max() < 0.3
    for row in rows.values():
        for source in ("model", "simulator"):
            energy = np.array(row[source]["energy"])
            assert energy.shape == (len(labels), study.STEPS) and (energy > 0).all()
            assert len(row[source]["open_vs_close"]) == study.STEPS and min(row[source]["open_vs_close"]) > 0
    step = saved["summary"]["holding"]["steps"][0]["simulator"]
    assert set(step["mean_energy"]) == {f"{g:+g}/{m}" for g, m in labels} and 0 <= step["share_closing_below_opening"] <= 1
    energy = np.array(rows["holding"]["simulator"]["energy"])
    moving_gap = energy[labels.index((5.0, "towards_goal")), 0] - energy[labels.index((-5.0, "towards_goal")), 0]
    assert step["mean_gap_open_minus_close_moving"] == moving_gap and step["share_closing_below_opening_moving"] == (moving_gap > 0)


def test_play_events_count_closing_near_the_block_holding_and_dropping(tmp_path):
    # One episode of 16 recorded steps: close on the block (5 steps), carry it lifted (5), open while holding (5).
    rest = 0.42
    state = np.array([[1.3, 0.7, rest, 0.05]] * 16)
    block = np.array([[1.3, 0.7, rest, 1, 0, 0, 0]] * 16, dtype=float)
    block[5:, 2] = rest + 0.06
    action = np.zeros((16, 4))
    action[0:5, 3], action[5:10, 3], action[10:, 3] = -1.0, -1.0, 1.0
    frame = pd.DataFrame({"episode_index": 0, "action": list(action), "observation.state": list(state),
                          "eval.block_pose": list(block)})
    (tmp_path / "data" / "chunk-000").mkdir(parents=True)
    frame.to_parquet(tmp_path / "data" / "chunk-000" / "file-000.parquet")
    counts = study.play_gripper_events(str(tmp_path))
    # Three agent steps: [0, 5) closes near the block (the carried block is 6 cm above the fingers' height later),
    # [5, 10) and [10, 15) hold it lifted at both ends, the last one opening.
    assert counts["agent_steps"] == 3 and counts["closing_near_block"] == 1 and counts["holding_lifted"] == 2
    assert counts["opening_while_holding"] == 1 and counts["episodes"] == 1
