"""Camera calibration (appendix B.4): the least-squares 2x2 map and its rotation / condition number, actions
inferred by energy minimization in a toy world whose action axes are turned, the planner's `action_map`, and
`scripts/calibrate_camera.py` end to end in the Fetch simulator."""

import json
import math

import pytest
import torch
from test_energy_landscape import PlanarWorld
from test_planner import LinearWorld
from vjepa2_oracle import randomize_
from vjepa_vlm.eval.planning import load_action_map
from vjepa_vlm.eval.world_model_inspection import (
    action_grid,
    fit_action_map,
    infer_planar_actions,
    summarize_map,
)
from vjepa_vlm.scripts import calibrate_camera
from vjepa_vlm.vision.planner import CEMConfig, apply_action_map, cem_plan

from vjepa_vlm import VJEPA2WorldModel, VJEPA2WorldModelConfig


def rotation(degrees: float) -> torch.Tensor:
    angle = math.radians(degrees)
    return torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])


def test_fit_recovers_a_known_map_and_the_summary_reads_rotation_scale_and_mirroring():
    generator = torch.Generator().manual_seed(0)
    inferred = torch.randn(50, 2, generator=generator)
    truth = rotation(30.0) @ torch.diag(torch.tensor([2.0, 0.5]))
    matrix = fit_action_map(inferred, inferred @ truth.T)
    assert torch.allclose(matrix, truth, atol=1e-5)
    summary = summarize_map(matrix)
    assert summary.condition_number == pytest.approx(4.0, rel=1e-4) and not summary.reflection
    assert summarize_map(2.0 * rotation(-45.0)).rotation_deg == pytest.approx(-45.0, abs=1e-4)
    assert summarize_map(rotation(-45.0)).condition_number == pytest.approx(1.0, abs=1e-6)
    mirrored = summarize_map(torch.tensor([[1.0, 0.0], [0.0, -1.0]]))
    assert mirrored.reflection and mirrored.rotation_deg == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match=r"\(P >= 2, 2\)"):
        fit_action_map(inferred[:1], inferred[:1])


@pytest.mark.parametrize("angle", [0.0, 20.0, -35.0])
def test_inferred_actions_of_a_turned_world_give_back_its_turn(angle):
    world = PlanarWorld(angle_deg=angle, seed=1)
    _, planar = action_grid(2.0, 41)
    generator = torch.Generator().manual_seed(2)
    true = (torch.rand(12, 2, generator=generator) * 2 - 1) * 1.2
    features = [world.start]
    for step in true:
        features.append(world.next_features(features[-1], step))
    actions = torch.cat((true, torch.zeros(12, 2)), dim=1)
    inferred = infer_planar_actions(world, torch.stack(features), torch.zeros(13, 4), actions, planar)
    # The world moves as R a, so the model's best guess is R a (up to the grid): M = R^-1 maps it back.
    assert (inferred - true @ rotation(angle).T).norm(dim=1).max() < 0.1 * math.sqrt(2)
    summary = summarize_map(fit_action_map(inferred, true))
    assert summary.rotation_deg == pytest.approx(-angle, abs=2.0) and summary.condition_number < 1.1


def test_planner_action_map_turns_the_planned_motion_and_keeps_dz_and_gripper():
    actions = torch.tensor([[1.0, 0.0, 0.3, -1.0]])
    turned = apply_action_map(actions, rotation(90.0).tolist())
    assert torch.allclose(turned, torch.tensor([[0.0, 1.0, 0.3, -1.0]]), atol=1e-6)
    assert apply_action_map(actions, None) is actions
    world = LinearWorld()
    target = torch.tensor([0.3, -0.5, 0.2, 0.7])
    goal = world.features(world.start, target)
    settings = {"samples": 200, "top_k": 10, "iterations": 8, "max_norm": 1.0, "init_std": 0.5, "seed": 1}
    plain = cem_plan(world.imagine_from(world.start), goal, 4, CEMConfig(**settings))
    mapped = cem_plan(world.imagine_from(world.start), goal, 4,
                      CEMConfig(**settings, action_map=((0.0, -1.0), (1.0, 0.0))))
    # The search is the same; only the returned motion is turned by 90 degrees (and kept inside the box).
    assert mapped.best_energy == plain.best_energy
    assert torch.allclose(mapped.actions[0], torch.stack((-plain.actions[0, 1], plain.actions[0, 0],
                                                          *plain.actions[0, 2:])), atol=1e-6)
    clipped = cem_plan(world.imagine_from(world.start), goal, 4, CEMConfig(**settings, action_map=((5.0, 0.0), (0.0, 5.0))))
    assert clipped.actions[0, :2].abs().max() <= 1.0
    for bad in (((1.0, 0.0),), ((1.0, float("nan")), (0.0, 1.0))):
        with pytest.raises(ValueError, match="action_map must be a finite 2x2 matrix"):
            CEMConfig(action_map=bad)


def test_script_sweeps_cameras_and_writes_maps_errors_and_plot(tmp_path):
    model = randomize_(VJEPA2WorldModel(VJEPA2WorldModelConfig.from_preset("vjepa2-ac-tiny")), seed=1).eval()
    model.save_pretrained(tmp_path / "model")
    result = calibrate_camera.main(["--model", str(tmp_path / "model"), "--out", str(tmp_path / "out"),
                                    "--azimuths=-15,15", "--steps", "6", "--grid", "5"])
    saved = json.loads((tmp_path / "out" / "calibration.json").read_text())
    assert [row["azimuth_offset_deg"] for row in saved["cameras"]] == [-15.0, 15.0] == [
        row["azimuth_offset_deg"] for row in result["cameras"]]
    for row in saved["cameras"]:
        assert len(row["map"]) == 2 and -180 <= row["rotation_deg"] <= 180 and row["condition_number"] >= 1
        # Least squares over the pairs cannot do worse than the zero map.
        assert row["error_after"] <= row["error_zero_action"] + 1e-6
        assert 1 <= row["distinct_inferred_actions"] <= 6
    assert (tmp_path / "out" / "rotation_vs_azimuth.png").stat().st_size > 0
    with pytest.raises(SystemExit):
        calibrate_camera.main(["--model", "x", "--out", str(tmp_path), "--azimuths", "a,b"])


def test_script_calibrates_the_shifted_camera_variant_for_the_planning_evaluation(tmp_path):
    model = randomize_(VJEPA2WorldModel(VJEPA2WorldModelConfig.from_preset("vjepa2-ac-tiny")), seed=1).eval()
    model.save_pretrained(tmp_path / "model")
    common = ["--model", str(tmp_path / "model"), "--azimuths", "0", "--steps", "3", "--grid", "5"]
    shifted = calibrate_camera.main(common + ["--variant", "camera_shift", "--out", str(tmp_path / "shift")])
    default = calibrate_camera.main(common + ["--out", str(tmp_path / "default")])
    assert shifted["variant"] == "camera_shift" and default["variant"] == "default"
    # Same trajectory (same seed), another view: the random model infers other actions from other pixels.
    assert shifted["cameras"][0]["map"] != default["cameras"][0]["map"]
    loaded = load_action_map(tmp_path / "shift" / "calibration.json")
    assert loaded["variant"] == "camera_shift" and loaded["map"] == tuple(map(tuple, shifted["cameras"][0]["map"]))
    with pytest.raises(SystemExit):
        calibrate_camera.main(common + ["--variant", "fisheye", "--out", str(tmp_path / "x")])
