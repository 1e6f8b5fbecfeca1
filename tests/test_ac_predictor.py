"""The action-conditioned predictor of V-JEPA 2-AC against the reference equations, on synthetic weights in the
released checkpoint's layout (facebookresearch/vjepa2 `src/models/ac_predictor.py`, `src/models/utils/modules.py`)."""

import math

import pytest
import torch
import torch.nn.functional as F
from huggingface_hub.errors import StrictDataclassClassValidationError
from transformers import AutoConfig, AutoModel

from vjepa_vlm import VJEPA2ACConfig, VJEPA2ACPredictor
from vjepa_vlm.convert_vjepa2_ac import convert_meta_ac_predictor

torch.set_num_threads(2)
TOL = 1e-5
STEPS = 3


def tiny_config(**overrides) -> VJEPA2ACConfig:
    return VJEPA2ACConfig.from_preset("vjepa2-ac-tiny", **overrides)


def reference_state_dict(config: VJEPA2ACConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under the reference's names and shapes (fused qkv; extrinsics encoder always present, fed
    `action_dim - 1` features, as `VisionTransformerPredictorAC.__init__` builds it)."""
    generator = torch.Generator().manual_seed(seed)
    width, encoder_width = config.hidden_size, config.encoder_hidden_size
    inner = int(width * config.mlp_ratio)
    shapes = {
        "predictor_embed": (width, encoder_width),
        "action_encoder": (width, config.action_dim),
        "state_encoder": (width, config.state_dim),
        "extrinsics_encoder": (width, config.extrinsics_dim),
        "predictor_proj": (encoder_width, width),
    }
    for i in range(config.num_hidden_layers):
        shapes |= {
            f"predictor_blocks.{i}.attn.qkv": (3 * width, width),
            f"predictor_blocks.{i}.attn.proj": (width, width),
            f"predictor_blocks.{i}.mlp.fc1": (inner, width),
            f"predictor_blocks.{i}.mlp.fc2": (width, inner),
        }
    state = {}
    for name, (rows, cols) in shapes.items():
        state[f"{name}.weight"] = torch.randn(rows, cols, generator=generator) / math.sqrt(cols)
        state[f"{name}.bias"] = 0.1 * torch.randn(rows, generator=generator)
    for name in [f"predictor_blocks.{i}.norm{j}" for i in range(config.num_hidden_layers) for j in (1, 2)] + [
        "predictor_norm"
    ]:
        state[f"{name}.weight"] = 1.0 + 0.1 * torch.randn(width, generator=generator)
        state[f"{name}.bias"] = 0.1 * torch.randn(width, generator=generator)
    return state


def rotate(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """The reference's `rotate_queries_or_keys`: pairs (x0, x1), (x2, x3), ... rotated by angles laid out as
    [f_0 .. f_{d/2-1}, f_0 .. f_{d/2-1}] (the layout the released weights were trained with)."""
    d = x.shape[-1]
    omega = 1.0 / 10000 ** (torch.arange(d // 2, dtype=torch.float32) / (d / 2.0))
    angles = pos.float()[:, None] * omega[None, :]
    sin, cos = angles.sin().repeat(1, 2), angles.cos().repeat(1, 2)
    pairs = x.unflatten(-1, (-1, 2))
    turned = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
    return x * cos + turned * sin


def reference_forward(state, config, features, actions, states, extrinsics=None):
    """The reference equations, written out: per step [a, s, (e), patches]; patches get 3D RoPE at (t, h, w),
    conditioning tokens rotate only the time segment at t; block-causal softmax attention; norm + proj of patches."""
    def linear(name, x):
        return x @ state[f"{name}.weight"].T + state[f"{name}.bias"]

    def norm(name, x):
        return F.layer_norm(x, (x.shape[-1],), state[f"{name}.weight"], state[f"{name}.bias"], eps=1e-6)

    batch, steps, patches, _ = features.shape
    side = math.isqrt(patches)
    heads, width = config.num_attention_heads, config.hidden_size
    head_dim = width // heads
    seg = 2 * ((head_dim // 3) // 2)
    cond = [linear("action_encoder", actions), linear("state_encoder", states)]
    if config.use_extrinsics:
        cond.append(linear("extrinsics_encoder", extrinsics))
    k = len(cond)
    x = torch.cat([c[:, :, None] for c in cond] + [linear("predictor_embed", features)], dim=2).flatten(1, 2)

    ids = torch.arange(steps * patches)
    frame, row, col = ids // patches, (ids % patches) // side, ids % side
    time = torch.arange(steps)
    n = steps * (k + patches)
    allowed = torch.zeros(n, n, dtype=torch.bool)
    for t1 in range(steps):
        for t2 in range(t1 + 1):
            allowed[t1 * (k + patches) : (t1 + 1) * (k + patches), t2 * (k + patches) : (t2 + 1) * (k + patches)] = True

    def rotate_patches(q):
        parts = [
            rotate(q[..., :seg], frame), rotate(q[..., seg : 2 * seg], row), rotate(q[..., 2 * seg : 3 * seg], col)
        ]
        return torch.cat(parts + [q[..., 3 * seg :]], dim=-1)

    def rotate_conditioning(q):
        return torch.cat([rotate(q[..., :seg], time), q[..., seg:]], dim=-1)

    for i in range(config.num_hidden_layers):
        prefix = f"predictor_blocks.{i}"
        y = norm(f"{prefix}.norm1", x)
        qkv = linear(f"{prefix}.attn.qkv", y).view(batch, steps, k + patches, 3, heads, head_dim)
        qkv = qkv.permute(3, 0, 4, 1, 2, 5)  # (3, B, H, T, K + HW, d)
        rotated = []
        for which in (0, 1):
            tokens = qkv[which]
            c = rotate_conditioning(tokens[:, :, :, :k].transpose(2, 3)).transpose(2, 3)  # time per conditioning slot
            p = rotate_patches(tokens[:, :, :, k:].flatten(2, 3)).view(batch, heads, steps, patches, head_dim)
            rotated.append(torch.cat([c, p], dim=3).flatten(2, 3))
        q, key, v = rotated[0], rotated[1], qkv[2].flatten(2, 3)
        scores = (q @ key.transpose(-1, -2)) / math.sqrt(head_dim)
        attn = scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ v
        x = x + linear(f"{prefix}.attn.proj", attn.transpose(1, 2).reshape(batch, n, width))
        hidden = F.gelu(linear(f"{prefix}.mlp.fc1", norm(f"{prefix}.norm2", x)))
        x = x + linear(f"{prefix}.mlp.fc2", hidden)
    x = x.view(batch, steps, k + patches, width)[:, :, k:]
    return linear("predictor_proj", norm("predictor_norm", x))


def inputs(config: VJEPA2ACConfig, batch: int = 2, steps: int = STEPS, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(batch, steps, config.tokens_per_frame, config.encoder_hidden_size, generator=generator)
    actions = torch.randn(batch, steps, config.action_dim, generator=generator)
    states = torch.randn(batch, steps, config.state_dim, generator=generator)
    extrinsics = None
    if config.use_extrinsics:
        extrinsics = torch.randn(batch, steps, config.extrinsics_dim, generator=generator)
    return features, actions, states, extrinsics


def converted_model(config: VJEPA2ACConfig, state: dict, attn_implementation: str = "sdpa") -> VJEPA2ACPredictor:
    model = VJEPA2ACPredictor(config).eval()
    model.load_state_dict(convert_meta_ac_predictor(state, use_extrinsics=config.use_extrinsics), strict=True)
    model.set_attn_implementation(attn_implementation)
    return model


@pytest.mark.parametrize("use_extrinsics", [False, True])
@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
@torch.no_grad()
def test_forward_matches_the_reference_equations(use_extrinsics, attn_implementation):
    config = tiny_config(use_extrinsics=use_extrinsics)
    state = reference_state_dict(config)
    model = converted_model(config, state, attn_implementation)
    args = inputs(config)
    got = model(*args).predicted_features
    assert got.shape == (2, STEPS, 16, 96)
    assert (got - reference_forward(state, config, *args)).abs().max().item() <= TOL


@torch.no_grad()
def test_a_step_sees_only_its_own_and_earlier_steps():
    config = tiny_config()
    model = converted_model(config, reference_state_dict(config))
    features, actions, states, _ = inputs(config, steps=4)
    base = model(features, actions, states).predicted_features
    for changed in range(1, 4):
        edited = [tensor.clone() for tensor in (features, actions, states)]
        for tensor in edited:
            tensor[:, changed:] += 1.0
        out = model(*edited).predicted_features
        assert (out[:, :changed] - base[:, :changed]).abs().max().item() <= 1e-6
        assert (out[:, changed:] - base[:, changed:]).abs().min().item() > 0.0
    # Within a step every token sees the step's action: changing only action t changes the prediction at t.
    edited = actions.clone()
    edited[:, 1] += 1.0
    out = model(features, edited, states).predicted_features
    assert (out[:, 0] - base[:, 0]).abs().max().item() <= 1e-6
    assert (out[:, 1] - base[:, 1]).abs().max().item() > 1e-3


def test_every_parameter_gets_a_gradient_and_nothing_is_nan():
    config = tiny_config(use_extrinsics=True)
    model = VJEPA2ACPredictor(config).train()
    out = model(*inputs(config)).predicted_features
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_wrong_inputs_are_clear_errors():
    config = tiny_config()
    model = VJEPA2ACPredictor(config)
    features, actions, states, _ = inputs(config)
    with pytest.raises(ValueError, match=r"actions has 7 features per step but VJEPA2ACConfig.action_dim=4"):
        model(features, torch.zeros(2, STEPS, 7), states)
    with pytest.raises(ValueError, match=r"states has 3 features per step but VJEPA2ACConfig.state_dim=4"):
        model(features, actions, torch.zeros(2, STEPS, 3))
    with pytest.raises(ValueError, match=r"actions must be \(B=2, T=3, 4\)"):
        model(features, actions[:, :2], states)
    with pytest.raises(ValueError, match=r"features must be \(B, T, 16, 96\)"):
        model(features[..., :48], actions, states)
    with pytest.raises(ValueError, match="use_extrinsics=False"):
        model(features, actions, states, torch.zeros(2, STEPS, 6))
    with pytest.raises(ValueError, match="extrinsics is required"):
        VJEPA2ACPredictor(tiny_config(use_extrinsics=True))(features, actions, states)
    # Refused before any forward: without flash-attn for want of the package, with it for want of a mask argument.
    with pytest.raises((ImportError, ValueError), match="flash"):
        VJEPA2ACPredictor(tiny_config(attn_implementation="flash_attention_2"))


def test_config_rejects_inconsistent_fields():
    with pytest.raises(StrictDataclassClassValidationError, match="action_dim must be positive"):
        tiny_config(action_dim=0)
    with pytest.raises(StrictDataclassClassValidationError, match="multiple of num_attention_heads"):
        tiny_config(hidden_size=100)
    with pytest.raises(ValueError, match="unknown V-JEPA 2-AC preset"):
        VJEPA2ACConfig.from_preset("vjepa2-ac-huge")


def test_save_and_load_through_the_auto_classes(tmp_path):
    config = tiny_config()
    model = converted_model(config, reference_state_dict(config, seed=3))
    model.save_pretrained(tmp_path)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), VJEPA2ACConfig)
    loaded = AutoModel.from_pretrained(tmp_path, attn_implementation="eager").eval()
    assert isinstance(loaded, VJEPA2ACPredictor)
    args = inputs(config)
    with torch.no_grad():
        assert (loaded(*args).predicted_features - model(*args).predicted_features).abs().max().item() <= TOL


def reference_parameter_count(encoder_width, width, depth, action_dim, mlp_ratio=4.0):
    """`VisionTransformerPredictorAC`'s parameter count: four input linears (extrinsics reads action_dim - 1),
    `depth` blocks (2 LayerNorms, fused qkv with bias, proj, 2-layer MLP), final norm, projection back."""
    inner = int(width * mlp_ratio)
    inputs_ = (encoder_width + 1) * width + 2 * (action_dim + 1) * width + action_dim * width
    block = 4 * width + (width + 1) * 3 * width + (width + 1) * width + (width + 1) * inner + (inner + 1) * width
    return inputs_ + depth * block + 2 * width + (width + 1) * encoder_width


def test_paper_preset_has_the_reference_architecture_parameter_count():
    config = VJEPA2ACConfig.from_preset("vjepa2-ac-vitg")
    with torch.device("meta"):
        model = VJEPA2ACPredictor(config)
    count = sum(p.numel() for p in model.parameters())
    extrinsics_encoder = (6 + 1) * 1024  # built by the reference even without extrinsics; here only when used
    assert count == reference_parameter_count(1408, 1024, 24, 7) - extrinsics_encoder
    assert 300e6 < count < 310e6  # "~300M" (section 3.1)
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (24, 1024, 16)


def test_conversion_strips_wrappers_splits_qkv_and_rejects_unknown_keys():
    config = tiny_config()
    state = reference_state_dict(config)
    wrapped = {f"module.backbone.{key}": value for key, value in state.items()}
    converted = convert_meta_ac_predictor(wrapped)
    assert set(converted) == set(VJEPA2ACPredictor(config).state_dict())  # extrinsics dropped: unused, untrained
    qkv = state["predictor_blocks.1.attn.qkv.weight"]
    assert torch.equal(converted["predictor.predictor_blocks.1.attention.key.weight"], qkv[96:192])
    assert torch.equal(converted["predictor.action_encoder.bias"], state["action_encoder.bias"])
    with_extrinsics = convert_meta_ac_predictor(wrapped, use_extrinsics=True)
    assert torch.equal(with_extrinsics["predictor.extrinsics_encoder.weight"], state["extrinsics_encoder.weight"])

    with pytest.raises(ValueError, match=r"unexpected keys in the checkpoint's 'predictor' state dict: \['module.gai"):
        convert_meta_ac_predictor({**wrapped, "module.gain": torch.zeros(1)})
    with pytest.raises(ValueError, match="mask-denoising predictor"):
        convert_meta_ac_predictor({**wrapped, "mask_tokens.0": torch.zeros(1, 1, 96)})
    without = {key: value for key, value in wrapped.items() if "extrinsics" not in key}
    with pytest.raises(ValueError, match="no extrinsics_encoder"):
        convert_meta_ac_predictor(without, use_extrinsics=True)


def test_gradient_checkpointing_gives_the_same_gradients():
    config = tiny_config()
    state = reference_state_dict(config, seed=4)
    grads = []
    for checkpointing in (False, True):
        model = converted_model(config, state).train()
        if checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            assert all(block.gradient_checkpointing for block in model.predictor.predictor_blocks)
        model(*inputs(config)).predicted_features.square().mean().backward()
        grads.append({name: p.grad for name, p in model.named_parameters()})
    assert all((grads[0][name] - grads[1][name]).abs().max().item() <= 1e-6 for name in grads[0])


def test_initialization_follows_the_reference():
    torch.manual_seed(0)
    model = VJEPA2ACPredictor(tiny_config(num_hidden_layers=4))
    blocks = model.predictor.predictor_blocks
    # `_init_weights` + `_rescale_blocks`: trunc-normal std 0.02, block l's attn.proj and mlp.fc2 divided by sqrt(2 l).
    assert abs(blocks[0].mlp.fc1.weight.std().item() - 0.02) < 0.002
    assert abs(model.predictor.action_encoder.weight.std().item() - 0.02) < 0.01
    for index, block in enumerate(blocks, start=1):
        for projection in (block.attention.proj, block.mlp.fc2):
            assert abs(projection.weight.std().item() - 0.02 / math.sqrt(2 * index)) < 0.1 * 0.02 / math.sqrt(2 * index)
            assert torch.equal(projection.bias, torch.zeros_like(projection.bias))
    norms = [module for module in model.modules() if isinstance(module, torch.nn.LayerNorm)]
    assert len(norms) == 2 * 4 + 1
    assert all(torch.equal(n.weight, torch.ones_like(n.weight)) and not n.bias.any() for n in norms)
