"""V-JEPA 2 with a frozen-feature attentive probe (section 5, appendix C.1) as a Hugging Face model.

The probe is four transformer blocks: three self-attention blocks over the encoder tokens, then one whose
attention is a cross-attention from a single learnable query, followed by a linear classifier. Module
names follow transformers' `VJEPA2ForVideoClassification` (`vjepa2.*`, `pooler.*`, `classifier.*`), so
its published checkpoints load here and ours load there when the probe reads only the last layer.

The pooler itself lives in `vjepa_vlm.vision.attentive_pooler`, its attention dispatched by
`config._attn_implementation` like the encoder's. Three optional config attributes extend the transformers layout:
- `pooler_num_attention_heads`: probe heads (paper: 16); default `num_attention_heads`, as transformers.
- `probe_output_layers`: encoder blocks whose tokens the probe attends to, concatenated along the token
  axis (Table 16 multi-layer input); default None = the last layer only.
- `probe_position_embedding`: None (default; the reference probe, whose blocks see no token position) or
  "sincos": a fixed 3D sin/cos embedding of each token's (t, h, w) added to the probe's input tokens. The
  encoder's only positional signal is RoPE, which is relative, so its output tokens barely say where they
  are; a position-blind pooler then cannot read "the object is here at t and there at t+1". The embedding
  has no parameters, so the state dict keeps transformers' layout (transformers' class ignores the
  attribute, so its logits differ from ours for such a checkpoint).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.modeling_outputs import ImageClassifierOutput

from vjepa_vlm.configuration_vjepa2 import VJEPA2Config
from vjepa_vlm.modeling_vjepa2 import VJEPA2Model, VJEPA2PreTrainedModel
from vjepa_vlm.vision.attentive_pooler import VJEPA2AttentivePooler


class VJEPA2ProbeHead(nn.Module):
    """Attentive pooler + linear classifier: the trainable part of a frozen-encoder probe.

    Args:
        config: a `VJEPA2Config` with `num_labels`.
    """

    def __init__(self, config: VJEPA2Config):
        super().__init__()
        self.pooler = VJEPA2AttentivePooler(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, tokens: torch.Tensor, grid_size: tuple[int, int, int] | None = None) -> torch.Tensor:
        return self.classifier(self.pooler(tokens, grid_size))


def probe_tokens(encoder: nn.Module, pixel_values: torch.Tensor, output_layers: list[int] | None) -> torch.Tensor:
    """Encoder tokens the probe reads: the last layer, or several layers concatenated along tokens."""
    if not output_layers:
        return encoder(pixel_values).last_hidden_state
    return torch.cat(encoder(pixel_values, output_layers=output_layers).intermediate_hidden_states, dim=1)


class VJEPA2ForVideoClassification(VJEPA2PreTrainedModel):
    """V-JEPA 2 encoder + attentive probe for video (and image, via frame repetition) classification.

    Args:
        config: a `VJEPA2Config` with `num_labels` (and optionally `id2label`,
            `pooler_num_attention_heads`, `probe_output_layers`, `probe_position_embedding`).
    """

    _no_split_modules = ["VJEPA2Block", "PoolerSelfAttentionLayer", "PoolerCrossAttentionLayer"]

    def __init__(self, config: VJEPA2Config):
        super().__init__(config)
        self.vjepa2 = VJEPA2Model(config)
        self.pooler = VJEPA2AttentivePooler(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, VJEPA2AttentivePooler):
            init.trunc_normal_(module.query_tokens, std=self.config.initializer_range)

    def load_probe_head(self, head: VJEPA2ProbeHead) -> None:
        """Copy a trained probe head (e.g. the best of a sweep) into this model."""
        self.pooler.load_state_dict(head.pooler.state_dict())
        self.classifier.load_state_dict(head.classifier.state_dict())

    def forward(
        self, pixel_values_videos: torch.Tensor, labels: torch.Tensor | None = None, **kwargs
    ) -> ImageClassifierOutput:
        """Classify `(B, T, C, H, W)` clips (or `(B, C, H, W)` images); cross-entropy loss when `labels`.

        For multi-clip × multi-view inference, run each clip/view and average the logits
        (`vjepa_vlm.eval.probe.average_logits`).
        """
        if kwargs:
            raise TypeError(f"VJEPA2ForVideoClassification.forward got unsupported arguments {sorted(kwargs)}")
        encoder = self.vjepa2.encoder
        tokens = probe_tokens(encoder, pixel_values_videos, getattr(self.config, "probe_output_layers", None))
        logits = self.classifier(self.pooler(tokens, encoder.grid_size(pixel_values_videos)))
        loss = None
        if labels is not None:
            if labels.shape != logits.shape[:1]:
                raise ValueError(f"labels must have shape (B={logits.shape[0]},), got {tuple(labels.shape)}")
            loss = F.cross_entropy(logits, labels)
        return ImageClassifierOutput(loss=loss, logits=logits)


__all__ = ["VJEPA2AttentivePooler", "VJEPA2ForVideoClassification", "VJEPA2ProbeHead", "probe_tokens"]
