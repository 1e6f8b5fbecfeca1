"""Registration of our lmms-eval model through the `lmms_eval.models` entry-point group.

lmms-eval loads every entry point of that group when its model registry is built, so this module stays
import-light: it names the class by its dotted path and lmms-eval imports it only when `--model vjepa2_vlm`
is asked for.

Importing it also gives `HF_HOME` a default: lmms-eval 0.7.3's TempCompass and PerceptionTest (test) task
utils read `os.environ["HF_HOME"]` when they are imported, so an unset `HF_HOME` kills those tasks with
`KeyError: 'HF_HOME'` (and lmms-eval still exits 0). The registry, hence this module, loads before any task.
"""

import os

from huggingface_hub import constants
from lmms_eval.models.registry_v2 import ModelManifest

MODEL_NAME = "vjepa2_vlm"
MODEL_CLASS_PATH = "vjepa_vlm.eval.lmms_model.VJEPA2VLMLmms"


def set_default_hf_home() -> None:
    """Set `HF_HOME`, when unset, to the Hugging Face home huggingface_hub resolves (`~/.cache/huggingface` or
    `$XDG_CACHE_HOME/huggingface`), where lmms-eval's downloads go anyway."""
    os.environ.setdefault("HF_HOME", constants.HF_HOME)


def manifest() -> ModelManifest:
    """The entry point's payload: a simple (non chat-template) lmms-eval model named `vjepa2_vlm`."""
    return ModelManifest(model_id=MODEL_NAME, simple_class_path=MODEL_CLASS_PATH)


set_default_hf_home()
