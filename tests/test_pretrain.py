import json

import numpy as np
import pytest
import torch

from vjepa_vlm import VJEPA2Config, VJEPA2Model
from vjepa_vlm.data.pretrain_dataset import DataArgs, PretrainMixture, SourceArgs
from vjepa_vlm.data.video_io import write_video
from vjepa_vlm.train.checkpoint import DamagedCheckpointError, latest_checkpoint
from vjepa_vlm.train.config import load_config
from vjepa_vlm.train.pretrain import TINY_RECIPE, PretrainConfig, load_recipe, train
from vjepa_vlm.vision.masking import MultiBlockMaskGenerator
from vjepa_vlm.vision.pretraining import VJEPA2Pretrainer, ema_update

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(4):
        frames = np.zeros((12, 32, 32, 3), dtype=np.uint8)
        for t in range(12):
            frames[t, 8:16, (2 * t + i) % 24 : (2 * t + i) % 24 + 8] = 200
        frames += rng.integers(0, 30, size=frames.shape, dtype=np.uint8)
        write_video(root / f"v{i}.mp4", frames, fps=8)
        rows.append({"video": f"v{i}.mp4"})
    (root / "broken.mp4").write_bytes(b"not a video")
    rows.append({"video": "broken.mp4"})
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return [SourceArgs(manifest=str(root / "train.jsonl"))]


# A 2-block, 48-wide encoder on 4-frame 32-px clips, 4 steps with a checkpoint every 2: a whole run in about a second.
TINY_RUN = [
    "model.preset=vjepa2-tiny",
    "model.config_overrides={patch_size: 8, hidden_size: 48, num_hidden_layers: 2, pred_hidden_size: 24}",
    "data.num_frames=4",
    "data.crop_size=32",
    "data.batch_size=2",
    "optim.warmup_steps=1",
    "optim.decay_steps=2",
    "optim.lr=1e-3",
    "optim.ema=0.9",
    "optim.final_ema=0.9",
    "steps=4",
    "log_every=100",
    "checkpoint.every_steps=2",
]


def _config(run_dir, sources, *overrides):
    base = [*TINY_RUN, f"checkpoint.dir={run_dir}"]
    config = load_config(PretrainConfig, overrides=base + list(overrides))
    config.data.sources = sources
    return config


def _losses(run_dir):
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_objective_gives_gradients_to_online_model_only_and_ema_moves_target():
    torch.manual_seed(0)
    config = VJEPA2Config.from_preset("vjepa2-tiny", patch_size=8, hidden_size=48, num_hidden_layers=2, pred_hidden_size=24)
    pretrainer = VJEPA2Pretrainer(VJEPA2Model(config))
    pixel_values = torch.randn(2, 4, 3, 32, 32)
    masks = MultiBlockMaskGenerator((2, 4, 4))(2, torch.Generator().manual_seed(0))
    outputs = pretrainer(pixel_values, masks)
    outputs["loss"].backward()
    assert torch.isfinite(outputs["loss"]) and outputs["target_std"] > 0
    used = [n for n, p in pretrainer.online.named_parameters() if "mask_tokens" not in n]
    assert all(pretrainer.online.get_parameter(n).grad is not None for n in used)
    assert all(p.grad is None for p in pretrainer.target.parameters())

    before = [p.clone() for p in pretrainer.target.encoder.parameters()]
    with torch.no_grad():
        for p in pretrainer.online.encoder.parameters():
            p.add_(1.0)
    pretrainer.update_target(0.75)
    for old, new, online in zip(before, pretrainer.target.encoder.parameters(), pretrainer.online.encoder.parameters()):
        torch.testing.assert_close(new, 0.75 * old + 0.25 * online)


def test_ema_update_rejects_mismatched_models():
    with pytest.raises(ValueError, match="parameters"):
        ema_update(torch.nn.Linear(2, 2), torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)), 0.5)


def test_mixture_samples_are_deterministic_and_broken_files_are_skipped(tiny_sources):
    args = DataArgs(sources=tiny_sources, num_frames=4, crop_size=32)
    dataset = PretrainMixture(args, seed=0)
    clips = [dataset[i]["pixel_values"] for i in range(12)]
    assert clips[0].shape == (4, 3, 32, 32)
    assert torch.equal(PretrainMixture(args, seed=0)[3]["pixel_values"], clips[3])
    assert sum(dataset.skipped.values()) > 0 and all("broken" in k for k in dataset.skipped)


def test_interrupted_and_resumed_run_matches_uninterrupted_run(tmp_path, tiny_sources):
    straight = train(_config(tmp_path / "straight", tiny_sources))
    train(_config(tmp_path / "resumed", tiny_sources, "stop_at_step=2"))
    assert latest_checkpoint(tmp_path / "resumed").name == "step_00000002"
    resumed = train(_config(tmp_path / "resumed", tiny_sources))

    assert len(_losses(straight)) == 4
    np.testing.assert_allclose(_losses(resumed), _losses(straight), rtol=1e-6)
    final_a = VJEPA2Model.from_pretrained(latest_checkpoint(straight) / "target")
    final_b = VJEPA2Model.from_pretrained(latest_checkpoint(resumed) / "target")
    for (name, a), b in zip(final_a.state_dict().items(), final_b.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    assert (straight / "loss_curve.png").is_file()
    rows = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    resumed_rows = [json.loads(line) for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["skipped_files"] > 0  # the broken video was drawn, skipped and counted
    assert [r["skipped_files"] for r in resumed_rows] == [r["skipped_files"] for r in rows]
    assert rows[0]["lr"] == pytest.approx(1e-4)


def test_resume_from_a_damaged_checkpoint_names_the_file(tmp_path, tiny_sources):
    train(_config(tmp_path / "run", tiny_sources, "stop_at_step=2"))
    checkpoint = latest_checkpoint(tmp_path / "run")
    weights = checkpoint / "training_state" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(DamagedCheckpointError, match=rf"checkpoint {checkpoint} is damaged: {weights} holds 1000 bytes"):
        train(_config(tmp_path / "run", tiny_sources))


def test_progress_bar_shows_before_the_first_sample_and_once_per_step(tmp_path, tiny_sources, monkeypatch):
    import vjepa_vlm.train.loop as loop

    events = []

    class RecordingBar(loop.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "mininterval": 0, "miniters": 1})

        def display(self, *args, **kwargs):
            events.append(("draw", self.n))
            return super().display(*args, **kwargs)

    def sample(self, index, original=PretrainMixture.__getitem__):
        events.append("sample")
        return original(self, index)

    monkeypatch.setattr(loop, "tqdm", RecordingBar)
    monkeypatch.setattr(PretrainMixture, "__getitem__", sample)
    train(_config(tmp_path / "run", tiny_sources))
    draws = [event[1] for event in events if event != "sample"]
    assert events[0] == ("draw", 0) and draws[:5] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("name", ["pretrain_vitl.yaml", "pretrain_vith.yaml", "pretrain_vitg.yaml"])
def test_product_recipes_carry_no_synthetic_world(name):
    path = TINY_RECIPE.with_name(name)
    config = load_recipe(path)
    assert type(config) is PretrainConfig and config.validate() == [] and "synthetic" not in path.read_text()


def test_pretraining_without_sources_says_what_to_list(tmp_path):
    with pytest.raises(ValueError, match="data.sources is empty"):
        train(load_config(PretrainConfig, overrides=[f"checkpoint.dir={tmp_path}"]))


def test_resume_dir_of_another_architecture_is_refused(tmp_path, tiny_sources):
    train(_config(tmp_path / "run", tiny_sources, "steps=4", "stop_at_step=1", "checkpoint.every_steps=1"))
    wider = _config(tmp_path / "run", tiny_sources, "model.config_overrides={patch_size: 8, hidden_size: 96, num_hidden_layers: 2, pred_hidden_size: 24}")
    with pytest.raises(ValueError, match="different architecture"):
        train(wider)


def test_progressive_resolution_cooldown_starts_from_constant_phase_weights(tmp_path, tiny_sources):
    first = train(_config(tmp_path / "constant", tiny_sources, "stop_at_step=1"))
    cooldown = _config(
        tmp_path / "cooldown", tiny_sources, "data.num_frames=8", "data.crop_size=48", "steps=1",
        "optim.warmup_steps=0", "optim.decay_steps=1", f"checkpoint.init_from={latest_checkpoint(first)}",
    )
    train(cooldown)
    assert latest_checkpoint(tmp_path / "cooldown").name == "step_00000001"


def test_config_errors_say_what_to_fix(tmp_path, tiny_sources):
    with pytest.raises(ValueError, match=r"warmup_steps \(1\) \+ optim.decay_steps \(9\) exceed steps"):
        train(_config(tmp_path / "bad", tiny_sources, "optim.decay_steps=9"))
    with pytest.raises(ValueError, match="crop_size=30 must be a multiple of patch_size=8"):
        train(_config(tmp_path / "bad", tiny_sources, "data.crop_size=30"))


def test_tiny_recipe_loads_and_validates():
    config = load_recipe(TINY_RECIPE)
    assert config.model.preset == "vjepa2-tiny" and config.synthetic_world.dir == "runs/synthetic_world"


def test_tiny_motion_recipe_is_the_published_command():
    """The recipe file equals the tiny recipe with the overrides of the BENCHMARKS command it stands for."""
    recipe = load_recipe(TINY_RECIPE.with_name("pretrain_tiny_motion.yaml"))
    overrides = [
        "steps=1600", "optim.warmup_steps=200", "optim.decay_steps=400", "checkpoint.every_steps=400",
        "checkpoint.keep_last=4", "log_every=100", "checkpoint.dir=runs/pretrain_tiny_motion",
        "model.config_overrides={patch_size: 8, pred_hidden_size: 96, pred_num_hidden_layers: 4}",
        "optim.lr=1e-4", "optim.start_lr=1e-5", "optim.ema=0.9995", "optim.final_ema=0.9995",
        "mask.configs=[{num_blocks: 1, spatial_scale: [1.0, 1.0], temporal_scale: [0.5, 0.5], aspect_ratio: [1.0, 1.0]}]",
    ]
    assert recipe == load_recipe(TINY_RECIPE, overrides)


def test_stream_sampler_shards_positions_by_rank_and_resumes_at_a_position():
    from itertools import islice

    from vjepa_vlm.data.pretrain_dataset import StreamPositionSampler

    assert list(islice(StreamPositionSampler(start=10, rank=1, world_size=2), 3)) == [11, 13, 15]
    assert list(islice(StreamPositionSampler(), 2)) == [0, 1]


def test_random_resized_crop_respects_scale_and_aspect_ratio():
    from vjepa_vlm.data.pretrain_dataset import random_resized_crop_box

    rng = np.random.default_rng(0)
    for _ in range(50):
        top, left, h, w = random_resized_crop_box(60, 80, (0.3, 1.0), (0.75, 1.35), rng)
        assert 0 <= top and top + h <= 60 and 0 <= left and left + w <= 80
        assert 0.3 * 4800 * 0.9 <= h * w <= 4800 and 0.7 <= w / h <= 1.45


def test_manifest_rows_without_media_are_a_clear_error(tmp_path):
    from vjepa_vlm.data.pretrain_dataset import read_manifest

    (tmp_path / "bad.jsonl").write_text('{"label": 1}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:1: a row needs a 'video' or 'image' key"):
        read_manifest(tmp_path / "bad.jsonl")


def test_effective_rank_separates_dimensional_collapse_from_spread_features():
    from vjepa_vlm.vision.pretraining import effective_rank

    torch.manual_seed(0)
    spread = torch.randn(4, 500, 8)
    squeezed = torch.randn(4, 500, 1) * torch.randn(8) + 1e-3 * torch.randn(4, 500, 8)  # one direction, same scale
    assert 7 < effective_rank(spread) <= 8
    assert 1 <= effective_rank(squeezed) < 1.1 and squeezed.std(dim=(0, 1)).mean() > 0.3


def test_scene_rows_are_drawn_by_weight_and_clips_stay_inside_their_segment(tmp_path):
    # Frame t of the video has brightness 8 * t, so a clip's frames tell which segment they came from.
    frames = np.repeat(np.repeat((np.arange(24) * 8).astype(np.uint8)[:, None, None, None], 16, 1), 16, 2)
    write_video(tmp_path / "v.mp4", np.repeat(frames, 3, axis=3), fps=4)
    segments = [(0.0, 2.0, 0.6), (2.0, 4.0, 0.3), (4.0, 6.0, 0.1)]  # seconds and weights
    (tmp_path / "scenes.jsonl").write_text("".join(
        json.dumps({"video": "v.mp4", "start": s, "end": e, "cluster": i, "weight": w}) + "\n"
        for i, (s, e, w) in enumerate(segments)))
    args = DataArgs(sources=[SourceArgs(str(tmp_path / "scenes.jsonl"))], num_frames=2, fps=4, crop_size=16,
                    crop_scale=(1.0, 1.0), crop_aspect_ratio=(1.0, 1.0))
    dataset = PretrainMixture(args, seed=0)
    counts = np.zeros(3)
    for position in range(300):
        # Undo the ImageNet normalization of the green channel to read the frame index back.
        green = dataset[position]["pixel_values"][:, 1].mean(dim=(1, 2)) * 0.224 + 0.456
        segment = set(((green * 255 / 8).round().long() // 8).clamp(max=2).tolist())  # 8 frames per segment
        assert len(segment) == 1, segment  # never crosses a cut
        counts[segment.pop()] += 1
    np.testing.assert_allclose(counts / counts.sum(), [w for *_, w in segments], atol=0.06)


@pytest.mark.parametrize("row, message", [
    ({"video": "v.mp4", "weight": "heavy"}, "'weight' must be a finite number"),
    ({"video": "v.mp4", "weight": -1}, "'weight' must be >= 0"),
    ({"video": "v.mp4", "start": 3, "end": 1}, "0 <= start < end"),
    ({"image": "i.png", "start": 0, "end": 1}, "on a 'video' row"),
])
def test_bad_scene_rows_name_the_line(tmp_path, row, message):
    (tmp_path / "m.jsonl").write_text(json.dumps({"video": "v.mp4", "weight": 1}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(ValueError, match=message) as error:
        PretrainMixture(DataArgs(sources=[SourceArgs(str(tmp_path / "m.jsonl"))]))
    assert "m.jsonl:2" in str(error.value)
