"""The tiny labelled world and untrained encoder the anticipation studies' tests run on."""

from pathlib import Path

import torch
from vjepa_vlm.data.synthetic_world import generate_world

from vjepa_vlm import VJEPA2Config, VJEPA2Model

TINY = {"hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4, "patch_size": 16, "pred_hidden_size": 32,
        "pred_num_attention_heads": 4, "pred_num_hidden_layers": 1}


def make_world_and_encoder(root: Path) -> Path:
    """`root/world` (24 train, 8 test clips of 32 frames with anticipation events) and `root/encoder`; returns root."""
    generate_world(root / "world", n_train=24, n_test=8, seed=0, frames=32, size=64, fps=8.0,
                   motions=("bounce", "start", "stop", "push", "collide"), anticipation_s=0.5)
    torch.manual_seed(0)
    VJEPA2Model(VJEPA2Config(**TINY)).save_pretrained(root / "encoder")
    return root
