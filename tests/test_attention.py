"""The one vision attention dispatch: eager (the reference) equals sdpa in every module that attends, the setting
reaches the encoder alone and inside the VLM, unsupported settings fail clearly, and the VLM projector's pooler
computes what its `nn.MultiheadAttention` did, from the same state dict."""

import pytest
import torch
from torch import nn
from transformers.activations import ACT2FN
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import is_flash_attn_2_available
from vjepa2_oracle import random_clip, random_split, randomize_, tiny_config

from vjepa_vlm.vision import attention
from vjepa_vlm import VJEPA2Model, VJEPA2VLMConfig, VJEPA2VLMForConditionalGeneration
from vjepa_vlm.modeling_vjepa2_probe import VJEPA2ForVideoClassification
from vjepa_vlm.projector_vjepa2_vlm import build_projector
from vjepa_vlm.vision.encoder import VJEPA2VisionEncoder

TOL = {"atol": 1e-5, "rtol": 1e-4}


@pytest.fixture
def eager_calls(monkeypatch):
    """Counts calls of the eager reference path (the dispatch looks the function up at every call)."""
    calls = []
    original = attention.eager_attention_forward

    def counting(*args, **kwargs):
        calls.append(args[1].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(attention, "eager_attention_forward", counting)
    return calls


@pytest.fixture
def sdpa_calls(monkeypatch):
    calls = []
    original = ALL_ATTENTION_FUNCTIONS["sdpa"]

    def counting(*args, **kwargs):
        calls.append(args[1].shape)
        return original(*args, **kwargs)

    monkeypatch.setitem(ALL_ATTENTION_FUNCTIONS._global_mapping, "sdpa", counting)
    return calls


def tiny_model(implementation: str) -> VJEPA2Model:
    torch.manual_seed(0)
    return randomize_(VJEPA2Model(tiny_config(attn_implementation=implementation))).eval()


@torch.no_grad()
def test_encoder_and_predictor_eager_equal_sdpa_with_and_without_context_indices(eager_calls, sdpa_calls):
    eager, sdpa = tiny_model("eager"), tiny_model("sdpa")
    assert (eager.config._attn_implementation, sdpa.config._attn_implementation) == ("eager", "sdpa")
    clip = random_clip()
    context, target = random_split(2, 32, num_context=12, num_target=8, seed=1)
    outputs = []
    for model in (eager, sdpa):
        full = model.encoder(clip, output_layers=[0, -1])
        masked = model.encoder(clip, context_indices=context)
        predicted = model.predictor(masked.last_hidden_state, context, target, masked.grid_size)
        joint = model(clip, context_mask=context, target_mask=target).predictor_output.last_hidden_state
        outputs.append((full.last_hidden_state, *full.intermediate_hidden_states, masked.last_hidden_state, predicted, joint))
    for eager_out, sdpa_out in zip(*outputs):
        torch.testing.assert_close(eager_out, sdpa_out, **TOL)
    # Each model went through its own path only: 4 encoder blocks x 2 encodings + 2 predictor blocks, + the joint run.
    assert len(eager_calls) == len(sdpa_calls) == 4 * 3 + 2 * 2


@torch.no_grad()
def test_probe_pooler_eager_equals_sdpa(eager_calls):
    torch.manual_seed(0)
    eager = randomize_(VJEPA2ForVideoClassification(tiny_config(num_labels=5, attn_implementation="eager"))).eval()
    sdpa = VJEPA2ForVideoClassification(tiny_config(num_labels=5)).eval()
    sdpa.load_state_dict(eager.state_dict())
    tokens = torch.randn(2, 40, 96)
    torch.testing.assert_close(eager.pooler(tokens), sdpa.pooler(tokens), **TOL)
    assert len(eager_calls) == eager.config.num_pooler_layers  # self-attention blocks; one query takes the token path
    torch.testing.assert_close(eager(random_clip()).logits, sdpa(random_clip()).logits, **TOL)


@torch.no_grad()
def test_vlm_projector_pooler_eager_equals_sdpa(eager_calls):
    config = VJEPA2VLMConfig.from_preset("vjepa2-tiny-llama")
    torch.manual_seed(0)
    projector = randomize_(build_projector(config)).eval()
    features = torch.randn(2, 32, 96)
    sdpa_out = projector(features, (2, 4, 4))
    assert not eager_calls
    config.vision_config._attn_implementation = "eager"
    torch.testing.assert_close(projector(features, (2, 4, 4)), sdpa_out, **TOL)
    assert len(eager_calls) == 1


@torch.no_grad()
def test_set_attn_implementation_switches_a_built_model(eager_calls):
    model = tiny_model("sdpa")
    model.set_attn_implementation("eager")
    model.encoder(random_clip(batch=1))
    assert len(eager_calls) == 4


@torch.no_grad()
def test_a_module_built_alone_defaults_to_sdpa(eager_calls, sdpa_calls):
    config = tiny_config()
    assert config._attn_implementation is None  # never seen by a PreTrainedModel
    VJEPA2VisionEncoder(config).eval()(random_clip(batch=1))
    assert len(sdpa_calls) == 4 and not eager_calls


def test_from_pretrained_attn_implementation_reaches_the_encoder(tmp_path, eager_calls):
    tiny_model("sdpa").save_pretrained(tmp_path)
    model = VJEPA2Model.from_pretrained(tmp_path, attn_implementation="eager").eval()
    assert model.config._attn_implementation == "eager"
    with torch.no_grad():
        model.encoder(random_clip(batch=1))
    assert len(eager_calls) == 4


def test_vlm_attn_implementation_reaches_the_vision_tower_and_projector(tmp_path, eager_calls):
    torch.manual_seed(0)
    VJEPA2VLMForConditionalGeneration(VJEPA2VLMConfig.from_preset("vjepa2-tiny-llama")).save_pretrained(tmp_path)
    model = VJEPA2VLMForConditionalGeneration.from_pretrained(tmp_path, attn_implementation="eager").eval()
    vision_config = model.config.vision_config
    assert vision_config._attn_implementation == "eager"
    assert model.model.vision_tower.layer[0].attention.config is vision_config
    with torch.no_grad():
        model.get_video_features(random_clip(batch=1))
    assert len(eager_calls) == 4 + 1  # encoder blocks, then the projector's cross-attention
    # The config route: the VLM config's setting lands on the vision sub-config, hence on the encoder's attention.
    config = VJEPA2VLMConfig.from_preset("vjepa2-tiny-qwen2", attn_implementation="eager")
    assert VJEPA2VLMForConditionalGeneration(config).model.vision_tower.config._attn_implementation == "eager"


@pytest.mark.parametrize("implementation", ["flex_attention", "sdpa_typo"])
def test_unsupported_implementation_is_a_clear_error(implementation):
    with pytest.raises(ValueError, match=f"attn_implementation='{implementation}' is not supported by the V-JEPA 2"):
        VJEPA2Model(tiny_config(attn_implementation=implementation))
    config = tiny_config()
    with pytest.raises(ValueError, match="not supported by the V-JEPA 2 vision modules"):
        VJEPA2VisionEncoder(tiny_config(attn_implementation=implementation))
    # Changed after building: the dispatch checks again at the call.
    encoder = VJEPA2VisionEncoder(config)
    config._attn_implementation = implementation
    with pytest.raises(ValueError, match="expected one of \\('eager', 'sdpa', 'flash_attention_2'\\)"):
        encoder(random_clip(batch=1))


def test_vlm_with_an_implementation_the_vision_tower_cannot_run_names_the_way_out():
    config = VJEPA2VLMConfig.from_preset("vjepa2-tiny-qwen2", attn_implementation={"vision_config": "flex_attention"})
    with pytest.raises(ValueError, match="'vision_config': 'sdpa'"):
        VJEPA2VLMForConditionalGeneration(config)


@pytest.mark.skipif(is_flash_attn_2_available(), reason="flash-attn is installed here")
def test_flash_attention_without_flash_attn_is_a_clear_error_not_a_hub_kernel():
    with pytest.raises(ImportError, match="needs the flash-attn package"):
        VJEPA2Model(tiny_config(attn_implementation="flash_attention_2"))
    with pytest.raises(ImportError, match="needs the flash-attn package"):
        VJEPA2VisionEncoder(tiny_config(attn_implementation="flash_attention_2"))
    config = VJEPA2VLMConfig.from_preset("vjepa2-tiny-qwen2", attn_implementation="flash_attention_2")
    with pytest.raises(ImportError, match="needs the flash-attn package"):
        VJEPA2VLMForConditionalGeneration(config)


class MultiheadAttentionProjector(nn.Module):
    """The VLM attentive pooler as it was written with `nn.MultiheadAttention`: the oracle of the current one."""

    def __init__(self, config: VJEPA2VLMConfig):
        super().__init__()
        vision = config.vision_config
        dim = vision.hidden_size * len(config.feature_layers)
        self.num_queries = config.tokens_per_tubelet
        self.queries = nn.Parameter(torch.zeros(1, self.num_queries, dim))
        self.norm_keys = nn.LayerNorm(dim, eps=vision.layer_norm_eps)
        self.cross_attention = nn.MultiheadAttention(dim, vision.num_attention_heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim, eps=vision.layer_norm_eps)
        hidden = int(dim * vision.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), ACT2FN[config.projector_hidden_act], nn.Linear(hidden, dim))
        self.to_text = nn.Linear(dim, config.text_config.hidden_size)

    def forward(self, features: torch.Tensor, grid_size: tuple[int, int, int]) -> torch.Tensor:
        num_clips, _, dim = features.shape
        t, h, w = grid_size
        tubelets = features.reshape(num_clips * t, h * w, dim)
        keys = self.norm_keys(tubelets)
        queries = self.queries.expand(tubelets.shape[0], -1, -1)
        pooled, _ = self.cross_attention(queries, keys, keys, need_weights=False)
        pooled = pooled + self.mlp(self.norm_mlp(pooled))
        return self.to_text(pooled).reshape(num_clips, t * self.num_queries, -1)


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_projector_pooler_equals_multihead_attention_on_the_same_state_dict(implementation):
    config = VJEPA2VLMConfig.from_preset("vjepa2-tiny-llama", vision_feature_layer=[0, -1])
    config.vision_config._attn_implementation = implementation
    torch.manual_seed(0)
    oracle = randomize_(MultiheadAttentionProjector(config))
    projector = build_projector(config)
    # Same keys, shapes and parameter order: checkpoints and optimizer states written before load unchanged.
    assert [(k, v.shape) for k, v in projector.state_dict().items()] == [
        (k, v.shape) for k, v in oracle.state_dict().items()
    ]
    projector.load_state_dict(oracle.state_dict(), strict=True)
    features = torch.randn(3, 2 * 16, 2 * 96, requires_grad=True)
    expected = oracle.train()(features, (2, 4, 4))
    out = projector.train()(features, (2, 4, 4))
    torch.testing.assert_close(out, expected, **TOL)
    cotangent = torch.randn_like(out)
    grads = torch.autograd.grad(out, [features, *projector.parameters()], cotangent)
    expected_grads = torch.autograd.grad(expected, [features, *oracle.parameters()], cotangent)
    for grad, expected_grad in zip(grads, expected_grads):
        # Gradients sum over every token: tolerance relative to each one's scale.
        torch.testing.assert_close(grad, expected_grad, atol=1e-5 * expected_grad.abs().max().item(), rtol=1e-3)
