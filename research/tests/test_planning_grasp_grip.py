import json

import numpy as np
import pytest
import torch
from research_module import load_research_module
from vjepa_vlm.eval.planning import (
    TASKS,
    BCPolicy,
    PlannerPolicy,
    make_setup,
    run_episode,
)
from vjepa_vlm.scripts.eval_planning import simulator
from vjepa_vlm.vision.bc_policy import BCPolicyConfig, GoalConditionedPolicy

from vjepa_vlm import VJEPA2WorldModel, VJEPA2WorldModelConfig

torch.set_num_threads(1)

study = load_research_module("planning_grasp_grip")


def test_the_grip_is_the_oracle_s_per_stage_and_the_motion_the_planner_s(tmp_path):
    torch.manual_seed(0)
    model = VJEPA2WorldModel(VJEPA2WorldModelConfig.from_preset("vjepa2-ac-tiny")).eval()
    model.save_pretrained(tmp_path / "wm")
    out = tmp_path / "grip"
    argv = ["--model", f"tiny={tmp_path / 'wm'}", "--tasks", "grasp_subgoal3", "--episodes", "1", "--samples", "8",
            "--top-k", "2", "--iterations", "1", "--warm-start", "hold_gripper", "--out", str(out)]
    result = study.main(argv)
    (record,) = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert record["method"] == "tiny_scripted_grip" and record["error"] is None
    # Open while going down around the block (6 steps), then squeeze while closing and lifting (2 + 4).
    assert [a[3] for a in record["actions"]] == [5.0] * 6 + [-5.0] * 6
    assert result["summary"]["tiny_scripted_grip/default/grasp_subgoal3"]["n"] == 1
    # The same search as the plain planner's at the first step (same seed and warm start): only the grip differs.
    setup = make_setup(simulator(64, "default"), TASKS["grasp_subgoal3"], seed=0, index=0)
    cem = study.eval_planning.planner_config(study.eval_planning.parse_args(argv))[0]
    plain = run_episode(simulator(64, "default"), setup, PlannerPolicy(model, cem, name="plain"))
    np.testing.assert_allclose(plain["actions"][0][:3], record["actions"][0][:3], atol=2e-3)
    assert plain["actions"][0][3] != 5.0 and cem.samples == 8 and cem.warm_start == "hold_gripper"
    # Behaviour cloning is told the grip the same way; its motion is its own.
    config = BCPolicyConfig(tokens=model.tokens_per_frame, feature_dim=model.config.predictor_config.encoder_hidden_size,
                            state_dim=4, action_dim=4, token_dim=3, hidden_size=16, action_scale=(5, 5, 5, 5))
    bc = BCPolicy(GoalConditionedPolicy(config).eval(), model)
    told = run_episode(simulator(64, "default"), setup, study.ScriptedGrip(bc))
    own = run_episode(simulator(64, "default"), setup, bc)
    assert told["method"] == "bc_scripted_grip" and [a[3] for a in told["actions"]] == [5.0] * 6 + [-5.0] * 6
    assert told["actions"][0][:3] == own["actions"][0][:3] and own["actions"][0][3] != 5.0
    with pytest.raises(ValueError, match=r"tasks \['grasp'\] have no stages"):
        study.main([*argv[:2], "--tasks", "grasp", "--out", str(out)])
