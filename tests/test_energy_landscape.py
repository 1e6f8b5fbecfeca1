"""Energy landscapes (`vjepa_vlm.eval.world_model_inspection`, `scripts/energy_landscape.py`): the grid layout, the
minimum of a toy world whose true action is known, agreement with one-at-a-time scoring on a tiny V-JEPA 2-AC world
model, and the script end to end in the Fetch simulator."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from vjepa2_oracle import randomize_
from vjepa_vlm.eval.inspection_plots import colorize
from vjepa_vlm.eval.world_model_inspection import (
    action_grid,
    direction_cosine,
    energy_landscape,
    random_guess_distance,
)
from vjepa_vlm.scripts import energy_landscape as script
from vjepa_vlm.vision.planner import l1_energy

from vjepa_vlm import VJEPA2WorldModel, VJEPA2WorldModelConfig


class PlanarWorld:
    """A stand-in world model that predicts the next frame's features as the start's plus (dx, dy) @ W on every token,
    watched by a camera turned by `angle`: what the camera records after action a is the start plus (R a) @ W. A goal
    recorded after a has its energy minimum (0) at R a, which is a itself when the camera is not turned."""

    def __init__(self, angle_deg: float = 0.0, tokens: int = 4, dim: int = 16, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.weight = torch.randn(2, dim, generator=generator)
        self.start = torch.randn(tokens, dim, generator=generator)
        angle = math.radians(angle_deg)
        self.rotation = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        self.config = SimpleNamespace(predictor_config=SimpleNamespace(action_dim=4))
        self.calls = 0

    def next_features(self, features: torch.Tensor, planar: torch.Tensor) -> torch.Tensor:
        """What the camera records after `planar`."""
        return features + ((planar @ self.rotation.T) @ self.weight).unsqueeze(-2)

    def predict_next(self, features, actions, states):
        self.calls += 1
        assert features.shape[1] == actions.shape[1] == states.shape[1] == 1
        return features[:, -1] + (actions[:, -1, :2] @ self.weight).unsqueeze(-2)


def test_grid_is_row_major_over_dy_then_dx_and_checks_its_arguments():
    axis, planar = action_grid(1.0, 3)
    assert axis.tolist() == [-1.0, 0.0, 1.0]
    assert planar[:3].tolist() == [[-1.0, -1.0], [0.0, -1.0], [1.0, -1.0]]
    assert planar[-1].tolist() == [1.0, 1.0] and len(planar) == 9
    for extent, points in ((0.0, 3), (1.0, 1), (1.0, 2.5)):
        with pytest.raises(ValueError, match="extent > 0 and an integer points >= 2"):
            action_grid(extent, points)


def test_the_minimum_of_a_toy_world_is_the_true_action_and_batches_do_not_change_energies():
    world = PlanarWorld()
    _, planar = action_grid(2.0, 21)
    true = torch.tensor([0.8, -1.2])
    goal = world.next_features(world.start, true)
    base = torch.tensor([0.0, 0.0, 0.0, 1.0])
    energy = energy_landscape(world, world.start, torch.zeros(4), goal, planar, base)
    assert energy.shape == (441,)
    assert planar[int(energy.argmin())].tolist() == pytest.approx(true.tolist(), abs=1e-6)
    assert float(energy.min()) == pytest.approx(0.0, abs=1e-5)
    world.calls = 0
    chunked = energy_landscape(world, world.start, torch.zeros(4), goal, planar, base, batch_size=100)
    assert world.calls == 5 and torch.allclose(chunked, energy)
    # The no-knowledge control: a random grid point is on average far from the true action.
    assert random_guess_distance(planar, true) > 1.0


def test_the_landscape_of_a_tiny_world_model_equals_scoring_each_action_alone():
    model = randomize_(VJEPA2WorldModel(VJEPA2WorldModelConfig.from_preset("vjepa2-ac-tiny")), seed=3).eval()
    generator = torch.Generator().manual_seed(0)
    start, goal = torch.randn(2, 16, 96, generator=generator)
    state, base = torch.randn(4, generator=generator), torch.tensor([0.0, 0.0, 0.3, -1.0])
    _, planar = action_grid(1.0, 3)
    energy = energy_landscape(model, start, state, goal, planar, base, batch_size=4)
    for index in (0, 4, 8):
        action = base.clone()
        action[:2] = planar[index]
        alone = model.predict_next(start[None, None], action[None, None], state[None, None])
        assert float(energy[index]) == pytest.approx(float(l1_energy(alone, goal)[0].detach()), abs=1e-5)
    assert energy.std() > 0  # a random predictor still reads the action
    with pytest.raises(ValueError, match=r"base_action must be \(action_dim=4,\)"):
        energy_landscape(model, start, state, goal, planar, torch.zeros(3))


def test_colour_ramp_maps_low_to_dark_and_high_to_bright():
    colours = colorize(np.array([[0.0, 1.0]]))
    assert colours.dtype == np.uint8 and colours[0, 0].sum() < colours[0, 1].sum()


def test_script_writes_landscapes_distances_and_controls(tmp_path):
    model = randomize_(VJEPA2WorldModel(VJEPA2WorldModelConfig.from_preset("vjepa2-ac-tiny")), seed=1).eval()
    model.save_pretrained(tmp_path / "model")
    summary = script.main(["--model", str(tmp_path / "model"), "--out", str(tmp_path / "out"), "--pairs", "2",
                           "--grid", "5", "--plots", "2"])
    saved = json.loads((tmp_path / "out" / "energy_landscape.json").read_text())
    assert saved["mean_distance"] == pytest.approx(summary["mean_distance"])
    assert len(saved["rows"]) == 2 and saved["grid_spacing"] == pytest.approx(1.0)
    assert len(saved["mean_abs_error_xy"]) == len(saved["mean_random_guess_abs_error_xy"]) == 2
    for row in saved["rows"]:
        assert max(abs(v) for v in row["true_xy"]) <= 1.5 and max(abs(v) for v in row["argmin_xy"]) <= 2.0
        assert row["distance"] == pytest.approx(math.dist(row["true_xy"], row["argmin_xy"]), abs=1e-3)
        assert row["abs_error_xy"] == pytest.approx([abs(a - b) for a, b in zip(row["true_xy"], row["argmin_xy"])],
                                                    abs=1e-3)
        assert row["random_guess_distance"] > 0 and row["energy_max"] > row["energy_min"]
    with Image.open(tmp_path / "out" / "energy_landscape.png") as image:
        assert image.width > 1.8 * image.height  # two panels side by side
    with pytest.raises(SystemExit):
        script.main(["--model", "x", "--out", str(tmp_path), "--magnitude", "3", "--extent", "2"])


def test_script_renders_the_same_trajectory_in_a_zero_shot_scene(tmp_path):
    model = randomize_(VJEPA2WorldModel(VJEPA2WorldModelConfig.from_preset("vjepa2-ac-tiny")), seed=1).eval()
    model.save_pretrained(tmp_path / "model")
    common = ["--model", str(tmp_path / "model"), "--pairs", "1", "--grid", "5", "--plots", "0"]
    default = script.main(common + ["--out", str(tmp_path / "default")])
    shifted = script.main(common + ["--variant", "camera_shift", "--out", str(tmp_path / "shift")])
    assert (default["variant"], shifted["variant"]) == ("default", "camera_shift")
    # Same seed, same actions; another view gives the model other pixels and so other energies.
    assert shifted["rows"][0]["true_xy"] == default["rows"][0]["true_xy"]
    assert shifted["rows"][0]["energy_min"] != pytest.approx(default["rows"][0]["energy_min"])
    with pytest.raises(SystemExit):
        script.main(common + ["--variant", "fisheye", "--out", str(tmp_path / "x")])


def test_direction_cosine_reads_heading_and_gives_zero_for_no_move():
    planar = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0], [0.0, 0.0]])
    assert direction_cosine(planar, torch.tensor([2.0, 0.0])).tolist() == pytest.approx([1.0, 0.0, -1.0, 0.0])
    assert direction_cosine(planar, torch.zeros(2)).tolist() == [0.0] * 4


def test_script_goal_offset_scores_a_goal_several_steps_ahead_against_the_summed_actions(tmp_path):
    model = randomize_(VJEPA2WorldModel(VJEPA2WorldModelConfig.from_preset("vjepa2-ac-tiny")), seed=1).eval()
    model.save_pretrained(tmp_path / "model")
    common = ["--model", str(tmp_path / "model"), "--grid", "5", "--plots", "1"]
    one = script.main(common + ["--pairs", "2", "--out", str(tmp_path / "one")])
    two = script.main(common + ["--pairs", "1", "--goal-offset", "2", "--out", str(tmp_path / "two")])
    # The same seed records the same first steps, so the two-step target is the sum of the first two actions.
    summed = [a + b for a, b in zip(one["rows"][0]["true_xy"], one["rows"][1]["true_xy"])]
    assert two["goal_offset"] == 2 and two["rows"][0]["true_xy"] == pytest.approx(summed, abs=1e-3)
    row = two["rows"][0]
    assert row["cosine"] == pytest.approx(float(direction_cosine(torch.tensor([row["argmin_xy"]]),
                                                                 torch.tensor(row["true_xy"]))), abs=1e-3)
    assert two["argmin_heads_toward_goal"] == int(row["cosine"] > 0)
    with pytest.raises(SystemExit):
        script.main(common + ["--goal-offset", "0", "--out", str(tmp_path / "x")])
