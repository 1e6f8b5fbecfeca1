"""The V-JEPA 2-AC world model on the tiny preset: frame encoding as the reference does it, teacher forcing,
autoregressive rollouts, one-folder save/load, and conversion of a checkpoint in the released layout."""

import importlib.util
from pathlib import Path

import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError
from test_ac_predictor import reference_state_dict
from test_conversion import meta_checkpoint
from transformers import AutoModel
from vjepa2_oracle import randomize_, tiny_config

from vjepa_vlm import VJEPA2ACPredictor, VJEPA2Model, VJEPA2WorldModel, VJEPA2WorldModelConfig
from vjepa_vlm.convert_vjepa2_ac import convert_meta_ac_checkpoint

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "convert_ac_checkpoint.py"
TOL = 1e-5


@pytest.fixture(scope="module")
def model() -> VJEPA2WorldModel:
    return randomize_(VJEPA2WorldModel(VJEPA2WorldModelConfig.from_preset("vjepa2-ac-tiny")), seed=2).eval()


def episode(batch: int = 2, frames: int = 3, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    video = torch.randn(batch, frames, 3, 64, 64, generator=generator)
    return video, torch.randn(batch, frames, 4, generator=generator), torch.randn(batch, frames, 4, generator=generator)


def layer_norm_without_affine(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + eps)


@torch.no_grad()
def test_frames_are_encoded_alone_as_one_repeated_tubelet_and_layer_normed(model):
    video, _, _ = episode()
    features = model.encode_frames(video)
    assert features.shape == (2, 3, 16, 96)
    for t in range(3):
        tubelet = video[:, t : t + 1].expand(-1, 2, -1, -1, -1)  # the frame twice: one tubelet
        expected = layer_norm_without_affine(model.encoder(tubelet).last_hidden_state)
        assert (features[:, t] - expected).abs().max().item() <= TOL
    with pytest.raises(ValueError, match=r"frames must be \(B, T, C, 64, 64\)"):
        model.encode_frames(torch.zeros(1, 2, 3, 32, 32))


@torch.no_grad()
def test_teacher_forcing_predicts_layer_normed_features_of_the_next_frames(model):
    video, actions, states = episode()
    features = model.encode_frames(video)
    predicted = model(features, actions, states).predicted_features
    assert predicted.shape == (2, 3, 16, 96)
    raw = model.predictor(features, actions, states)
    assert (predicted - layer_norm_without_affine(raw)).abs().max().item() <= TOL
    assert (model.predict_next(features, actions, states) - predicted[:, -1]).abs().max().item() == 0.0


@torch.no_grad()
def test_rollout_feeds_each_prediction_back(model):
    video, actions, states = episode(frames=4)
    context = model.encode_frames(video[:, :2])
    one = model.rollout(context, actions[:, :2], states[:, :2], steps=1)
    assert one.shape == (2, 1, 16, 96)
    assert (one[:, 0] - model.predict_next(context, actions[:, :2], states[:, :2])).abs().max().item() <= TOL

    three = model.rollout(context, actions, states, steps=3)
    assert three.shape == (2, 3, 16, 96)
    imagined = context
    for length in (2, 3, 4):
        following = model.predict_next(imagined, actions[:, :length], states[:, :length])
        imagined = torch.cat((imagined, following.unsqueeze(1)), dim=1)
    assert (three - imagined[:, 2:]).abs().max().item() <= TOL
    assert (three[:, 0] - one[:, 0]).abs().max().item() <= TOL

    with pytest.raises(ValueError, match=r"actions must cover 4 steps \(2 context frames \+ 3 - 1"):
        model.rollout(context, actions[:, :3], states, steps=3)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        model.rollout(context, actions[:, :1], states[:, :1], steps=0)
    with pytest.raises(ValueError, match="action_dim=4"):
        model.predict_next(context, torch.zeros(2, 2, 7), states[:, :2])


def test_encoder_stays_frozen_and_the_predictor_trains():
    model = VJEPA2WorldModel(VJEPA2WorldModelConfig.from_preset("vjepa2-ac-tiny")).train()
    assert not model.encoder.training and model.predictor.training
    video, actions, states = episode()
    features = model.encode_frames(video)
    loss = (model(features[:, :-1], actions[:, :-1], states[:, :-1]).predicted_features - features[:, 1:]).abs().mean()
    loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in model.encoder.parameters())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.predictor.parameters())


def test_save_and_load_as_one_folder(model, tmp_path):
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, VJEPA2WorldModel)
    assert loaded.config.predictor_config.action_dim == 4 and loaded.config.encoder_config.hidden_size == 96
    video, actions, states = episode(seed=4)
    with torch.no_grad():
        context_a, context_b = model.encode_frames(video[:, :1]), loaded.encode_frames(video[:, :1])
        assert (context_a - context_b).abs().max().item() == 0.0
        a = model.rollout(context_a, actions, states, steps=3)
        b = loaded.rollout(context_b, actions, states, steps=3)
    assert (a - b).abs().max().item() <= TOL


def test_config_rejects_a_predictor_that_cannot_read_the_encoder():
    message = r"encoder_config.hidden_size=96 but predictor_config.encoder_hidden_size=1408"
    with pytest.raises(StrictDataclassClassValidationError, match=message):
        VJEPA2WorldModelConfig(
            encoder_config=tiny_config(), predictor_config=VJEPA2WorldModelConfig().predictor_config
        )


def test_from_encoder_keeps_the_pretrained_encoder_weights():
    encoder_model = randomize_(VJEPA2Model(tiny_config()), seed=6)
    world = VJEPA2WorldModel.from_encoder(
        encoder_model, VJEPA2WorldModelConfig.from_preset("vjepa2-ac-tiny").predictor_config
    )
    assert all(torch.equal(p, encoder_model.encoder.state_dict()[k]) for k, p in world.encoder.state_dict().items())


def released_layout_checkpoint(seed: int = 7) -> tuple[dict, VJEPA2Model, dict]:
    """`vjepa2-ac-vitg.pt`'s layout at tiny size: `encoder` and `predictor`, keys under `module.backbone.`."""
    source = randomize_(VJEPA2Model(tiny_config()), seed=seed)
    predictor = reference_state_dict(VJEPA2WorldModelConfig.from_preset("vjepa2-ac-tiny").predictor_config, seed=seed)
    checkpoint = {
        "encoder": meta_checkpoint(source)["target_encoder"],
        "predictor": {f"module.backbone.{key}": value for key, value in predictor.items()},
    }
    return checkpoint, source, predictor


def test_released_checkpoint_layout_converts_into_the_world_model_and_the_predictor_alone():
    checkpoint, source, predictor = released_layout_checkpoint()
    converted = convert_meta_ac_checkpoint(checkpoint)
    world = VJEPA2WorldModel(VJEPA2WorldModelConfig.from_preset("vjepa2-ac-tiny"))
    world.load_state_dict(converted, strict=True)
    encoder_source = source.state_dict()
    encoder_weights = world.encoder.state_dict().items()
    assert all(torch.equal(value, encoder_source[f"encoder.{key}"]) for key, value in encoder_weights)
    assert torch.equal(world.predictor.predictor_proj.weight, predictor["predictor_proj.weight"])

    alone = VJEPA2ACPredictor(world.config.predictor_config)
    alone.load_state_dict({k: v for k, v in converted.items() if k.startswith("predictor.")}, strict=True)
    with pytest.raises(ValueError, match="no 'predictor' entry"):
        convert_meta_ac_checkpoint({"encoder": checkpoint["encoder"]})


def test_conversion_command_writes_a_folder_that_loads(tmp_path):
    checkpoint, _, _ = released_layout_checkpoint()
    torch.save(checkpoint, tmp_path / "vjepa2-ac-tiny.pt")
    spec = importlib.util.spec_from_file_location("convert_ac_checkpoint", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "hub"
    argv = ["--preset", "vjepa2-ac-tiny", "--checkpoint", str(tmp_path / "vjepa2-ac-tiny.pt"), "--out", str(out)]
    script.main(argv)
    loaded = VJEPA2WorldModel.from_pretrained(out)
    expected = convert_meta_ac_checkpoint(checkpoint)
    assert all(torch.equal(value, expected[key]) for key, value in loaded.state_dict().items())
    with pytest.raises(FileExistsError, match="--overwrite"):
        script.main(argv)


def test_paper_preset_pairs_the_vitg_encoder_with_the_paper_predictor():
    config = VJEPA2WorldModelConfig.from_preset("vjepa2-ac-vitg")
    with torch.device("meta"):
        world = VJEPA2WorldModel(config)
        encoder_alone = VJEPA2Model(VJEPA2Model.config_class.from_preset("vjepa2-vitg")).encoder
        predictor_alone = VJEPA2ACPredictor(config.predictor_config)

    def count(module):
        return sum(p.numel() for p in module.parameters())

    assert count(world.encoder) == count(encoder_alone) and count(world.predictor) == count(predictor_alone)
    assert config.predictor_config.encoder_hidden_size == 1408 and config.predictor_config.action_dim == 7
    assert world.tokens_per_frame == (256 // 16) ** 2
