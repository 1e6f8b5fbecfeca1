"""Configuration of V-JEPA 2 action anticipation (paper section 6, appendix D): encoder + pretraining predictor +
a three-query attentive probe.

The encoder and predictor fields are those of [`VJEPA2Config`] (this config extends it, so a pretrained
`VJEPA2Model` directory's weights load into `model.vjepa2`). The anticipation fields follow facebookresearch/vjepa2
`configs/eval/vitl/ek100.yaml` and `evals/action_anticipation_frozen/`: a 32-frame context at 8 fps, a predictor
that may address 64 frames (its pretraining clip length), one predicted tubelet slice (`num_output_frames: 2`), a
probe of 4 blocks with 16 heads, and a sigmoid focal loss with alpha 0.25 and gamma 2.
"""

from huggingface_hub.dataclasses import strict

from vjepa_vlm.configuration_vjepa2 import PRESETS, VJEPA2Config

ANTICIPATION_FEATURES = ("encoder", "predictor", "both")  # Table 20's three rows
# How the probe reads "both": the reference's one token sequence, or ours: each stream pooled alone (late), the
# second stream with each token's change from the context's last slice (late_delta).
ANTICIPATION_FUSIONS = ("early", "late", "late_delta")
LATE_FUSIONS = ANTICIPATION_FUSIONS[1:]


@strict(accept_kwargs=True)
class VJEPA2AnticipationConfig(VJEPA2Config):
    r"""Configuration of [`VJEPA2ForActionAnticipation`].

    Args:
        num_verbs (`int`): Verb classes (EK100: 97).
        num_nouns (`int`): Noun classes (EK100: 300).
        num_actions (`int`): Action (verb, noun) classes (EK100: 3806).
        frames_per_second (`float`): Frame rate of the context clip (8, the reference's `frames_per_second`).
        context_frames (`int`): Frames of the context clip (32); a multiple of `tubelet_size`.
        max_frames (`int`): Frame budget of the predictor: context, skipped frames and predicted frames together
            may span at most this many frames (64, the predictor's pretraining clip length in the reference).
        num_output_frames (`int`): Frames the predictor imagines after the skipped ones (2 = one tubelet slice).
        anticipation_features (`str`): Tokens the probe reads: "encoder" (the context's encoder tokens),
            "predictor" (the predicted tokens) or "both" (concatenated along tokens; Table 20).
        anticipation_fusion (`str`): How the probe reads "both": "early" (the reference: one attentive pooler over
            the concatenated tokens) or "late" (ours: a second pooler reads the predicted tokens, each stream is
            pooled alone and every classifier reads the two pooled features concatenated), "late_delta" (ours: late
            fusion whose second pooler reads each predicted token together with its change from the context token
            at its position in the context's last slice, both layer-normed as the pretraining loss compares them,
            channel-concatenated and projected to `hidden_size`). The late fusions need
            `anticipation_features="both"`.
        predictor_mask_index (`int`): Which learnable mask token fills the predicted positions (the reference's
            default, 1).
        focal_alpha (`float`): Weight of positives in the sigmoid focal loss (0.25).
        focal_gamma (`float`): Focusing exponent of the sigmoid focal loss (2).

    The probe is `num_pooler_layers` self-attention blocks (3) plus one cross-attention block from three learnable
    queries (verb, noun, action), `pooler_num_attention_heads` heads (16), and one linear classifier per query.
    """

    model_type = "vjepa2_anticipation"

    num_verbs: int = 97
    num_nouns: int = 300
    num_actions: int = 3806
    frames_per_second: float | int = 8.0
    context_frames: int = 32
    max_frames: int = 64
    num_output_frames: int = 2
    anticipation_features: str = "both"
    anticipation_fusion: str = "early"
    predictor_mask_index: int = 1
    pooler_num_attention_heads: int = 16
    probe_position_embedding: str | None = None
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0

    def validate_architecture(self):
        """Called by `@strict` on construction: the anticipation fields must describe a runnable model."""
        super().validate_architecture()
        for name in ("num_verbs", "num_nouns", "num_actions", "context_frames", "max_frames", "num_output_frames"):
            if getattr(self, name) <= 0:
                raise ValueError(f"VJEPA2AnticipationConfig.{name} must be positive, got {getattr(self, name)}")
        if self.anticipation_features not in ANTICIPATION_FEATURES:
            raise ValueError(
                f"VJEPA2AnticipationConfig.anticipation_features must be one of {ANTICIPATION_FEATURES}, "
                f"got {self.anticipation_features!r}"
            )
        if self.anticipation_fusion not in ANTICIPATION_FUSIONS:
            raise ValueError(
                f"VJEPA2AnticipationConfig.anticipation_fusion must be one of {ANTICIPATION_FUSIONS}, "
                f"got {self.anticipation_fusion!r}"
            )
        if self.anticipation_fusion in LATE_FUSIONS and self.anticipation_features != "both":
            raise ValueError(
                f"VJEPA2AnticipationConfig: anticipation_fusion={self.anticipation_fusion!r} pools the context and the "
                f"predicted tokens separately, so it needs anticipation_features='both', got "
                f"{self.anticipation_features!r}"
            )
        if not self.frames_per_second > 0:
            raise ValueError(f"VJEPA2AnticipationConfig.frames_per_second must be > 0, got {self.frames_per_second}")
        if self.context_frames % self.tubelet_size:
            raise ValueError(
                f"VJEPA2AnticipationConfig.context_frames={self.context_frames} must be a multiple of "
                f"tubelet_size={self.tubelet_size}"
            )
        if self.context_frames + self.output_frames > self.max_frames:
            raise ValueError(
                f"VJEPA2AnticipationConfig: context_frames={self.context_frames} plus {self.output_frames} predicted "
                f"frames exceed max_frames={self.max_frames}"
            )

    @property
    def output_frames(self) -> int:
        """Predicted frames, rounded up to whole tubelets as the reference does (`max(num_output_frames, tubelet)`)."""
        slices = -(-self.num_output_frames // self.tubelet_size)
        return slices * self.tubelet_size

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "VJEPA2AnticipationConfig":
        """An encoder/predictor preset of `PRESETS` with anticipation fields; keyword overrides win."""
        if name not in PRESETS:
            raise ValueError(f"unknown V-JEPA 2 preset {name!r}; expected one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


__all__ = ["ANTICIPATION_FEATURES", "ANTICIPATION_FUSIONS", "LATE_FUSIONS", "VJEPA2AnticipationConfig"]
