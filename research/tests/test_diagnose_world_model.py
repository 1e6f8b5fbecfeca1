import json

import numpy as np
import pytest
import torch
from research_module import load_research_module
from vjepa_vlm.data.lerobot_format import LeRobotWriter, vector_feature, video_feature
from vjepa_vlm.train.ac_trainer import ACTrainConfig, build_world_model
from vjepa_vlm.train.config import load_config

torch.set_num_threads(1)

diag = load_research_module("diagnose_world_model")

CAMERA, SIZE, FPS = "observation.images.front", 32, 10


@pytest.fixture(scope="module")
def square_world(tmp_path_factory):
    """Six episodes of a bright square that the first two action dims move; the state holds its position."""
    root = tmp_path_factory.mktemp("square_world")
    features = {CAMERA: video_feature(SIZE, SIZE, fps=FPS), "observation.state": vector_feature(["x", "y", "z", "g"]),
                "action": vector_feature(["dx", "dy", "dz", "g"])}
    writer = LeRobotWriter(root, fps=FPS, features=features, episodes_per_file=6)
    rng = np.random.default_rng(0)
    for _ in range(6):
        actions = rng.uniform(-1, 1, size=(20, 4)).astype(np.float32)
        position = rng.uniform(4, 20, size=2)
        frames, states = [], []
        for action in actions:
            frame = np.full((SIZE, SIZE, 3), 20, dtype=np.uint8)
            top, left = np.clip(position, 0, SIZE - 8).astype(int)
            frame[top : top + 8, left : left + 8] = 220
            frames.append(frame)
            states.append(np.array([*position / SIZE, 0.0, 0.0], dtype=np.float32))
            position = position + 2 * action[:2]
        writer.add_episode({CAMERA: np.stack(frames)}, {"observation.state": np.stack(states), "action": actions},
                           task="play")
    writer.finish()
    return root


def test_ridge_probe_recovers_a_linear_map_and_not_noise():
    torch.manual_seed(0)
    x = torch.randn(90, 20, dtype=torch.float64)
    splits = (slice(0, 50), slice(50, 70), slice(70, 90))
    linear = diag.ridge_r2(x, x @ torch.randn(20, 3, dtype=torch.float64), splits)
    noise = diag.ridge_r2(x, torch.randn(90, 3, dtype=torch.float64), splits)
    assert linear["r2_test"] > 0.99
    assert noise["r2_test"] < 0.2


def test_an_untrained_residual_model_is_diagnosed_as_nothing_moves(square_world, tmp_path):
    torch.manual_seed(0)
    config = load_config(ACTrainConfig, overrides=[
        "model.preset=vjepa2-ac-tiny",
        "model.encoder_overrides={patch_size: 8, hidden_size: 48, num_hidden_layers: 1}",
        "model.predictor_overrides={hidden_size: 48, num_hidden_layers: 2, residual_prediction: true}",
        f"data.crop_size={SIZE}", "data.state_dim=4", "data.action_dim=4",
    ])
    build_world_model(config.model, config.data).save_pretrained(tmp_path / "model")
    out = tmp_path / "diag.json"
    diag.main(["--data", str(square_world), "--model", str(tmp_path / "model"), "--fps", "5", "--crop-size",
               str(SIZE), "--val-start", "3", "--test-start", "4", "--frame-step", "2", "--horizon", "2",
               "--top-fraction", "0.25", "--out", str(out)])
    results = json.loads(out.read_text())
    assert results["frames"] == 6 * 10 and set(results["probe"]) == {"features_all_tokens", "features_mean_token",
                                                                      "pixels"}
    prediction = results["prediction"]
    # Episodes 4 and 5 (20 frames, clips of 3 frames every 2nd recorded frame: span 5) give 4 clips each.
    assert prediction["clips"] == 8
    for split in ("all", "changing", "static"):
        # predictor_proj starts at zero: the prediction is frame t, it ignores the actions and changes nothing.
        assert prediction["l1_model"][split] == pytest.approx(prediction["l1_nothing_moves"][split], abs=1e-4)
        assert prediction["action_sensitivity"][split] < 1e-4 and prediction["predicted_change"][split] < 1e-4
    # The square moves: the tokens chosen as changing change more than the rest.
    assert prediction["true_change"]["changing"] > 2 * prediction["true_change"]["static"]
