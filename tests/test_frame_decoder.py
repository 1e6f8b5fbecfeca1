"""The frame decoder (appendix B.3): shapes and patch layout, gradients, checked inputs, the hub round trip through
AutoModel, training on the shared loop with exact resume, and decoded rollouts with the gripper ablation, on a
tiny world model and a LeRobot dataset written here (a bright square moved by the first two action dims)."""

import json
import shutil

import numpy as np
import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError
from PIL import Image
from transformers import AutoConfig, AutoModel
from vjepa2_oracle import randomize_
from vjepa_vlm.data.lerobot_format import LeRobotWriter, vector_feature, video_feature
from vjepa_vlm.scripts import decode_rollouts
from vjepa_vlm.train.checkpoint import latest_checkpoint
from vjepa_vlm.train.train_frame_decoder import DecoderDataArgs, encode_dataset
from vjepa_vlm.train.train_frame_decoder import main as train_main

from vjepa_vlm import (
    VJEPA2FrameDecoder,
    VJEPA2FrameDecoderConfig,
    VJEPA2WorldModel,
    VJEPA2WorldModelConfig,
)
from vjepa_vlm.modeling_vjepa2_frame_decoder import to_unit_pixels

torch.set_num_threads(1)
CAMERA = "observation.images.front"
SMALL = {"hidden_size": 24, "num_hidden_layers": 1, "num_attention_heads": 2}


@pytest.fixture(scope="module")
def world_model(tmp_path_factory):
    """A tiny world model with 4 x 4 patches of 16 px on 64-px frames, saved to a folder."""
    model = randomize_(VJEPA2WorldModel(VJEPA2WorldModelConfig.from_preset("vjepa2-ac-tiny")), seed=4).eval()
    folder = tmp_path_factory.mktemp("world") / "model"
    model.save_pretrained(folder)
    return model, folder


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("play")
    features = {CAMERA: video_feature(64, 64, fps=10), "observation.state": vector_feature(["x", "y", "z", "g"]),
                "action": vector_feature(["dx", "dy", "dz", "g"])}
    # One episode per file, so one episode's video can be broken alone.
    writer = LeRobotWriter(root, fps=10, features=features, robot_type="toy", episodes_per_file=1)
    rng = np.random.default_rng(0)
    for _ in range(3):
        actions = rng.uniform(-1, 1, size=(12, 4)).astype(np.float32)
        position, frames, states = np.array([24.0, 24.0]), [], []
        for action in actions:
            frame = np.full((64, 64, 3), 30, dtype=np.uint8)
            top, left = np.clip(position, 0, 48).astype(int)
            frame[top : top + 16, left : left + 16] = (230, 200, 40)
            frames.append(frame)
            states.append(np.r_[position / 64, 0.0, 0.0].astype(np.float32))
            position = position + 4 * action[:2]
        writer.add_episode({CAMERA: np.stack(frames)}, {"observation.state": np.stack(states), "action": actions},
                           task="play")
    writer.finish()
    return root


def test_decoder_maps_each_token_to_its_own_patch_and_every_parameter_learns(world_model):
    decoder = VJEPA2FrameDecoder.from_world_model(world_model[0], **SMALL)
    assert (decoder.config.encoder_hidden_size, decoder.config.crop_size, decoder.config.patch_size) == (96, 64, 16)
    features = torch.randn(2, 16, 96)
    output = decoder(features, pixel_values=torch.zeros(2, 3, 64, 64))
    assert output.pixel_values.shape == (2, 3, 64, 64) and torch.isfinite(output.loss)
    output.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in decoder.parameters())
    # With no blocks' influence (a zero embedding), the head's bias alone paints every patch the same: the
    # layout puts token (row, col) at pixels [16 row : 16 row + 16, 16 col : 16 col + 16].
    with torch.no_grad():
        decoder.head.weight.zero_()
        decoder.head.bias.copy_(torch.arange(16 * 16 * 3, dtype=torch.float32))
    pixels = decoder(features).pixel_values[0]
    assert torch.equal(pixels[:, :16, :16], pixels[:, 48:, 16:32])
    assert pixels[0, 0, 1] - pixels[0, 0, 0] == 3 and pixels[1, 0, 0] - pixels[0, 0, 0] == 1  # channels innermost
    assert pixels[0, 1, 0] - pixels[0, 0, 0] == 48


def test_bad_inputs_and_configs_are_refused_with_what_was_expected(world_model):
    decoder = VJEPA2FrameDecoder.from_world_model(world_model[0], **SMALL)
    with pytest.raises(ValueError, match=r"features must be \(B, 16, 96\)"):
        decoder(torch.randn(1, 64, 96))
    with pytest.raises(ValueError, match=r"pixel_values must be \(1, 3, 64, 64\)"):
        decoder(torch.randn(1, 16, 96), pixel_values=torch.zeros(1, 3, 32, 32))
    with pytest.raises(StrictDataclassClassValidationError, match="multiple of patch_size"):
        VJEPA2FrameDecoderConfig(crop_size=60, patch_size=8)
    with pytest.raises(StrictDataclassClassValidationError, match="head dim >= 6"):
        VJEPA2FrameDecoderConfig(hidden_size=20, num_attention_heads=4)


def test_hub_round_trip_through_the_auto_classes(world_model, tmp_path):
    decoder = VJEPA2FrameDecoder.from_world_model(world_model[0], **SMALL).eval()
    decoder.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "vjepa2_frame_decoder"
    assert isinstance(AutoConfig.from_pretrained(tmp_path), VJEPA2FrameDecoderConfig)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, VJEPA2FrameDecoder)
    features = torch.randn(1, 16, 96)
    torch.testing.assert_close(loaded(features).pixel_values, decoder(features).pixel_values)


def _train(run_dir, world_folder, root, *overrides):
    decoder = ",".join(f"{k}: {v}" for k, v in SMALL.items())
    return train_main([f"world_model={world_folder}", f"data.root={root}", f"checkpoint.dir={run_dir}",
                       "data.num_episodes=2", "data.batch_size=8", "steps=6", "optim.warmup_steps=2", "optim.lr=3e-3",
                       "checkpoint.every_steps=3", "log_every=0", f"decoder={{{decoder}}}",
                       *overrides])


def test_training_lowers_the_pixel_loss_and_an_interrupted_run_resumes_exactly(world_model, dataset, tmp_path):
    straight = _train(tmp_path / "straight", world_model[1], dataset)
    _train(tmp_path / "resumed", world_model[1], dataset, "stop_at_step=3")
    assert latest_checkpoint(tmp_path / "resumed").name == "step_00000003"
    resumed = _train(tmp_path / "resumed", world_model[1], dataset)
    rows = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    again = [json.loads(line) for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and rows[-1]["loss"] < rows[0]["loss"]
    np.testing.assert_allclose([r["loss"] for r in again], [r["loss"] for r in rows], rtol=1e-5)
    final = VJEPA2FrameDecoder.from_pretrained(latest_checkpoint(resumed) / "model")
    reference = VJEPA2FrameDecoder.from_pretrained(latest_checkpoint(straight) / "model")
    for (name, a), b in zip(final.state_dict().items(), reference.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    with pytest.raises(ValueError, match="world_model is empty"):
        train_main([f"data.root={dataset}"])


def test_unreadable_episodes_are_skipped_and_counted_and_none_readable_is_an_error(world_model, dataset, tmp_path):
    root = tmp_path / "play"
    shutil.copytree(dataset, root)
    features, pixels, unreadable = encode_dataset(world_model[0], DecoderDataArgs(root=str(root), num_episodes=3))
    videos = sorted((root / "videos" / CAMERA).rglob("*.mp4"))
    assert len(videos) == 3 and len(features) == len(pixels) == 3 * 6 and unreadable == {}
    videos[1].write_bytes(b"not a video")
    features, pixels, unreadable = encode_dataset(world_model[0], DecoderDataArgs(root=str(root), num_episodes=3))
    assert len(features) == len(pixels) == 2 * 6 and list(unreadable) == [1] and videos[1].name in unreadable[1]
    with pytest.raises(ValueError, match=r"none of the 1 episodes could be read \(episode 1: .*" + videos[1].name):
        encode_dataset(world_model[0], DecoderDataArgs(root=str(root), first_episode=1, num_episodes=1))


def test_decoded_rollouts_report_mse_per_horizon_controls_and_strips(world_model, dataset, tmp_path):
    decoder = VJEPA2FrameDecoder.from_world_model(world_model[0], **SMALL)
    decoder.save_pretrained(tmp_path / "decoder")
    summary = decode_rollouts.main(["--model", str(world_model[1]), "--decoder", str(tmp_path / "decoder"),
                                    "--data", str(dataset), "--first-episode", "2", "--fps", "5", "--horizon", "2",
                                    "--strips", "1", "--out", str(tmp_path / "out")])
    # One held-out episode of 12 frames at stride 2: clips of 5 recorded frames start at 0 and 5.
    assert summary["clips"] == 2
    for key in ("decoded_features", "decoded_rollout", "rollout_other_actions", "true_first_frame",
                "decoded_first_frame"):
        values = summary["pixel_mse_per_horizon"][key]
        assert len(values) == 2 and all(0 <= v <= 1 for v in values)
    mse = summary["pixel_mse_per_horizon"]
    assert mse["true_first_frame"][1] > 0  # the square moved
    assert mse["rollout_other_actions"] != mse["decoded_rollout"]  # the other clip's actions change the rollout
    assert summary["gripper_open_vs_closed_mean_abs_pixel_difference"] > 0  # a random predictor reads the gripper
    with Image.open(next((tmp_path / "out").glob("strips_*.png"))) as strip:
        assert strip.height == 5 * (2 * 64 + 2)
    assert json.loads((tmp_path / "out" / "decoded_rollouts.json").read_text())["clips"] == 2
    other = VJEPA2FrameDecoder(VJEPA2FrameDecoderConfig(encoder_hidden_size=48, **SMALL))
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(ValueError, match="train a decoder on this model"):
        decode_rollouts.main(["--model", str(world_model[1]), "--decoder", str(tmp_path / "other"),
                              "--data", str(dataset), "--out", str(tmp_path / "x")])


def test_unit_pixels_invert_the_encoder_normalization():
    from vjepa_vlm.data.normalization import normalize_frames

    unit = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(to_unit_pixels(normalize_frames(unit)), unit)
