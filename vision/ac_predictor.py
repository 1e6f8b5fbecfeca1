"""The action-conditioned predictor of V-JEPA 2-AC (paper section 3.1, appendix B.1).

Reference facts, from facebookresearch/vjepa2 `src/models/ac_predictor.py` (`VisionTransformerPredictorAC`) and
`src/models/utils/modules.py` (`ACBlock`, `ACRoPEAttention`, `build_action_block_causal_attention_mask`,
`rotate_queries_or_keys`):
- features are mapped by `predictor_embed`, actions by `action_encoder`, states by `state_encoder` (and extrinsics by
  `extrinsics_encoder`), all linear with bias, to the predictor width;
- each time step is laid out as `[action, state, (extrinsics,) patch_0 .. patch_{HW-1}]` and steps follow each other;
- patch tokens get 3D RoPE at their (step, row, column); the conditioning tokens rotate only the time segment of each
  head (at their step) and pass the rest through, which equals 3D RoPE at (step, 0, 0) since angle 0 is the identity;
- the RoPE angle layout is the reference's (`vjepa_vlm.vision.rope`), which the released weights were trained with;
- attention is block-causal: a token of step t sees every token of steps <= t;
- blocks are the encoder's pre-norm blocks (`predictor_blocks`), then `predictor_norm` and `predictor_proj` back to the
  encoder width, applied to the patch tokens only.

`residual_prediction` (not in the reference, off by default) adds frame t's input features to the output at step t
and marks `predictor_proj` to start at zero (`starts_at_zero`, read by the models' weight init).
"""

import torch
from torch import nn

from vjepa_vlm.vision.block import build_blocks
from vjepa_vlm.vision.rope import rope_tables, token_positions


def block_causal_mask(steps: int, tokens_per_step: int, device: torch.device | None = None) -> torch.Tensor:
    """Boolean `(N, N)` mask, `N = steps * tokens_per_step`, True where a query may attend: keys of its own step or
    of earlier ones."""
    step = torch.arange(steps, device=device).repeat_interleave(tokens_per_step)
    return step.unsqueeze(1) >= step.unsqueeze(0)


def action_conditioned_positions(
    steps: int, grid_side: int, conditioning_tokens: int, device: torch.device | None = None
) -> torch.Tensor:
    """`(1, steps * (conditioning_tokens + grid_side**2), 3)` RoPE coordinates in the predictor's token order:
    conditioning tokens at (step, 0, 0), patches at (step, row, column)."""
    patches = token_positions((steps, grid_side, grid_side), device=device).view(steps, grid_side * grid_side, 3)
    conditioning = torch.zeros(steps, conditioning_tokens, 3, dtype=patches.dtype, device=device)
    conditioning[..., 0] = torch.arange(steps, device=device).unsqueeze(1)
    return torch.cat((conditioning, patches), dim=1).flatten(0, 1).unsqueeze(0)


class ActionConditionedPredictor(nn.Module):
    """Predicts the encoder features of frame t + 1 from frames <= t and the actions and states of steps <= t.

    Args:
        config: a `VJEPA2ACConfig`; its `_attn_implementation` ("eager" or "sdpa") is read at every forward.
    """

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.predictor_embed = nn.Linear(config.encoder_hidden_size, config.hidden_size)
        self.action_encoder = nn.Linear(config.action_dim, config.hidden_size)
        self.state_encoder = nn.Linear(config.state_dim, config.hidden_size)
        # The reference builds this layer even when unused; its weights never train then, so it exists only when used.
        self.extrinsics_encoder = (
            nn.Linear(config.extrinsics_dim, config.hidden_size) if config.use_extrinsics else None
        )
        self.predictor_blocks = build_blocks(
            config,
            config.num_hidden_layers,
            config.hidden_size,
            config.num_attention_heads,
            config.mlp_ratio,
        )
        self.predictor_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.predictor_proj = nn.Linear(config.hidden_size, config.encoder_hidden_size)
        if config.residual_prediction:
            # Zero output at init: the prediction starts as the input frame, the "nothing moves" baseline.
            self.predictor_proj.starts_at_zero = True

    def _check(self, name: str, tensor: torch.Tensor | None, batch: int, steps: int, width: int, field: str) -> None:
        if tensor is None:
            raise ValueError(f"{name} is required: the config has use_extrinsics=True")
        if tensor.ndim != 3 or tuple(tensor.shape[:2]) != (batch, steps):
            raise ValueError(f"{name} must be (B={batch}, T={steps}, {width}), got {tuple(tensor.shape)}")
        if tensor.shape[2] != width:
            raise ValueError(
                f"{name} has {tensor.shape[2]} features per step but VJEPA2ACConfig.{field}={width}; "
                f"give (B, T, {width}) {name} or a config whose {field} matches the data"
            )

    def forward(
        self,
        features: torch.Tensor,
        actions: torch.Tensor,
        states: torch.Tensor,
        extrinsics: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict the next frame's features at every step.

        Args:
            features: `(B, T, H*W, D_encoder)` encoder features of frames 0 .. T-1 (layer-normed in V-JEPA 2-AC).
            actions: `(B, T, action_dim)`; action t moves the robot from frame t to frame t + 1.
            states: `(B, T, state_dim)` end-effector states at frames 0 .. T-1.
            extrinsics: `(B, T, extrinsics_dim)` camera extrinsics, only with `use_extrinsics`.

        Returns:
            `(B, T, H*W, D_encoder)`: at step t, the predicted features of frame t + 1.
        """
        cfg = self.config
        expected = (cfg.tokens_per_frame, cfg.encoder_hidden_size)
        if features.ndim != 4 or tuple(features.shape[2:]) != expected:
            raise ValueError(
                f"features must be (B, T, {expected[0]}, {expected[1]}) (patches of a {cfg.crop_size}px frame at "
                f"patch_size={cfg.patch_size}, encoder width), got {tuple(features.shape)}"
            )
        batch, steps = features.shape[:2]
        self._check("actions", actions, batch, steps, cfg.action_dim, "action_dim")
        self._check("states", states, batch, steps, cfg.state_dim, "state_dim")
        if cfg.use_extrinsics:
            self._check("extrinsics", extrinsics, batch, steps, cfg.extrinsics_dim, "extrinsics_dim")
        elif extrinsics is not None:
            raise ValueError("extrinsics were given but the config has use_extrinsics=False")

        dtype = self.predictor_embed.weight.dtype
        conditioning = [self.action_encoder(actions.to(dtype)), self.state_encoder(states.to(dtype))]
        if cfg.use_extrinsics:
            conditioning.append(self.extrinsics_encoder(extrinsics.to(dtype)))
        tokens = torch.cat(
            [token.unsqueeze(2) for token in conditioning] + [self.predictor_embed(features.to(dtype))], dim=2
        )  # (B, T, K + H*W, D)
        per_step = tokens.shape[2]
        hidden_states = tokens.flatten(1, 2)

        device = hidden_states.device
        positions = action_conditioned_positions(steps, cfg.grid_side, cfg.conditioning_tokens, device)
        rope = rope_tables(positions, self.head_dim, hidden_states.dtype)
        mask = block_causal_mask(steps, per_step, device)
        for block in self.predictor_blocks:
            hidden_states = block(hidden_states, rope.cos, rope.signed_sin, mask)

        patches = hidden_states.view(batch, steps, per_step, -1)[:, :, cfg.conditioning_tokens :]
        predicted = self.predictor_proj(self.predictor_norm(patches))
        return predicted + features.to(dtype) if cfg.residual_prediction else predicted
