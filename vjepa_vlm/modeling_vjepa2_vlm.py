"""The V-JEPA 2 video-language model: encoder -> projector -> LLM, LLaVA-style (paper section 7, appendix E).

Visual features replace the `<image>` / `<video>` placeholder embeddings of the prompt, after checking that
there are exactly as many placeholders as features ("... features and tokens do not match: N vs M" otherwise,
raised before `masked_scatter` can misalign anything). Pixels are consumed only at the first generation step:
`generate()` drops `pixel_values_images` / `pixel_values_videos` once the KV cache holds the prompt.

Text-only batches during training: every training forward runs the vision tower and projector, on the real
media or, when a batch has none, on one blank tubelet of a single patch (`dummy_visual_input`) whose features
are added to the embeddings multiplied by zero. Every rank thus runs the same modules with the same parameters,
which ZeRO-3 needs (its parameter all-gathers would otherwise hang), and gradients stay exactly those of the
text. Evaluation and generation skip this.
"""

from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModel, AutoModelForCausalLM, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.modeling_utils import slice_logits_to_keep
from transformers.utils import ModelOutput

from vjepa_vlm.configuration_vjepa2_vlm import VJEPA2VLMConfig
from vjepa_vlm.modeling_vjepa2 import VJEPA2Model, init_vjepa2_projection
from vjepa_vlm.projector_vjepa2_vlm import VJEPA2VLMAttentivePooler, build_projector
from vjepa_vlm.vision.attention import check_attn_implementation
from vjepa_vlm.vision.attentive_pooler import PoolerAttention
from vjepa_vlm.vision.encoder import VJEPA2VisionEncoder


@dataclass
class VJEPA2VLMModelOutput(ModelOutput):
    """Output of [`VJEPA2VLMModel`].

    Args:
        last_hidden_state: `(B, L, D)` LLM hidden states.
        cache: the KV cache, when `use_cache`.
        hidden_states: per-layer LLM hidden states, when requested.
        attentions: per-layer LLM attentions, when requested.
        image_features: `(num image tokens, D)` projected image features, when images were given.
        video_features: `(num video tokens, D)` projected video features, when videos were given.
    """

    last_hidden_state: torch.Tensor | None = None
    cache: Cache | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    image_features: torch.Tensor | None = None
    video_features: torch.Tensor | None = None


@dataclass
class VJEPA2VLMCausalLMOutput(CausalLMOutputWithPast):
    """[`CausalLMOutputWithPast`] plus the projected visual features of the step.

    Args:
        image_features: `(num image tokens, D)` projected image features, when images were given.
        video_features: `(num video tokens, D)` projected video features, when videos were given.
    """

    image_features: torch.Tensor | None = None
    video_features: torch.Tensor | None = None


class VJEPA2VLMPreTrainedModel(PreTrainedModel):
    """Capabilities and weight init shared by the VLM classes.

    Args:
        config: a [`VJEPA2VLMConfig`].
    """

    config: VJEPA2VLMConfig
    config_class = VJEPA2VLMConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    input_modalities = ("image", "video", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = ["VJEPA2Block", "Qwen2DecoderLayer", "LlamaDecoderLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    def _check_and_adjust_attn_implementation(
        self, attn_implementation: str | None, is_init_check: bool = False, allow_all_kernels: bool = False
    ) -> str:
        # The vision side first: an implementation it cannot run, or flash-attn missing, fails here rather than
        # after transformers has substituted a kernel fetched from the Hub for the LLM.
        check_attn_implementation(self.config.vision_config._attn_implementation)
        return super()._check_and_adjust_attn_implementation(attn_implementation, is_init_check, allow_all_kernels)

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if hasattr(module, "residual_depth"):
            # An encoder block's residual projection: a random vision tower starts as `VJEPA2Model` starts
            # (pretraining's step 0), so "random encoder" baselines compare against the pretrained encoder's init.
            init_vjepa2_projection(module, self.config.vision_config.initializer_range)
        if isinstance(module, VJEPA2VLMAttentivePooler):
            init.trunc_normal_(module.queries, std=self.config.vision_config.initializer_range)
        if isinstance(module, PoolerAttention) and module.packed_projection:
            module.reset_packed_projection()


class VJEPA2VLMModel(VJEPA2VLMPreTrainedModel):
    """V-JEPA 2 encoder, projector and LLM backbone (no LM head).

    Args:
        config: a [`VJEPA2VLMConfig`].
    """

    def __init__(self, config: VJEPA2VLMConfig):
        super().__init__(config)
        self.vision_tower = VJEPA2VisionEncoder(config.vision_config)
        self.multi_modal_projector = build_projector(config)
        self.language_model = AutoModel.from_config(config.text_config)
        # Set by a trainer whose stage keeps the encoder frozen (`vjepa_vlm.train.feature_cache`): a callable
        # `(pixel_values, encode) -> (features, grid)` that may answer from memory instead of running `encode`.
        self.feature_cache = None
        self.post_init()
        self.set_vision_tower_trainable(not config.freeze_vision_tower)

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def set_vision_tower_trainable(self, trainable: bool) -> None:
        """Freeze (no gradients, run under `no_grad`) or unfreeze the encoder: the frozen / finetuned setups of E.2."""
        self.config.freeze_vision_tower = not trainable
        self.vision_tower.requires_grad_(trainable)

    def vision_features(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """The encoder tokens the projector reads (`vision_feature_layer`, concatenated along channels) and
        their (t, h, w) grid, before projection."""
        if self.feature_cache is not None:
            if not self.config.freeze_vision_tower or (self.vision_tower.training and self._vision_is_stochastic()):
                raise ValueError("a vision feature cache needs a frozen, deterministic encoder: this one trains or "
                                 "has dropout / drop path on; turn the cache off (cache_vision_features=false)")
            return self.feature_cache(pixel_values, self._encode_vision)
        return self._encode_vision(pixel_values)

    def _vision_is_stochastic(self) -> bool:
        vision = self.config.vision_config
        return vision.drop_path_rate > 0 or vision.attention_probs_dropout_prob > 0

    def _encode_vision(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        layers = self.config.feature_layers
        last_only = layers == [-1]
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_vision_tower):
            encoded = self.vision_tower(pixel_values, output_layers=None if last_only else layers)
        features = encoded.last_hidden_state if last_only else torch.cat(encoded.intermediate_hidden_states, dim=-1)
        return features, encoded.grid_size

    def encode_visual(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """`(N, T, C, H, W)` clips or `(N, C, H, W)` image tiles -> projected `(N, tokens per item, D_text)`."""
        return self.multi_modal_projector(*self.vision_features(pixel_values))

    def get_image_features(self, pixel_values_images: torch.Tensor) -> torch.Tensor:
        """All tiles of all images `(num_tiles, C, H, W)` -> `(num_tiles * tokens_per_tile, D_text)`, in order."""
        return self.encode_visual(pixel_values_images).flatten(0, 1)

    def get_video_features(self, pixel_values_videos: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        """`(N, T, C, H, W)` videos, or a list of `(T_i, C, H, W)` -> `(total video tokens, D_text)`, in order."""
        if isinstance(pixel_values_videos, (list, tuple)):
            return torch.cat([self.encode_visual(video.unsqueeze(0)).flatten(0, 1) for video in pixel_values_videos])
        return self.encode_visual(pixel_values_videos).flatten(0, 1)

    def dummy_visual_input(self) -> torch.Tensor:
        """One blank tubelet of one patch: the cheapest input that runs every vision and projector parameter."""
        vision = self.config.vision_config
        weight = self.vision_tower.embeddings.patch_embeddings.proj.weight
        shape = (1, vision.tubelet_size, vision.in_chans, vision.patch_size, vision.patch_size)
        return torch.zeros(shape, dtype=weight.dtype, device=weight.device)

    def get_placeholder_mask(
        self, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor, token_id: int, num_features: int, kind: str
    ) -> torch.Tensor:
        """`(B, L, 1)` mask of the `token_id` placeholders; raises unless there is one per feature row."""
        if input_ids is None:
            placeholder = self.get_input_embeddings()(torch.tensor(token_id, device=inputs_embeds.device))
            mask = (inputs_embeds == placeholder).all(-1)
        else:
            mask = input_ids == token_id
        num_tokens = int(mask.sum())
        if num_tokens != num_features:
            raise ValueError(
                f"{kind} features and tokens do not match: {num_features} vs {num_tokens} "
                f"({num_features} projected {kind} features, {num_tokens} {kind} placeholder tokens)"
            )
        return mask.unsqueeze(-1)

    def scatter_features(self, input_ids, inputs_embeds, features, token_id, kind: str) -> torch.Tensor:
        """Write `features` rows into the `token_id` placeholder positions of `inputs_embeds`, after the count check."""
        mask = self.get_placeholder_mask(input_ids, inputs_embeds, token_id, features.shape[0], kind)
        return inputs_embeds.masked_scatter(mask.to(inputs_embeds.device), features.to(inputs_embeds))

    def _check_no_orphan_placeholders(self, input_ids, cache, pixel_values_images, pixel_values_videos) -> None:
        # During decoding the prompt's placeholders are already in the cache; only a fresh prompt is checked.
        if input_ids is None or (cache is not None and cache.get_seq_length() > 0):
            return
        for pixels, token_id, name in (
            (pixel_values_images, self.config.image_token_id, "pixel_values_images"),
            (pixel_values_videos, self.config.video_token_id, "pixel_values_videos"),
        ):
            if pixels is None and bool((input_ids == token_id).any()):
                raise ValueError(f"input_ids holds {int((input_ids == token_id).sum())} placeholder tokens but {name} is None")

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values_images: torch.Tensor | None = None,
        pixel_values_videos: torch.Tensor | list[torch.Tensor] | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs,
    ) -> VJEPA2VLMModelOutput:
        """Embed the prompt, scatter visual features into its placeholders and run the LLM.

        Args:
            input_ids: `(B, L)` tokens with each placeholder already expanded by the processor.
            pixel_values_images: `(num_tiles, C, H, W)` Dynamic S² tiles of all images of the batch, in order.
            pixel_values_videos: `(num_videos, T, C, H, W)` clips (or a list of `(T_i, C, H, W)`), in order.
            attention_mask, position_ids, cache, use_cache: as for the LLM.
            inputs_embeds: `(B, L, D)` instead of `input_ids`; placeholders are found by their embedding.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        self._check_no_orphan_placeholders(input_ids, cache, pixel_values_images, pixel_values_videos)
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)

        image_features = video_features = None
        if pixel_values_images is not None:
            image_features = self.get_image_features(pixel_values_images)
            inputs_embeds = self.scatter_features(input_ids, inputs_embeds, image_features, self.config.image_token_id, "Image")
        if pixel_values_videos is not None:
            video_features = self.get_video_features(pixel_values_videos)
            inputs_embeds = self.scatter_features(input_ids, inputs_embeds, video_features, self.config.video_token_id, "Video")
        if self.training and image_features is None and video_features is None:
            dummy = self.encode_visual(self.dummy_visual_input())
            inputs_embeds = inputs_embeds + 0.0 * dummy.sum().to(inputs_embeds.dtype)

        outputs = self.language_model(
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        return VJEPA2VLMModelOutput(
            last_hidden_state=outputs.last_hidden_state,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_features=image_features,
            video_features=video_features,
        )


class VJEPA2VLMForConditionalGeneration(VJEPA2VLMPreTrainedModel, GenerationMixin):
    """V-JEPA 2 VLM with a language-modeling head; `generate()` works with the KV cache.

    Args:
        config: a [`VJEPA2VLMConfig`].
    """

    _tied_weights_keys = {"lm_head.weight": "model.language_model.embed_tokens.weight"}

    def __init__(self, config: VJEPA2VLMConfig):
        super().__init__(config)
        self.model = VJEPA2VLMModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()

    @classmethod
    def from_pretrained_towers(
        cls, vision_path: str, text_path: str, dtype: torch.dtype | None = None, **config_kwargs
    ) -> "VJEPA2VLMForConditionalGeneration":
        """Assemble the VLM from a saved V-JEPA 2 model (its encoder only) and a saved causal LM.

        The projector is freshly initialized: this is the starting point of alignment stage 1.

        Args:
            vision_path: directory (or hub id) of a `VJEPA2Model`.
            text_path: directory (or hub id) of an `AutoModelForCausalLM` (e.g. Qwen2-7B-Instruct).
            dtype: load and return the model in this dtype.
            config_kwargs: the other `VJEPA2VLMConfig` fields (projector_type, pooling_ratio, token ids, ...).
        """
        vision = VJEPA2Model.from_pretrained(vision_path, dtype=dtype)
        text = AutoModelForCausalLM.from_pretrained(text_path, dtype=dtype)
        config = VJEPA2VLMConfig(vision_config=vision.config, text_config=text.config, **config_kwargs)
        # Both towers are overwritten right away: skip their (at 8B, minutes-long) random init.
        with init.no_init_weights():
            model = cls(config)
        model.model.vision_tower.load_state_dict(vision.encoder.state_dict())
        model.model.language_model.load_state_dict(text.base_model.state_dict())
        model.lm_head.load_state_dict(text.get_output_embeddings().state_dict())
        model.model.multi_modal_projector.apply(model._init_weights)
        return model if dtype is None else model.to(dtype)

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def get_image_features(self, pixel_values_images: torch.Tensor) -> torch.Tensor:
        return self.model.get_image_features(pixel_values_images)

    def get_video_features(self, pixel_values_videos: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        return self.model.get_video_features(pixel_values_videos)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values_images: torch.Tensor | None = None,
        pixel_values_videos: torch.Tensor | list[torch.Tensor] | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        supervised_logits_only: bool = False,
        **kwargs,
    ) -> VJEPA2VLMCausalLMOutput:
        """[`VJEPA2VLMModel.forward`] plus logits and, with `labels` (-100 = ignored, unshifted), the LM loss.

        Args:
            supervised_logits_only: with `labels`, run the LM head only where a label is supervised and return no
                logits (`logits=None`). The loss and its gradients are those of the full path; what is saved is
                the head at every other position (with SmolLM2's 49k-row head, about a fifth of a position's
                arithmetic, for the few supervised tokens a multiple-choice sample has). Training uses it.
        """
        outputs = self.model(
            input_ids=input_ids,
            pixel_values_images=pixel_values_images,
            pixel_values_videos=pixel_values_videos,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        vocab_size = self.config.text_config.vocab_size
        loss = logits = None
        if supervised_logits_only:
            if labels is None:
                raise ValueError("supervised_logits_only=True needs labels: it computes logits only where they supervise")
            # The shift of the causal LM loss (position i predicts label i + 1), then only the supervised rows.
            shift_labels = nn.functional.pad(labels, (0, 1), value=-100)[..., 1:]
            supervised = shift_labels != -100
            hidden = outputs.last_hidden_state[supervised.to(outputs.last_hidden_state.device)]
            loss = self.loss_function(logits=self.lm_head(hidden), labels=None, shift_labels=shift_labels[supervised],
                                      vocab_size=vocab_size, **kwargs)
        else:
            logits = self.lm_head(slice_logits_to_keep(outputs.last_hidden_state, logits_to_keep))
            if labels is not None:
                loss = self.loss_function(logits=logits, labels=labels, vocab_size=vocab_size, **kwargs)
        return VJEPA2VLMCausalLMOutput(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_features=outputs.image_features,
            video_features=outputs.video_features,
        )


__all__ = ["VJEPA2VLMForConditionalGeneration", "VJEPA2VLMModel", "VJEPA2VLMPreTrainedModel"]
