"""V-JEPA 2 action anticipation (section 6, appendix D) as a Hugging Face model.

The frozen encoder reads a context clip that ends `anticipation_time` seconds before an action; the pretraining
predictor then fills mask tokens at the positions of one tubelet slice `int(t * fps / tubelet)` slices after the
context (facebookresearch/vjepa2 `evals/action_anticipation_frozen/modelcustom/vit_encoder_predictor_concat_ar.py`:
context positions `arange(N)`, target positions `N + h*w*steps + arange(h*w*slices)`, mask token 1). A probe with three
learnable queries (verb, noun, action) attends to the encoder tokens, the predicted tokens, or both concatenated
(Table 20), and three linear heads give the logits; the loss is the sigmoid focal loss summed over the three.
For both, `anticipation_fusion` picks the reference's early fusion (one pooler over the concatenated tokens, the
default) or our late fusion (each stream pooled by a pooler of its own, the classifiers read both pooled features),
whose second pooler may also read each predicted token's change from the context's last slice ("late_delta").

`anticipation_tokens` is the one computation of the frozen features: the model's forward and the cached-feature
probe sweep (`vjepa_vlm.eval.anticipation`) both call it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedConfig
from transformers import initialization as init
from transformers.utils import ModelOutput

from vjepa_vlm.configuration_vjepa2 import VJEPA2Config
from vjepa_vlm.configuration_vjepa2_anticipation import (
    ANTICIPATION_FEATURES,
    ANTICIPATION_FUSIONS,
    LATE_FUSIONS,
    VJEPA2AnticipationConfig,
)
from vjepa_vlm.modeling_vjepa2 import VJEPA2Model, VJEPA2PreTrainedModel
from vjepa_vlm.vision.attentive_pooler import VJEPA2AttentivePooler

ANTICIPATION_TASKS = ("verb", "noun", "action")  # the probe's queries, in order


@dataclass
class ActionAnticipationOutput(ModelOutput):
    """Output of [`VJEPA2ForActionAnticipation`].

    Args:
        loss: sigmoid focal loss summed over samples, classes and the three tasks (when `labels` are given).
        verb_logits, noun_logits, action_logits: `(B, num_verbs)`, `(B, num_nouns)`, `(B, num_actions)`.
    """

    loss: torch.Tensor | None = None
    verb_logits: torch.Tensor | None = None
    noun_logits: torch.Tensor | None = None
    action_logits: torch.Tensor | None = None


def anticipation_steps(anticipation_time: torch.Tensor, frames_per_second: float, tubelet_size: int) -> torch.Tensor:
    """Tubelet slices skipped between the context and the predicted slice: `int(t * fps / tubelet)` per sample."""
    return (anticipation_time * frames_per_second / tubelet_size).to(torch.int64)


def anticipation_masks(
    steps: torch.Tensor, context_slices: int, tokens_per_slice: int, output_slices: int
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Predictor masks of an anticipation query.

    Args:
        steps: `(B,)` slices skipped after the context (`anticipation_steps`).
        context_slices: tubelet slices of the context clip.
        tokens_per_slice: `h * w` tokens of one slice.
        output_slices: slices to predict.

    Returns:
        `(context (B, N), target (B, tokens_per_slice * output_slices), grid_slices)`: grid indices (t outermost) of
        the context tokens and of the predicted ones, and the number of slices a grid must have to hold them all.
    """
    batch = steps.shape[0]
    num_context = context_slices * tokens_per_slice
    context = torch.arange(num_context, device=steps.device).expand(batch, -1)
    first = num_context + tokens_per_slice * steps
    target = first[:, None] + torch.arange(tokens_per_slice * output_slices, device=steps.device)
    return context, target, context_slices + int(steps.max()) + output_slices


def anticipation_grid(num_tokens: int, height: int, width: int) -> tuple[int, int, int]:
    """`(slices, height, width)` grid of the tokens the probe reads, for its position embedding.

    The probe's input is whole tubelet slices: the context's, then (for "both") the predicted slice stacked after
    them, as if it came right after the context whatever the anticipation time (the probe is told nothing else).
    """
    if num_tokens % (height * width):
        raise ValueError(f"{num_tokens} probe tokens are not whole slices of a {height} x {width} token grid")
    return num_tokens // (height * width), height, width


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """Sum over samples and classes of RetinaNet's focal loss on one-vs-all sigmoids (Lin et al., 2017).

    Args:
        logits: `(..., C)`.
        targets: `(...)` class ids.
        alpha: weight of the positive class (negatives get 1 - alpha); negative to weigh none.
        gamma: exponent of `(1 - p_t)`, which shrinks the loss of well-classified classes.
    """
    one_hot = F.one_hot(targets, logits.shape[-1]).to(logits.dtype)
    probability = logits.sigmoid()
    p_t = probability * one_hot + (1 - probability) * (1 - one_hot)
    loss = F.binary_cross_entropy_with_logits(logits, one_hot, reduction="none") * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * one_hot + (1 - alpha) * (1 - one_hot))
    return loss.sum()


class VJEPA2AnticipationHead(nn.Module):
    """Three-query attentive pooler + verb/noun/action classifiers: the trainable part of anticipation.

    With `anticipation_fusion="late"` a second pooler of its own (`predicted_pooler`) reads the predicted tokens while
    `pooler` reads the context's, and each classifier reads the two pooled features concatenated. Separate weights,
    not one pooler run twice: the two streams come from different networks (encoder tokens over several slices,
    the predictor's one imagined slice), and each single-stream probe (Table 20's encoder and predictor rows) reads
    its stream with a pooler of its own; late fusion is those two readers side by side. It costs one more pooler
    and classifiers of twice the input width.

    `"late_delta"` gives the second pooler what a linear read-out of the two streams uses and late fusion hides from
    it: how the predicted slice differs from the context's last slice (`change_stream`). With late fusion no reader
    sees a predicted token next to the context token at its position (each pooler reads one stream, the classifiers
    only pooled summaries), while the read-out's differences of slices are what let it read context + future slice
    10-13 points above the future slice alone (BENCHMARKS.md, "Action anticipation", seventh session part 5). It
    concatenates each predicted token with its change along channels and projects the pair back to `hidden_size`
    (`change_projection`). Channels, not the change as a second set of tokens: with the real future slice that read
    the verb 7-10 points worse, no better than plain late fusion (eighth session; likely because the pooler
    layer-norms each token, which erases how large a change token is). The projection lifts any second slice, a copy
    of the context's last slice (whose change is zero) included, so a predictor's row is paired with the copy read
    the same way.

    Args:
        config: a `VJEPA2AnticipationConfig` (or any `VJEPA2Config` with `num_verbs`, `num_nouns`, `num_actions`
            and the pooler fields; the late fusions also read `context_frames` and `output_frames`).
    """

    def __init__(self, config: VJEPA2Config):
        super().__init__()
        self.fusion = getattr(config, "anticipation_fusion", "early")
        self.pooler = VJEPA2AttentivePooler(config)
        # One learnable query per task; the pooler's cross-attention block and its output keep one row per query.
        self.pooler.query_tokens = nn.Parameter(torch.zeros(1, len(ANTICIPATION_TASKS), config.hidden_size))
        pooled_size = config.hidden_size
        if self.fusion in LATE_FUSIONS:
            self.predicted_pooler = VJEPA2AttentivePooler(config)
            self.predicted_pooler.query_tokens = nn.Parameter(
                torch.zeros(1, len(ANTICIPATION_TASKS), config.hidden_size)
            )
            # The probe sweep initializes `pooler.query_tokens` itself; zero queries would start as mean pooling.
            nn.init.trunc_normal_(self.predicted_pooler.query_tokens, std=config.initializer_range)
            tubelet = config.tubelet_size
            self.stream_slices = (config.context_frames // tubelet, config.output_frames // tubelet)
            pooled_size = 2 * config.hidden_size
            if self.fusion == "late_delta":
                self.change_projection = nn.Linear(2 * config.hidden_size, config.hidden_size)
        elif self.fusion != "early":
            raise ValueError(f"anticipation_fusion must be one of {ANTICIPATION_FUSIONS}, got {self.fusion!r}")
        self.verb_classifier = nn.Linear(pooled_size, config.num_verbs)
        self.noun_classifier = nn.Linear(pooled_size, config.num_nouns)
        self.action_classifier = nn.Linear(pooled_size, config.num_actions)
        self.sizes = (config.num_verbs, config.num_nouns, config.num_actions)

    def forward(self, tokens: torch.Tensor, grid_size: tuple[int, int, int] | None = None) -> torch.Tensor:
        """(B, N, D) tokens -> (B, num_verbs + num_nouns + num_actions) logits, verbs first (`split_logits`)."""
        if self.fusion in LATE_FUSIONS:
            (context, context_grid), (predicted, predicted_grid) = self.split_streams(tokens, grid_size)
            second, second_grid = self.second_stream(context, predicted, predicted_grid)
            pooled = torch.cat((self.pooler(context, context_grid), self.predicted_pooler(second, second_grid)), dim=-1)
        else:
            pooled = self.pooler(tokens, grid_size)
        classifiers = (self.verb_classifier, self.noun_classifier, self.action_classifier)
        return torch.cat([classifier(pooled[:, i]) for i, classifier in enumerate(classifiers)], dim=-1)

    def split_streams(self, tokens: torch.Tensor, grid_size: tuple[int, int, int] | None):
        """`((context tokens, grid), (predicted tokens, grid))` of late fusion's input, the "both" concatenation.

        Each stream gets its own grid, so with a position embedding the context reads as the encoder row's and the
        predicted slice as the predictor row's.
        """
        if grid_size is None:
            raise ValueError(f"anticipation_fusion={self.fusion!r} needs the tokens' grid_size to split the streams")
        context_slices, predicted_slices = self.stream_slices
        per_slice = grid_size[1] * grid_size[2]
        expected = (context_slices + predicted_slices) * per_slice
        if tokens.shape[1] != expected:
            raise ValueError(
                f"anticipation_fusion={self.fusion!r} reads the {context_slices * per_slice} context tokens and the "
                f"{predicted_slices * per_slice} predicted tokens concatenated (anticipation_features='both', "
                f"{context_slices} + {predicted_slices} slices of {per_slice} tokens), got {tokens.shape[1]} tokens: "
                "a single-stream feature set (encoder or predictor) is read with 'early'"
            )
        context, predicted = tokens.split((context_slices * per_slice, predicted_slices * per_slice), dim=1)
        return ((context, (context_slices, *grid_size[1:])), (predicted, (predicted_slices, *grid_size[1:])))

    def second_stream(
        self, context: torch.Tensor, predicted: torch.Tensor, grid: tuple[int, int, int]
    ) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """The tokens and grid the second pooler reads: the predicted slice ("late"), or each predicted token with its
        change channel-concatenated and projected ("late_delta")."""
        if self.fusion == "late":
            return predicted, grid
        change = change_stream(context, predicted, grid[1] * grid[2])
        return self.change_projection(torch.cat((predicted, change), dim=-1)), grid

    def split_logits(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return logits.split(self.sizes, dim=-1)


def change_stream(context: torch.Tensor, predicted: torch.Tensor, tokens_per_slice: int) -> torch.Tensor:
    """`(B, Np, D)` change of each predicted token from the context token at its spatial position in the context's
    last slice: both layer-normed without affine, the space in which the pretraining loss compares a prediction with
    its target and the residual predictor copies the last slice. A copy of the last slice has no change."""
    last = context[:, -tokens_per_slice:]
    slices = predicted.shape[1] // tokens_per_slice
    width = predicted.shape[-1:]
    return F.layer_norm(predicted, width) - F.layer_norm(last, width).repeat(1, slices, 1)


def check_anticipation_labels(labels: torch.Tensor, sizes: tuple[int, int, int], name: str = "labels") -> None:
    """`labels` must be `(..., 3)` verb/noun/action ids inside the configured classes."""
    if labels.shape[-1:] != (3,) or labels.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"{name} must be an integer tensor of (verb, noun, action) rows, got {tuple(labels.shape)}")
    for column, (task, size) in enumerate(zip(ANTICIPATION_TASKS, sizes)):
        ids = labels[..., column]
        if ids.numel() and (ids.min() < 0 or ids.max() >= size):
            raise ValueError(
                f"{name}: {task} ids must lie in [0, {size}) (num_{task}s), got [{int(ids.min())}, {int(ids.max())}]"
            )


class VJEPA2ForActionAnticipation(VJEPA2PreTrainedModel):
    """V-JEPA 2 encoder + pretraining predictor + three-query attentive probe for action anticipation.

    Args:
        config: a [`VJEPA2AnticipationConfig`].
    """

    config: VJEPA2AnticipationConfig
    config_class = VJEPA2AnticipationConfig
    _no_split_modules = ["VJEPA2Block", "VJEPA2PredictorEmbeddings", "PoolerSelfAttentionLayer",
                         "PoolerCrossAttentionLayer"]

    def __init__(self, config: VJEPA2AnticipationConfig):
        super().__init__(config)
        self.vjepa2 = VJEPA2Model(config)
        self.head = VJEPA2AnticipationHead(config)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, VJEPA2AttentivePooler):
            init.trunc_normal_(module.query_tokens, std=self.config.initializer_range)

    @classmethod
    def from_vjepa2(cls, backbone: VJEPA2Model, **anticipation_fields) -> "VJEPA2ForActionAnticipation":
        """A model whose encoder and predictor are `backbone`'s (e.g. a pretraining checkpoint's `target/`)."""
        # Only the architecture fields: the generic PreTrainedConfig ones (architectures, dtype, ...) stay fresh.
        generic = {field.name for field in dataclasses.fields(PreTrainedConfig)}
        shared = {f.name: getattr(backbone.config, f.name) for f in dataclasses.fields(VJEPA2Config) if f.name not in generic}
        config = VJEPA2AnticipationConfig(**{**shared, **anticipation_fields})
        model = cls(config)
        model.vjepa2.load_state_dict(backbone.state_dict())
        return model

    def check_context(self, num_frames: int, anticipation_time: torch.Tensor) -> torch.Tensor:
        """Validate context length and anticipation times before anything runs; returns the anticipation steps."""
        config = self.config
        if num_frames < config.tubelet_size or num_frames % config.tubelet_size:
            raise ValueError(
                f"the context has {num_frames} frames; it needs a positive multiple of tubelet_size={config.tubelet_size}"
            )
        anticipation_time = torch.as_tensor(anticipation_time, dtype=torch.float32).reshape(-1)
        if (anticipation_time < 0).any():
            raise ValueError(f"anticipation_time must be >= 0 seconds, got {anticipation_time.tolist()}")
        steps = anticipation_steps(anticipation_time, config.frames_per_second, config.tubelet_size)
        span = num_frames + int(steps.max()) * config.tubelet_size + config.output_frames
        if span > config.max_frames:
            raise ValueError(
                f"anticipation_time {float(anticipation_time.max())} s at {config.frames_per_second} fps skips "
                f"{int(steps.max())} tubelets: {num_frames} context + {int(steps.max()) * config.tubelet_size} skipped + "
                f"{config.output_frames} predicted frames exceed the predictor's frame budget max_frames="
                f"{config.max_frames}"
            )
        return steps

    def anticipation_tokens(
        self, pixel_values_videos: torch.Tensor, anticipation_time: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`(encoder tokens (B, N, D), predicted tokens (B, h*w*slices, D))` of context clips."""
        if pixel_values_videos.ndim != 5:
            raise ValueError(f"pixel_values_videos must be (B, T, C, H, W), got {tuple(pixel_values_videos.shape)}")
        if anticipation_time.reshape(-1).shape[0] != pixel_values_videos.shape[0]:
            raise ValueError(
                f"anticipation_time must have one value per clip (B={pixel_values_videos.shape[0]}), "
                f"got {anticipation_time.numel()}"
            )
        steps = self.check_context(pixel_values_videos.shape[1], anticipation_time)
        encoder = self.vjepa2.encoder
        encoded = encoder(pixel_values_videos)
        slices, height, width = encoded.grid_size
        output_slices = self.config.output_frames // self.config.tubelet_size
        context, target, grid_slices = anticipation_masks(steps.to(encoded.last_hidden_state.device), slices,
                                                          height * width, output_slices)
        predicted = self.vjepa2.predictor(
            encoded.last_hidden_state, context, target, (grid_slices, height, width), self.config.predictor_mask_index
        )
        return encoded.last_hidden_state, predicted

    def forward(
        self,
        pixel_values_videos: torch.Tensor,
        anticipation_time: torch.Tensor | float,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> ActionAnticipationOutput:
        """Anticipate the action `anticipation_time` seconds after each `(B, T, C, H, W)` context clip.

        Args:
            pixel_values_videos: context clips sampled at `config.frames_per_second`, ending where anticipation starts.
            anticipation_time: seconds between the end of the context and the action, one per clip (or one float).
            labels: optional `(B, 3)` verb, noun and action ids; then `loss` is the summed sigmoid focal loss.
        """
        if kwargs:
            raise TypeError(f"VJEPA2ForActionAnticipation.forward got unsupported arguments {sorted(kwargs)}")
        if not torch.is_tensor(anticipation_time):
            anticipation_time = torch.full((pixel_values_videos.shape[0],), float(anticipation_time))
        if labels is not None:
            check_anticipation_labels(labels, self.head.sizes)
            if labels.shape[0] != pixel_values_videos.shape[0]:
                raise ValueError(f"labels has {labels.shape[0]} rows for {pixel_values_videos.shape[0]} clips")
        encoded, predicted = self.anticipation_tokens(pixel_values_videos, anticipation_time)
        config = self.config
        tokens = select_anticipation_features(encoded, predicted, config.anticipation_features,
                                              config.anticipation_fusion)
        height, width = (side // config.patch_size for side in pixel_values_videos.shape[-2:])
        logits = self.head(tokens, anticipation_grid(tokens.shape[1], height, width))
        verb, noun, action = self.head.split_logits(logits)
        loss = None
        if labels is not None:
            alpha, gamma = self.config.focal_alpha, self.config.focal_gamma
            loss = sum(sigmoid_focal_loss(part, labels[:, i], alpha, gamma) for i, part in enumerate((verb, noun, action)))
        return ActionAnticipationOutput(loss=loss, verb_logits=verb, noun_logits=noun, action_logits=action)


def select_anticipation_features(
    encoded: torch.Tensor, predicted: torch.Tensor, features: str, fusion: str = "early"
) -> torch.Tensor:
    """The tokens the probe reads for one of Table 20's rows (`ANTICIPATION_FEATURES`).

    "both" is the two streams concatenated along tokens for every fusion (the head splits them for the late ones).
    """
    if fusion not in ANTICIPATION_FUSIONS:
        raise ValueError(f"anticipation fusion must be one of {ANTICIPATION_FUSIONS}, got {fusion!r}")
    if fusion in LATE_FUSIONS and features != "both":
        raise ValueError(f"late fusion pools the context and the predicted tokens separately: it needs the 'both' "
                         f"features, got {features!r}")
    if features == "encoder":
        return encoded
    if features == "predictor":
        return predicted
    if features == "both":
        return torch.cat((encoded, predicted), dim=-2)
    raise ValueError(f"anticipation features must be one of {ANTICIPATION_FEATURES}, got {features!r}")


__all__ = [
    "ANTICIPATION_TASKS",
    "ActionAnticipationOutput",
    "VJEPA2AnticipationHead",
    "VJEPA2ForActionAnticipation",
    "anticipation_grid",
    "anticipation_masks",
    "anticipation_steps",
    "change_stream",
    "check_anticipation_labels",
    "select_anticipation_features",
    "sigmoid_focal_loss",
]
