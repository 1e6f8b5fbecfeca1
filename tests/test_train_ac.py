"""World-model training: clips from any LeRobot dataset, the teacher-forcing + rollout loss, the feature cache, exact
resume, the recipes. The datasets here are written by the tests through `LeRobotWriter` for a made-up robot with
7-D states and actions (the paper's Droid dims, not Fetch's 4), 10 fps, two of whose episodes are bad."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vjepa_vlm.data.ac_dataset import ACClipDataset, ACDataArgs
from vjepa_vlm.data.lerobot_format import (
    LeRobotEpisodes, LeRobotFormatError, LeRobotWriter, export_episode_videos, vector_feature, video_feature,
)
from vjepa_vlm.data.pretrain_dataset import crop_and_normalize, read_manifest
from vjepa_vlm.data.video_io import read_video
from vjepa_vlm.modeling_vjepa2_ac import VJEPA2WorldModel
from vjepa_vlm.train.ac_trainer import (
    ACTrainConfig, WorldModelObjective, build_world_model, change_weights, load_recipe, train,
)
from vjepa_vlm.train.checkpoint import latest_checkpoint
from vjepa_vlm.train.config import load_config, validate_config
from vjepa_vlm.train.train_ac import TINY_RECIPE
from vjepa_vlm.vision.schedules import lr_at

torch.set_num_threads(1)

CAMERA = "observation.images.wrist"
FPS, SIZE = 10, 32
LENGTHS = (12, 14, 3, 12)  # episode 2 is shorter than a clip


def _episode(rng, length):
    """A bright square moved by the first two action dims; the state holds its position."""
    actions = rng.uniform(-1, 1, size=(length, 7)).astype(np.float32)
    position = np.array([8.0, 8.0])
    frames, states = [], []
    for action in actions:
        frame = np.full((SIZE, SIZE, 3), 20, dtype=np.uint8)
        top, left = np.clip(position, 0, SIZE - 8).astype(int)
        frame[top : top + 8, left : left + 8] = 220
        frames.append(frame)
        states.append(np.concatenate([position / SIZE, np.zeros(5)]).astype(np.float32))
        position = position + 2 * action[:2]
    return {CAMERA: np.stack(frames)}, {"observation.state": np.stack(states), "action": actions}


@pytest.fixture(scope="module")
def robot_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("robot")
    features = {
        CAMERA: video_feature(SIZE, SIZE, fps=FPS),
        "observation.state": vector_feature([f"s{i}" for i in range(7)]),
        "action": vector_feature([f"a{i}" for i in range(7)]),
    }
    # One episode per file, so episode 3's video can be broken alone.
    writer = LeRobotWriter(root, fps=FPS, features=features, robot_type="arm7", episodes_per_file=1)
    rng = np.random.default_rng(0)
    for length in LENGTHS:
        frames, columns = _episode(rng, length)
        writer.add_episode(frames, columns, task="play")
    writer.finish()
    (root / f"videos/{CAMERA}/chunk-000/file-003.mp4").write_bytes(b"not a video")
    return root


def _data_args(root, **overrides) -> ACDataArgs:
    values = dict(root=str(root), camera_key=CAMERA, num_frames=4, fps=5.0, crop_size=SIZE, batch_size=2)
    return ACDataArgs(**{**values, **overrides})


def test_clips_sample_every_stride_frame_with_summed_actions(robot_dataset):
    dataset = ACClipDataset(_data_args(robot_dataset), seed=0)
    assert dataset.stride == 2 and dataset.span == 7
    assert dataset.too_short == [2] and dataset.episodes == [0, 1, 3]
    samples = [dataset[position] for position in range(12)]
    sample = next(s for s in samples if s["episode"] != 3)
    assert sample["pixel_values"].shape == (4, 3, SIZE, SIZE)
    assert sample["states"].shape == (4, 7) and sample["actions"].shape == (3, 7)
    rows = dataset.reader.episode(sample["episode"], frames=False)
    start = sample["start"]
    np.testing.assert_array_equal(sample["states"].numpy(), rows.state[[start, start + 2, start + 4, start + 6]])
    expected = [rows.action[start + 2 * k] + rows.action[start + 2 * k + 1] for k in range(3)]
    np.testing.assert_allclose(sample["actions"].numpy(), np.stack(expected), rtol=1e-6)
    # Episode 3's video is unreadable: drawn, skipped, counted; the stream depends on (seed, position) only.
    assert all(s["episode"] != 3 for s in samples) and sum(s["skipped"] for s in samples) > 0
    assert 3 in dataset.unreadable and "file-003.mp4" in dataset.unreadable[3]
    again = ACClipDataset(_data_args(robot_dataset), seed=0)[5]
    assert again["episode"] == samples[5]["episode"] and torch.equal(again["pixel_values"], samples[5]["pixel_values"])


def test_bad_dataset_fields_are_clear_errors(robot_dataset):
    with pytest.raises(ValueError, match=r"observation.state.*shape \[7\], expected \[4\]"):
        ACClipDataset(_data_args(robot_dataset, state_dim=4))
    with pytest.raises(ValueError, match="10 fps, which is not a whole multiple of data.fps=3"):
        ACClipDataset(_data_args(robot_dataset, fps=3.0))
    with pytest.raises(ValueError, match="none of the 4 episodes has the 29 frames"):
        ACClipDataset(_data_args(robot_dataset, num_frames=8, fps=2.5))
    with pytest.raises(ValueError, match="camera_key 'observation.images.front' is not"):
        ACClipDataset(_data_args(robot_dataset, camera_key="observation.images.front"))


def _tiny_model(data: ACDataArgs) -> VJEPA2WorldModel:
    torch.manual_seed(0)
    config = load_config(ACTrainConfig, overrides=TINY_MODEL)
    return build_world_model(config.model, data)


TINY_MODEL = [
    "model.preset=vjepa2-ac-tiny",
    "model.encoder_overrides={patch_size: 8, hidden_size: 48, num_hidden_layers: 1}",
    "model.predictor_overrides={hidden_size: 48, num_hidden_layers: 2}",
]


def test_loss_is_teacher_forcing_plus_two_step_rollout_l1_on_layer_normed_features(robot_dataset):
    data = _data_args(robot_dataset)
    model = _tiny_model(data)
    assert model.config.predictor_config.action_dim == 7 and model.config.predictor_config.state_dim == 7
    frames = torch.randn(2, 4, 3, SIZE, SIZE)
    actions, states = torch.randn(2, 3, 7), torch.randn(2, 4, 7)
    outputs = WorldModelObjective(model, auto_steps=2)(actions, states, pixel_values=frames)

    # The reference equations, written out: each frame encoded alone (repeated into a tubelet), layer norm without
    # affine parameters on encoder outputs and on predictor outputs, L1 means.
    encoded = model.encoder(frames.flatten(0, 1)).last_hidden_state.view(2, 4, 16, 48)
    z = F.layer_norm(encoded, (48,))
    step = lambda feats, a, s: F.layer_norm(model.predictor(feats, a, s), (48,))  # noqa: E731
    teacher_forcing = (step(z[:, :3], actions, states[:, :3]) - z[:, 1:]).abs().mean()
    first = step(z[:, :1], actions[:, :1], states[:, :1])
    second = step(torch.cat([z[:, :1], first], 1), actions[:, :2], states[:, :2])[:, -1:]
    rollout = (torch.cat([first, second], 1) - z[:, 1:3]).abs().mean()
    torch.testing.assert_close(outputs["teacher_forcing_loss"], teacher_forcing)
    torch.testing.assert_close(outputs["rollout_loss"], rollout)
    torch.testing.assert_close(outputs["loss"], teacher_forcing + rollout)

    outputs["loss"].backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    trainable = [n for n, p in model.predictor.named_parameters() if p.requires_grad]
    assert trainable and all(model.predictor.get_parameter(n).grad is not None for n in trainable)


def test_change_weights_follow_the_formula_on_a_hand_made_example():
    features = torch.zeros(1, 4, 4, 2)
    features[0, 1, 0] = 2.0  # token 0 moves at target 1 and back at target 2; at target 3 nothing changes
    features[0, 1, 1] = 1.0  # token 1 moves half as much
    weights = change_weights(features, alpha=4.0)[0, :, :, 0]
    # change c = (2, 1, 0, 0), mean 0.75: w = (1 + 4 c / 0.75) / 5
    expected = torch.tensor([(1 + 4 * 2 / 0.75) / 5, (1 + 4 * 1 / 0.75) / 5, 0.2, 0.2])
    torch.testing.assert_close(weights[0], expected)
    torch.testing.assert_close(weights[1], expected)
    assert torch.equal(weights[2], torch.ones(4))
    torch.testing.assert_close(weights.mean(-1), torch.ones(3))


def test_change_weighted_loss_is_off_by_default_and_weights_each_target_token(robot_dataset):
    model = _tiny_model(_data_args(robot_dataset))
    torch.manual_seed(1)
    # 4 of the 16 tokens change from frame to frame, the rest stay: the weights are far from uniform.
    features = torch.randn(2, 1, 16, 48).repeat(1, 4, 1, 1)
    features[:, :, :4] = torch.randn(2, 4, 4, 48)
    features = F.layer_norm(features, (48,))
    actions, states = torch.randn(2, 3, 7), torch.randn(2, 4, 7)
    predicted = model(features[:, :-1], actions, states[:, :-1]).predicted_features.detach()
    imagined = model.rollout(features[:, :1], actions[:, :2], states[:, :2], 2).detach()

    default = WorldModelObjective(model, auto_steps=2)(actions, states, features=features)
    off = WorldModelObjective(model, auto_steps=2, change_weight=0.0)(actions, states, features=features)
    plain_tf = (predicted - features[:, 1:]).abs().mean()
    assert torch.equal(default["teacher_forcing_loss"], plain_tf) and torch.equal(off["loss"], default["loss"])

    alpha = 2.0
    weighted = WorldModelObjective(model, auto_steps=2, change_weight=alpha)(actions, states, features=features)
    tf_sum, rollout_sum = 0.0, 0.0
    for b in range(2):
        for t in range(3):
            change = [(features[b, t + 1, n] - features[b, t, n]).abs().mean().item() for n in range(16)]
            mean = sum(change) / 16
            for n in range(16):
                weight = (1 + alpha * change[n] / mean) / (1 + alpha)
                tf_sum += weight * (predicted[b, t, n] - features[b, t + 1, n]).abs().mean().item()
                if t < 2:
                    rollout_sum += weight * (imagined[b, t, n] - features[b, t + 1, n]).abs().mean().item()
    assert weighted["teacher_forcing_loss"].item() == pytest.approx(tf_sum / (2 * 3 * 16), rel=1e-5)
    assert weighted["rollout_loss"].item() == pytest.approx(rollout_sum / (2 * 2 * 16), rel=1e-5)
    weighted["loss"].backward()
    assert all(p.grad is not None for p in model.predictor.parameters() if p.requires_grad)


def test_feature_cache_serves_exactly_the_center_cropped_encoding(robot_dataset):
    data = _data_args(robot_dataset, cache_features=True)
    model = _tiny_model(data)
    cached = ACClipDataset(data, seed=0)
    cached.build_feature_cache(model.encode_frames, chunk=5)
    assert set(cached.features) == {0, 1} and 3 in cached.unreadable
    sample = cached[0]
    rows = cached.reader.episode(sample["episode"], start=sample["start"], num_frames=cached.span)
    clip = crop_and_normalize(rows.frames[::2], (0, 0, SIZE, SIZE), SIZE)
    torch.testing.assert_close(sample["features"], model.encode_frames(clip[None])[0], rtol=1e-5, atol=1e-5)
    uncached = ACClipDataset(data, seed=0)[0]
    assert (sample["episode"], sample["start"]) == (uncached["episode"], uncached["start"])
    torch.testing.assert_close(sample["actions"], uncached["actions"])


TINY_RUN = [
    *TINY_MODEL,
    "data.num_frames=4", "data.fps=5.0", f"data.crop_size={SIZE}", "data.batch_size=2", f"data.camera_key={CAMERA}",
    "optim.warmup_steps=1", "optim.decay_steps=2", "optim.lr=1e-3",
    "steps=4", "log_every=100", "checkpoint.every_steps=2",
]


def _run(run_dir, root, *overrides):
    config = load_config(ACTrainConfig, overrides=[*TINY_RUN, f"data.root={root}", f"checkpoint.dir={run_dir}",
                                                   *overrides])
    return train(config)


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("cache", [False, True])
def test_interrupted_and_resumed_run_matches_uninterrupted_run(tmp_path, robot_dataset, cache):
    straight = _run(tmp_path / "straight", robot_dataset, f"data.cache_features={cache}")
    _run(tmp_path / "resumed", robot_dataset, f"data.cache_features={cache}", "stop_at_step=2")
    assert latest_checkpoint(tmp_path / "resumed").name == "step_00000002"
    resumed = _run(tmp_path / "resumed", robot_dataset, f"data.cache_features={cache}")

    rows, resumed_rows = _rows(straight), _rows(resumed)
    assert len(rows) == 4 and all(np.isfinite(r["loss"]) for r in rows)
    for key in ("loss", "teacher_forcing_loss", "rollout_loss"):
        np.testing.assert_allclose([r[key] for r in resumed_rows], [r[key] for r in rows], rtol=1e-6)
    assert rows[-1]["skipped_clips"] > 0  # the broken video was drawn, skipped and counted
    assert [r["skipped_clips"] for r in resumed_rows] == [r["skipped_clips"] for r in rows]
    assert rows[0]["lr"] == pytest.approx(1e-4) and rows[1]["lr"] == pytest.approx(1e-3)
    final_a = VJEPA2WorldModel.from_pretrained(latest_checkpoint(straight) / "model")
    final_b = VJEPA2WorldModel.from_pretrained(latest_checkpoint(resumed) / "model")
    for (name, a), b in zip(final_a.state_dict().items(), final_b.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_config_errors_say_what_to_fix(tmp_path):
    config = load_config(ACTrainConfig, overrides=["steps=10", "optim.warmup_steps=8", "optim.decay_steps=8",
                                                   "data.num_frames=3", "loss.auto_steps=3", "model.preset=nope",
                                                   "loss.change_weight=-1"])
    with pytest.raises(ValueError) as error:
        validate_config(config)
    message = str(error.value)
    for expected in ("data.root is empty", "exceed steps (10)", "loss.auto_steps must be in [1, data.num_frames - 1 = 2]",
                     "model.preset 'nope' is unknown", "loss.change_weight must be >= 0, got -1"):
        assert expected in message


def test_recipes_load_and_the_paper_schedule_is_warmup_constant_decay():
    tiny = load_recipe(TINY_RECIPE)
    assert tiny.data.root == "" and tiny.play_data.dir == "runs/play" and not tiny.data.cache_features
    paper = load_recipe(TINY_RECIPE.parent / "ac_vitg.yaml", ["data.root=droid"])
    validate_config(paper)
    assert not hasattr(paper, "play_data")
    assert (paper.steps, paper.optim.warmup_steps, paper.optim.decay_steps) == (94500, 4500, 4500)
    assert (paper.data.num_frames, paper.data.fps, paper.data.crop_aspect_ratio) == (8, 4.0, (0.75, 1.35))
    assert (paper.data.action_dim, paper.data.state_dim, paper.optim.weight_decay) == (7, 7, 0.04)
    lrs = [lr_at(paper.optim, step, paper.steps) for step in (0, 2250, 4500, 50000, 90000, 92250, 94500)]
    np.testing.assert_allclose(lrs, [7.5e-5, (7.5e-5 + 4.25e-4) / 2, 4.25e-4, 4.25e-4, 4.25e-4, 4.25e-4 / 2, 0.0])


def test_held_out_evaluation_compares_the_model_with_both_baselines(robot_dataset):
    from vjepa_vlm.scripts.eval_world_model import evaluate, format_table, held_out_clips

    data = _data_args(robot_dataset, num_frames=3, cache_features=True)
    model = _tiny_model(data).eval()
    dataset = ACClipDataset(data)
    dataset.build_feature_cache(model.encode_frames)
    clips = held_out_clips(dataset)
    # Episodes 0 and 1 (12 and 14 frames) hold two clips of 5 recorded frames each; 2 is too short, 3 unreadable.
    assert [c["features"].shape[0] for c in clips] == [3] * 4
    results = evaluate(model, clips, horizon=2)
    z = torch.stack([c["features"] for c in clips])
    copy_last = [(z[:, k - 1] - z[:, k]).abs().mean().item() for k in (1, 2)]
    np.testing.assert_allclose(results["teacher_forcing"]["nothing_moves"], copy_last, rtol=1e-5)
    np.testing.assert_allclose(results["rollout"]["nothing_moves"][1], (z[:, 0] - z[:, 2]).abs().mean().item(), rtol=1e-5)
    # One step ahead, rolling out and teacher forcing are the same prediction.
    np.testing.assert_allclose(results["rollout"]["model"][0], results["teacher_forcing"]["model"][0], rtol=1e-5)
    assert results["rollout"]["other_actions"][0] != results["rollout"]["model"][0]
    assert "| rollout | nothing_moves |" in format_table(results)
    # Clip wins: the share of clips whose own L1 is below the baseline's, per horizon.
    actions, states = torch.stack([c["actions"] for c in clips]), torch.stack([c["states"] for c in clips])
    with torch.no_grad():
        predicted = model(z[:, :-1], actions, states[:, :-1]).predicted_features
    own = (predicted - z[:, 1:]).abs().mean(dim=(2, 3))
    still = (z[:, :-1] - z[:, 1:]).abs().mean(dim=(2, 3))
    assert results["clip_wins"]["teacher_forcing"]["nothing_moves"] == (own < still).float().mean(0).tolist()
    assert all(0 <= v <= 1 for v in results["clip_wins"]["rollout"]["other_actions"])
    assert "| teacher_forcing | clips where the model beats nothing_moves |" in format_table(results)


def test_residual_prediction_starts_as_nothing_moves_and_keeps_the_reference_keys(robot_dataset, tmp_path):
    data = _data_args(robot_dataset, num_frames=3, cache_features=True)
    plain = _tiny_model(data)
    torch.manual_seed(0)
    residual = "model.predictor_overrides={hidden_size: 48, num_hidden_layers: 2, residual_prediction: true}"
    config = load_config(ACTrainConfig, overrides=[*TINY_MODEL[:-1], residual])
    model = build_world_model(config.model, data).eval()
    assert model.predictor.predictor_proj.weight.abs().max() == 0 and model.predictor.predictor_proj.bias.abs().max() == 0
    assert model.predictor.predictor_embed.weight.std() > 0.01  # everything else keeps the reference init
    assert sorted(model.state_dict()) == sorted(plain.state_dict())
    dataset = ACClipDataset(data)
    dataset.build_feature_cache(model.encode_frames)
    clip = dataset.clip(0, 0)
    features = clip["features"].unsqueeze(0)
    predicted = model(features[:, :-1], clip["actions"].unsqueeze(0), clip["states"][:-1].unsqueeze(0))
    torch.testing.assert_close(predicted.predicted_features, features[:, :-1], atol=1e-4, rtol=0)
    # Once trained away from zero, the option survives saving: the output is still frame t plus the projection.
    with torch.no_grad():
        model.predictor.predictor_proj.bias.fill_(0.5)
    model.save_pretrained(tmp_path)
    loaded = VJEPA2WorldModel.from_pretrained(tmp_path)
    assert loaded.config.predictor_config.residual_prediction
    raw = loaded.predictor(features[:, :-1], clip["actions"].unsqueeze(0), clip["states"][:-1].unsqueeze(0))
    torch.testing.assert_close(raw, features[:, :-1] + 0.5, atol=1e-4, rtol=0)


def test_episode_videos_export_one_file_per_chosen_episode_for_pretraining(robot_dataset, tmp_path):
    reader = LeRobotEpisodes(robot_dataset, camera_key=CAMERA)
    manifest = export_episode_videos(robot_dataset, tmp_path / "videos", camera_key=CAMERA, first_episode=1,
                                     num_episodes=2)
    rows = read_manifest(manifest)
    assert [path.name for _, path in rows] == ["episode_000001.mp4", "episode_000002.mp4"]
    for (kind, path), episode in zip(rows, (1, 2)):
        decoded = read_video(path)
        assert kind == "video" and decoded.shape == (LENGTHS[episode], SIZE, SIZE, 3)
        assert np.abs(decoded.astype(int) - reader.episode(episode).frames.astype(int)).mean() < 3
    with pytest.raises(LeRobotFormatError, match="first_episode=9 leaves no episode"):
        export_episode_videos(robot_dataset, tmp_path / "none", camera_key=CAMERA, first_episode=9)
