"""Tiny checkpoints, videos and lmms-eval requests for the lmms-eval tests (built offline, in a few seconds)."""

import importlib.util
from pathlib import Path

import numpy as np
import torch
from lmms_eval.api.instance import Instance
from transformers import Qwen2Config

from vjepa_vlm import VJEPA2Config, VJEPA2VLMConfig, VJEPA2VLMForConditionalGeneration, VJEPA2VLMProcessor
from vjepa_vlm.data.tokenizer import train_tiny_tokenizer
from vjepa_vlm.data.video_io import write_video

TASKS_DIR = Path(__file__).resolve().parents[1] / "eval" / "tasks"
CORPUS = [
    "Which action best describes what happens to the red circle? A. B. C. D.",
    "Answer with the option's letter from the given choices directly.",
    "Answer the question using a single word or phrase. How many objects are there? 1 2 3 4",
    "What color is the square? red green blue yellow. Does it get bigger or smaller?",
]


def build_tiny_checkpoint(path: Path, seed: int = 0) -> Path:
    """A random 2-layer encoder + 2-layer Qwen2 VLM at crop 32 with its processor, saved to `path`."""
    tokenizer = train_tiny_tokenizer(CORPUS * 4, vocab_size=320)
    vision = VJEPA2Config(
        crop_size=32, patch_size=16, frames_per_clip=4, hidden_size=32, num_attention_heads=2, num_hidden_layers=2,
        pred_hidden_size=32, pred_num_attention_heads=2, pred_num_hidden_layers=1,
    )
    text = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=2048,
    )
    config = VJEPA2VLMConfig(
        vision_config=vision, text_config=text, image_token_id=tokenizer.image_token_id, video_token_id=tokenizer.video_token_id
    )
    torch.manual_seed(seed)
    model = VJEPA2VLMForConditionalGeneration(config).eval()
    model.save_pretrained(path)
    VJEPA2VLMProcessor.from_model_config(config, tokenizer, num_frames=4).save_pretrained(path)
    return path


def write_random_video(path: Path, frames: int = 12, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    write_video(path, rng.integers(0, 255, (frames, 40, 48, 3), dtype=np.uint8), fps=8.0)
    return path


def make_request(request_type: str, arguments: tuple, task: str, doc_id: int) -> Instance:
    return Instance(request_type=request_type, arguments=arguments, idx=0, metadata={"task": task, "doc_id": doc_id, "repeats": 1})


def visual_of(doc: dict) -> list:
    """A task's `doc_to_visual` for the hand-made documents of these tests."""
    return list(doc["visuals"])


def load_task_utils():
    """The local tasks' `eval/tasks/utils.py`, loaded by path as lmms-eval loads it (`!function utils.x`)."""
    spec = importlib.util.spec_from_file_location("vjepa_synth_task_utils", TASKS_DIR / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
