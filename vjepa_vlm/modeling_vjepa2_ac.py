"""V-JEPA 2-AC as Hugging Face models: the action-conditioned predictor alone, and the world model that composes it
with a frozen V-JEPA 2 encoder (paper section 3, appendix B).

Both hold the predictor under `predictor.` with the reference's module names (`predictor_embed`, `action_encoder`,
`state_encoder`, `extrinsics_encoder`, `predictor_blocks.{i}`, `predictor_norm`, `predictor_proj`), and the world model
holds the encoder under `encoder.` with `VJEPA2Model`'s names, so one converted checkpoint loads into either.

How the world model encodes and predicts follows the reference's training and planning code (facebookresearch/vjepa2
`app/vjepa_droid/train.py`: `forward_target`, `forward_predictions`, `_step_predictor`, `loss_fn`;
`notebooks/utils/world_model_wrapper.py`: `WorldModel.encode`, `step_predictor`): every frame is encoded alone,
repeated into one tubelet, and its features are layer-normed without affine parameters (`normalize_reps: true`);
predictor outputs are layer-normed the same way; rollouts feed each prediction back as the next frame's features.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from vjepa_vlm.configuration_vjepa2_ac import VJEPA2ACConfig, VJEPA2WorldModelConfig
from vjepa_vlm.modeling_vjepa2 import VJEPA2Model, init_vjepa2_projection
from vjepa_vlm.vision.ac_predictor import ActionConditionedPredictor
from vjepa_vlm.vision.attention import check_attn_implementation
from vjepa_vlm.vision.encoder import VJEPA2VisionEncoder
from vjepa_vlm.vision.planner import CEMConfig, PlanResult, cem_plan


def normalize_features(features: torch.Tensor) -> torch.Tensor:
    """Layer norm over the feature dim without affine parameters: the space V-JEPA 2-AC predicts and plans in."""
    return F.layer_norm(features, (features.shape[-1],))


@dataclass
class VJEPA2ACOutput(ModelOutput):
    """Output of [`VJEPA2ACPredictor`] and [`VJEPA2WorldModel`].

    Args:
        predicted_features: `(B, T, H*W, D_encoder)`; at step t, the predicted features of frame t + 1 (layer-normed
            by the world model, raw from the predictor alone).
    """

    predicted_features: torch.Tensor | None = None


class VJEPA2ACPreTrainedModel(PreTrainedModel):
    """Capabilities and weight init shared by the V-JEPA 2-AC models (the reference's init: truncated normal, zero
    bias, residual projections of block l scaled by 1 / sqrt(2 l); with `residual_prediction`, `predictor_proj` at
    zero).

    Args:
        config: a [`VJEPA2ACConfig`] or [`VJEPA2WorldModelConfig`].
    """

    base_model_prefix = "vjepa2_ac"
    input_modalities = "video"
    supports_gradient_checkpointing = True
    _no_split_modules = ["VJEPA2Block"]
    _supports_sdpa = True
    # The block-causal mask needs an attention pattern, which the flash path cannot take.
    _supports_flash_attn = False

    def _check_and_adjust_attn_implementation(
        self, attn_implementation: str | None, is_init_check: bool = False, allow_all_kernels: bool = False
    ) -> str:
        check_attn_implementation(attn_implementation)
        return super()._check_and_adjust_attn_implementation(attn_implementation, is_init_check, allow_all_kernels)

    def _initializer_range(self) -> float:
        return self.config.initializer_range

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if getattr(module, "starts_at_zero", False):
            init.zeros_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, (nn.Linear, nn.Conv3d)):
            init_vjepa2_projection(module, self._initializer_range())


class VJEPA2ACPredictor(VJEPA2ACPreTrainedModel):
    """The action-conditioned predictor of V-JEPA 2-AC, alone (see `vjepa_vlm.vision.ac_predictor`).

    Args:
        config: a [`VJEPA2ACConfig`].
    """

    config: VJEPA2ACConfig
    config_class = VJEPA2ACConfig
    main_input_name = "features"

    def __init__(self, config: VJEPA2ACConfig):
        super().__init__(config)
        self.predictor = ActionConditionedPredictor(config)
        self.post_init()

    def forward(
        self,
        features: torch.Tensor,
        actions: torch.Tensor,
        states: torch.Tensor,
        extrinsics: torch.Tensor | None = None,
        **kwargs,
    ) -> VJEPA2ACOutput:
        """Next-frame features at every step; arguments as `ActionConditionedPredictor.forward`."""
        if kwargs:
            raise TypeError(f"VJEPA2ACPredictor.forward got unsupported arguments {sorted(kwargs)}")
        return VJEPA2ACOutput(predicted_features=self.predictor(features, actions, states, extrinsics))


class VJEPA2WorldModel(VJEPA2ACPreTrainedModel):
    """V-JEPA 2-AC world model: a frozen V-JEPA 2 encoder and an action-conditioned predictor, saved as one folder.

    `encode_frames` maps frames to features, `forward` / `predict_next` predict with teacher forcing, `rollout`
    imagines several steps ahead; the encoder never trains (no gradients, kept in eval mode).

    Args:
        config: a [`VJEPA2WorldModelConfig`].
    """

    config: VJEPA2WorldModelConfig
    config_class = VJEPA2WorldModelConfig
    main_input_name = "features"

    def __init__(self, config: VJEPA2WorldModelConfig):
        super().__init__(config)
        self.encoder = VJEPA2VisionEncoder(config.encoder_config)
        self.predictor = ActionConditionedPredictor(config.predictor_config)
        self.post_init()
        self.encoder.requires_grad_(False)
        self.encoder.eval()

    @classmethod
    def from_encoder(cls, encoder_model: VJEPA2Model, predictor_config: VJEPA2ACConfig) -> "VJEPA2WorldModel":
        """A world model around a (pretrained) `VJEPA2Model`'s encoder, with a freshly initialized predictor."""
        config = VJEPA2WorldModelConfig(encoder_config=encoder_model.config, predictor_config=predictor_config)
        model = cls(config)
        model.encoder.load_state_dict(encoder_model.encoder.state_dict(), strict=True)
        return model

    def _initializer_range(self) -> float:
        return self.config.predictor_config.initializer_range

    def train(self, mode: bool = True) -> "VJEPA2WorldModel":
        super().train(mode)
        self.encoder.eval()  # frozen: stochastic depth or dropout of the encoder never applies
        return self

    @property
    def tokens_per_frame(self) -> int:
        return self.config.predictor_config.tokens_per_frame

    @torch.no_grad()
    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Encode every frame alone and layer-norm its features.

        Args:
            frames: `(B, T, C, H, W)` normalized frames at the predictor's `crop_size`.

        Returns:
            `(B, T, H/patch * W/patch, D)` features; each frame is repeated into one tubelet, as the reference does.
        """
        size = self.config.predictor_config.crop_size
        if frames.ndim != 5 or tuple(frames.shape[-2:]) != (size, size):
            raise ValueError(
                f"frames must be (B, T, C, {size}, {size}) (the world model's crop_size), got {tuple(frames.shape)}"
            )
        batch, steps = frames.shape[:2]
        features = self.encoder(frames.flatten(0, 1)).last_hidden_state
        return normalize_features(features.view(batch, steps, *features.shape[1:]))

    def forward(
        self,
        features: torch.Tensor,
        actions: torch.Tensor,
        states: torch.Tensor,
        extrinsics: torch.Tensor | None = None,
        **kwargs,
    ) -> VJEPA2ACOutput:
        """Teacher forcing: layer-normed predictions of frames 1 .. T from the features of frames 0 .. T-1.

        Args:
            features: `(B, T, H*W, D)` from `encode_frames`.
            actions: `(B, T, action_dim)`; action t leads from frame t to frame t + 1.
            states: `(B, T, state_dim)` at frames 0 .. T-1.
            extrinsics: `(B, T, extrinsics_dim)`, only with `use_extrinsics`.
        """
        if kwargs:
            raise TypeError(f"VJEPA2WorldModel.forward got unsupported arguments {sorted(kwargs)}")
        predicted = self.predictor(features, actions, states, extrinsics)
        return VJEPA2ACOutput(predicted_features=normalize_features(predicted))

    def predict_next(
        self,
        features: torch.Tensor,
        actions: torch.Tensor,
        states: torch.Tensor,
        extrinsics: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`(B, H*W, D)` layer-normed features of frame T, after the T given frames and their actions and states."""
        return self(features, actions, states, extrinsics).predicted_features[:, -1]

    def rollout(
        self,
        context_features: torch.Tensor,
        actions: torch.Tensor,
        states: torch.Tensor,
        steps: int,
        extrinsics: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Imagine `steps` frames autoregressively: each prediction becomes the next step's frame features.

        Args:
            context_features: `(B, C, H*W, D)` features of the `C` observed frames.
            actions: `(B, C + steps - 1, action_dim)`: the actions taken at the observed and at the imagined frames.
            states: `(B, C + steps - 1, state_dim)`: the states at those frames (observed, or supplied by the caller
                for imagined frames, e.g. integrated from the actions as the reference planner does).
            steps: frames to imagine (>= 1).
            extrinsics: `(B, C + steps - 1, extrinsics_dim)`, only with `use_extrinsics`.

        Returns:
            `(B, steps, H*W, D)` predicted features of frames C .. C + steps - 1.
        """
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if context_features.ndim != 4:
            raise ValueError(f"context_features must be (B, C, H*W, D), got {tuple(context_features.shape)}")
        needed = context_features.shape[1] + steps - 1
        for name, tensor in (("actions", actions), ("states", states), ("extrinsics", extrinsics)):
            if tensor is not None and (tensor.ndim != 3 or tensor.shape[1] != needed):
                raise ValueError(
                    f"{name} must cover {needed} steps ({context_features.shape[1]} context frames + {steps} - 1 "
                    f"imagined ones) as (B, {needed}, dim), got {tuple(tensor.shape)}"
                )
        features = context_features
        for _ in range(steps):
            length = features.shape[1]
            upto = None if extrinsics is None else extrinsics[:, :length]
            following = self.predict_next(features, actions[:, :length], states[:, :length], upto)
            features = torch.cat((features, following.unsqueeze(1)), dim=1)
        return features[:, context_features.shape[1] :]

    def imagine(
        self,
        features: torch.Tensor,
        states: torch.Tensor,
        candidates: torch.Tensor,
        state_scale: torch.Tensor | None = None,
        past_actions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`(K, horizon, H*W, D)`: each candidate action sequence `(K, horizon, action_dim)` rolled out from the
        observed frames, the imagined states integrated from the actions; `plan` scores the last step. Arguments as
        in `plan` (unchecked here: `plan` checks them)."""
        samples, horizon = candidates.shape[:2]
        device, state_dim = features.device, self.config.predictor_config.state_dim
        past = candidates.new_zeros(0, candidates.shape[-1]) if past_actions is None else past_actions.to(device)
        actions = torch.cat((past.expand(samples, -1, -1), candidates), dim=1)
        imagined_states = states[-1].expand(samples, horizon - 1, -1)
        if state_scale is not None and horizon > 1:
            moves = candidates[:, :-1, :state_dim] * state_scale.to(device)
            imagined_states = imagined_states + moves.cumsum(1)
        all_states = torch.cat((states.expand(samples, -1, -1), imagined_states), dim=1)
        return self.rollout(features.expand(samples, -1, -1, -1), actions, all_states, steps=horizon)

    @torch.no_grad()
    def plan(
        self,
        features: torch.Tensor,
        states: torch.Tensor,
        goal_features: torch.Tensor,
        cem: CEMConfig,
        state_scale: torch.Tensor | None = None,
        past_actions: torch.Tensor | None = None,
        init_mean: torch.Tensor | None = None,
    ) -> PlanResult:
        """Plan actions towards a goal with CEM (`vjepa_vlm.vision.planner`): every candidate sequence is rolled out
        from the observed frames, all candidates of an iteration in one batch, and scored by the L1 energy.

        Args:
            features: `(C, H*W, D)` features of the observed frames (`encode_frames(...)[0]`; the paper: C = 1).
            states: `(C, state_dim)` states at those frames.
            goal_features: `(H*W, D)` features of the goal image.
            cem: the planner's settings (samples, top-k, iterations, horizon, constraint, seed).
            state_scale: `(state_dim,)`; the imagined state after an action is the previous one plus `state_scale`
                times the action's first `state_dim` coordinates (the reference integrates poses likewise). None:
                imagined states stay at the last observed one (enough for the paper's horizon 1).
            past_actions: `(C - 1, action_dim)` actions taken between the observed frames (C > 1 only).
            init_mean: `(horizon, action_dim)` where the search starts (`vision.planner.warm_start_mean`); None: 0.
        """
        config = self.config.predictor_config
        expected = (self.tokens_per_frame, config.encoder_hidden_size)
        if features.ndim != 3 or tuple(features.shape[1:]) != expected:
            raise ValueError(f"features must be (C, {expected[0]}, {expected[1]}), got {tuple(features.shape)}")
        if tuple(goal_features.shape) != expected:
            raise ValueError(
                f"goal_features must be {expected} (one frame at the world model's crop_size {config.crop_size}), "
                f"got {tuple(goal_features.shape)}"
            )
        context = features.shape[0]
        if tuple(states.shape) != (context, config.state_dim):
            raise ValueError(f"states must be ({context}, state_dim={config.state_dim}), got {tuple(states.shape)}")
        past = torch.zeros(0, config.action_dim) if past_actions is None else past_actions
        if tuple(past.shape) != (context - 1, config.action_dim):
            raise ValueError(
                f"past_actions must be ({context - 1}, action_dim={config.action_dim}), got {tuple(past.shape)}"
            )
        if state_scale is not None and (tuple(state_scale.shape) != (config.state_dim,) or config.action_dim < config.state_dim):
            raise ValueError(
                f"state_scale must be (state_dim={config.state_dim},) with action_dim >= state_dim "
                f"(action_dim={config.action_dim}), got {tuple(state_scale.shape)}"
            )

        def imagine(candidates: torch.Tensor) -> torch.Tensor:
            return self.imagine(features, states, candidates, state_scale, past)[:, -1]

        return cem_plan(imagine, goal_features, config.action_dim, cem, init_mean=init_mean)


__all__ = ["VJEPA2ACOutput", "VJEPA2ACPreTrainedModel", "VJEPA2ACPredictor", "VJEPA2WorldModel", "normalize_features"]
