"""Shared fixtures of the V-JEPA 2 tests: tiny configs and our model next to transformers' with identical weights."""

import torch
import transformers

from vjepa_vlm import VJEPA2Config, VJEPA2Model

torch.set_num_threads(2)


def tiny_config(**overrides) -> VJEPA2Config:
    return VJEPA2Config.from_preset("vjepa2-tiny", **overrides)


def randomize_(model: torch.nn.Module, seed: int = 0, scale: float = 0.1) -> torch.nn.Module:
    """Replace every parameter by noise so that each one (mask tokens, biases, norms) affects the outputs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            noise = torch.randn(param.shape, generator=generator) * scale
            is_norm_weight = ("norm" in name) and name.endswith("weight")
            param.copy_(noise + 1.0 if is_norm_weight else noise)
    return model


def twin_models(config: VJEPA2Config, seed: int = 0) -> tuple[VJEPA2Model, transformers.VJEPA2Model]:
    """Our model and transformers' `VJEPA2Model` (the oracle), in eval mode, with the same random weights."""
    ours = randomize_(VJEPA2Model(config), seed).eval()
    reference = transformers.VJEPA2Model(transformers.VJEPA2Config.from_dict(config.to_dict())).eval()
    reference.load_state_dict(ours.state_dict(), strict=True)
    return ours, reference


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def random_clip(batch: int = 2, frames: int = 4, height: int = 64, width: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, frames, 3, height, width, generator=torch.Generator().manual_seed(seed))


def random_split(batch: int, num_tokens: int, num_context: int, num_target: int, seed: int = 0):
    """Disjoint random `(B, Nc)` context and `(B, Nt)` target indices per sample."""
    generator = torch.Generator().manual_seed(seed)
    perms = torch.stack([torch.randperm(num_tokens, generator=generator) for _ in range(batch)])
    return perms[:, :num_context], perms[:, num_context : num_context + num_target]
