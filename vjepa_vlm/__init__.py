"""vjepa-vlm: V-JEPA 2 encoders, pretraining, probes and VLM alignment as Hugging Face models.

Importing the package registers our V-JEPA 2 classes for model type "vjepa2" with transformers' Auto classes, so
`AutoModel.from_pretrained(dir)` returns our `VJEPA2Model` (a drop-in for transformers' own).
"""

from transformers import AutoConfig, AutoModel

from vjepa_vlm.configuration_vjepa2 import PRESETS, VJEPA2Config
from vjepa_vlm.modeling_vjepa2 import VJEPA2Model, VJEPA2ModelOutput, VJEPA2PreTrainedModel

__version__ = "0.1.0"

AutoConfig.register("vjepa2", VJEPA2Config, exist_ok=True)
AutoModel.register(VJEPA2Config, VJEPA2Model, exist_ok=True)

__all__ = ["PRESETS", "VJEPA2Config", "VJEPA2Model", "VJEPA2ModelOutput", "VJEPA2PreTrainedModel"]

# Video-language model (issue 5): model type "vjepa2_vlm" for AutoConfig / AutoModel(ForImageTextToText) / AutoProcessor.
from transformers import AutoModelForImageTextToText, AutoProcessor  # noqa: E402

from vjepa_vlm.configuration_vjepa2_vlm import VJEPA2VLMConfig  # noqa: E402
from vjepa_vlm.modeling_vjepa2_vlm import VJEPA2VLMForConditionalGeneration, VJEPA2VLMModel  # noqa: E402
from vjepa_vlm.processing_vjepa2_vlm import VJEPA2VLMProcessor  # noqa: E402

AutoConfig.register("vjepa2_vlm", VJEPA2VLMConfig, exist_ok=True)
AutoModel.register(VJEPA2VLMConfig, VJEPA2VLMModel, exist_ok=True)
AutoModelForImageTextToText.register(VJEPA2VLMConfig, VJEPA2VLMForConditionalGeneration, exist_ok=True)
AutoProcessor.register(VJEPA2VLMConfig, VJEPA2VLMProcessor, exist_ok=True)
__all__ += ["VJEPA2VLMConfig", "VJEPA2VLMForConditionalGeneration", "VJEPA2VLMModel", "VJEPA2VLMProcessor"]

# Attentive-probe classifier (issue 4): AutoModelForVideoClassification for model type "vjepa2".
from transformers import AutoModelForVideoClassification  # noqa: E402

from vjepa_vlm.modeling_vjepa2_probe import VJEPA2ForVideoClassification  # noqa: E402

AutoModelForVideoClassification.register(VJEPA2Config, VJEPA2ForVideoClassification, exist_ok=True)
__all__ += ["VJEPA2ForVideoClassification"]

# V-JEPA 2-AC (issue 19): the action-conditioned predictor ("vjepa2_ac") and the world model ("vjepa2_world_model").
from vjepa_vlm.configuration_vjepa2_ac import VJEPA2ACConfig, VJEPA2WorldModelConfig  # noqa: E402
from vjepa_vlm.modeling_vjepa2_ac import VJEPA2ACPredictor, VJEPA2WorldModel  # noqa: E402

AutoConfig.register("vjepa2_ac", VJEPA2ACConfig, exist_ok=True)
AutoConfig.register("vjepa2_world_model", VJEPA2WorldModelConfig, exist_ok=True)
AutoModel.register(VJEPA2ACConfig, VJEPA2ACPredictor, exist_ok=True)
AutoModel.register(VJEPA2WorldModelConfig, VJEPA2WorldModel, exist_ok=True)
__all__ += ["VJEPA2ACConfig", "VJEPA2ACPredictor", "VJEPA2WorldModel", "VJEPA2WorldModelConfig"]

# Action anticipation (issue 22): model type "vjepa2_anticipation" for AutoConfig / AutoModel.
from vjepa_vlm.configuration_vjepa2_anticipation import VJEPA2AnticipationConfig  # noqa: E402
from vjepa_vlm.modeling_vjepa2_anticipation import VJEPA2ForActionAnticipation  # noqa: E402

AutoConfig.register("vjepa2_anticipation", VJEPA2AnticipationConfig, exist_ok=True)
AutoModel.register(VJEPA2AnticipationConfig, VJEPA2ForActionAnticipation, exist_ok=True)
__all__ += ["VJEPA2AnticipationConfig", "VJEPA2ForActionAnticipation"]

# Frame decoder (issue 21): model type "vjepa2_frame_decoder" for AutoConfig / AutoModel.
from vjepa_vlm.configuration_vjepa2_frame_decoder import VJEPA2FrameDecoderConfig  # noqa: E402
from vjepa_vlm.modeling_vjepa2_frame_decoder import VJEPA2FrameDecoder  # noqa: E402

AutoConfig.register("vjepa2_frame_decoder", VJEPA2FrameDecoderConfig, exist_ok=True)
AutoModel.register(VJEPA2FrameDecoderConfig, VJEPA2FrameDecoder, exist_ok=True)
__all__ += ["VJEPA2FrameDecoder", "VJEPA2FrameDecoderConfig"]
