"""Registration of our lmms-eval model through the `lmms_eval.models` entry-point group.

lmms-eval loads every entry point of that group when its model registry is built, so this module stays
import-light: it names the class by its dotted path and lmms-eval imports it only when `--model vjepa2_vlm`
is asked for.
"""

from lmms_eval.models.registry_v2 import ModelManifest

MODEL_NAME = "vjepa2_vlm"
MODEL_CLASS_PATH = "vjepa_vlm.eval.lmms_model.VJEPA2VLMLmms"


def manifest() -> ModelManifest:
    """The entry point's payload: a simple (non chat-template) lmms-eval model named `vjepa2_vlm`."""
    return ModelManifest(model_id=MODEL_NAME, simple_class_path=MODEL_CLASS_PATH)
