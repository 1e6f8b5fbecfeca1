"""V-JEPA 2 as a Hugging Face model: encoder + pretraining predictor, a drop-in for transformers' `VJEPA2Model`.

The module tree (hence every state-dict key) is the one of transformers' `VJEPA2Model`, so directories saved by either
library load in the other. Differences are in behaviour only: RoPE positions come from the input grid (any clip
length / resolution), the encoder can run on context tokens only, and RoPE tables are computed once per forward.
Attention follows `config._attn_implementation` ("eager", "sdpa" by default, "flash_attention_2") through the one
dispatch in `vjepa_vlm.vision.attention`.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from vjepa_vlm.configuration_vjepa2 import VJEPA2Config
from vjepa_vlm.vision.attention import check_attn_implementation
from vjepa_vlm.vision.encoder import TubeletEmbedding, VJEPA2VisionEncoder, gather_tokens
from vjepa_vlm.vision.predictor import VJEPA2Predictor, VJEPA2PredictorEmbeddings


@dataclass
class VJEPA2PredictorOutput(ModelOutput):
    """Predictor part of [`VJEPA2ModelOutput`] (field names of transformers' `VJEPA2WithMaskedInputPredictorOutput`).

    Args:
        last_hidden_state: `(B * M, Nt, D)` predictions of the target tokens, `M` = number of mask pairs.
        target_hidden_state: `(B * M, Nt, D)` encoder outputs at the target tokens.
    """

    last_hidden_state: torch.Tensor | None = None
    target_hidden_state: torch.Tensor | None = None


@dataclass
class VJEPA2ModelOutput(ModelOutput):
    """Output of [`VJEPA2Model`] (field names of transformers' `VJEPA2WithMaskedInputModelOutput`).

    Args:
        last_hidden_state: `(B, N, D)` encoder output of the whole clip.
        masked_hidden_state: `(B * M, Nc, D)` encoder output at the context tokens.
        predictor_output: predictor results, None with `skip_predictor=True`.
    """

    last_hidden_state: torch.Tensor | None = None
    masked_hidden_state: torch.Tensor | None = None
    predictor_output: VJEPA2PredictorOutput | None = None


def _as_mask_list(masks: torch.Tensor | Sequence[torch.Tensor], name: str) -> list[torch.Tensor]:
    masks = [masks] if isinstance(masks, torch.Tensor) else list(masks)
    if not masks:
        raise ValueError(f"{name} must be a (B, N) index tensor or a non-empty list of them")
    return masks


def init_vjepa2_projection(module: nn.Linear | nn.Conv3d, std: float) -> None:
    """Truncated-normal weights, zero bias; the residual output projections of block l (marked with
    `residual_depth`) start smaller, by 1 / sqrt(2 l), as in the reference init; one marked `zero_init` (the residual
    predictor's output) starts at zero."""
    if getattr(module, "zero_init", False):
        init.zeros_(module.weight)
        if module.bias is not None:
            init.zeros_(module.bias)
        return
    depth = getattr(module, "residual_depth", None)
    init.trunc_normal_(module.weight, std=std if depth is None else std / (2.0 * depth) ** 0.5)
    if module.bias is not None:
        init.zeros_(module.bias)


class VJEPA2PreTrainedModel(PreTrainedModel):
    """Weight init and Hugging Face capabilities shared by V-JEPA 2 models.

    Args:
        config: a [`VJEPA2Config`].
    """

    config: VJEPA2Config
    config_class = VJEPA2Config
    base_model_prefix = "vjepa2"
    main_input_name = "pixel_values_videos"
    input_modalities = "video"
    supports_gradient_checkpointing = True
    _no_split_modules = ["VJEPA2Block", "VJEPA2PredictorEmbeddings"]
    _supports_sdpa = True
    _supports_flash_attn = True

    def _check_and_adjust_attn_implementation(
        self, attn_implementation: str | None, is_init_check: bool = False, allow_all_kernels: bool = False
    ) -> str:
        # Ours first: it rejects what the vision attention cannot run, and flash-attn missing, before transformers
        # would substitute a kernel downloaded from the Hub.
        check_attn_implementation(attn_implementation)
        return super()._check_and_adjust_attn_implementation(attn_implementation, is_init_check, allow_all_kernels)

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv3d)):
            init_vjepa2_projection(module, std)
        elif isinstance(module, VJEPA2PredictorEmbeddings):
            if module.zero_init_mask_tokens:
                init.zeros_(module.mask_tokens)
            else:
                init.trunc_normal_(module.mask_tokens, std=std)


class VJEPA2Model(VJEPA2PreTrainedModel):
    """V-JEPA 2 encoder and mask-denoising predictor.

    `model.encoder` is usable alone (masked forward, intermediate layers); `model.predictor` takes encoder outputs of
    context tokens and predicts target tokens.

    Args:
        config: a [`VJEPA2Config`].
    """

    def __init__(self, config: VJEPA2Config):
        super().__init__(config)
        self.encoder = VJEPA2VisionEncoder(config)
        self.predictor = VJEPA2Predictor(config)
        self.post_init()

    def get_input_embeddings(self) -> TubeletEmbedding:
        return self.encoder.embeddings.patch_embeddings

    def get_vision_features(self, pixel_values_videos: torch.Tensor) -> torch.Tensor:
        """`(B, N, D)` encoder output of whole clips."""
        return self.encoder(pixel_values_videos).last_hidden_state

    def forward(
        self,
        pixel_values_videos: torch.Tensor,
        context_mask: torch.Tensor | Sequence[torch.Tensor] | None = None,
        target_mask: torch.Tensor | Sequence[torch.Tensor] | None = None,
        skip_predictor: bool = False,
        **kwargs,
    ) -> VJEPA2ModelOutput:
        """Encode whole clips and, unless `skip_predictor`, predict target tokens from context tokens.

        As in transformers' `VJEPA2Model`, the predictor reads the full-clip encoder output at the context tokens
        (use `model.encoder(..., context_indices=...)` for the cheaper context-only encoding of pretraining).

        Args:
            pixel_values_videos: `(B, T, C, H, W)` clips (or `(B, C, H, W)` images).
            context_mask: `(B, Nc)` grid indices, or a list of them paired with `target_mask`; all tokens if None.
            target_mask: `(B, Nt)` grid indices (or a list); all tokens if None.
            skip_predictor: only run the encoder.
        """
        if kwargs:
            raise TypeError(f"VJEPA2Model.forward got unsupported arguments {sorted(kwargs)}")
        encoded = self.encoder(pixel_values_videos)
        tokens = encoded.last_hidden_state
        batch, num_tokens, _ = tokens.shape
        if context_mask is None and target_mask is None:
            everything = torch.arange(num_tokens, device=tokens.device).unsqueeze(0).expand(batch, -1)
            context_mask, target_mask = everything, everything
        elif context_mask is None or target_mask is None:
            raise ValueError("context_mask and target_mask must be given together (or both left None)")
        contexts = _as_mask_list(context_mask, "context_mask")
        targets = _as_mask_list(target_mask, "target_mask")
        if len(contexts) != len(targets):
            raise ValueError(f"got {len(contexts)} context masks but {len(targets)} target masks; they pair up")

        masked = torch.cat([gather_tokens(tokens, mask) for mask in contexts])
        predictor_output = None
        if not skip_predictor:
            predictions = [
                self.predictor(gather_tokens(tokens, ctx), ctx, tgt, encoded.grid_size)
                for ctx, tgt in zip(contexts, targets)
            ]
            predictor_output = VJEPA2PredictorOutput(
                last_hidden_state=torch.cat(predictions),
                target_hidden_state=torch.cat([gather_tokens(tokens, mask) for mask in targets]),
            )
        return VJEPA2ModelOutput(
            last_hidden_state=tokens, masked_hidden_state=masked, predictor_output=predictor_output
        )


__all__ = ["VJEPA2Model", "VJEPA2ModelOutput", "VJEPA2PreTrainedModel", "VJEPA2PredictorOutput"]
