"""Where the pretraining loss lives: the predictor's L1 error on target tokens that hold moving pixels vs static ones.

    python research/diagnose_pretrain_loss.py --world WORLD STEP_DIR [STEP_DIR ...]

Each STEP_DIR is a pretraining checkpoint (`online/` and `target/`). On the first `--clips` training clips of the
synthetic world's motion task (the probe's sampling: `--frames` frames, `--frame-step` apart, `--resolution` px),
draws the default multiblock masks, predicts the targets with the online encoder + predictor, and prints one JSON
line per checkpoint: the fraction of target tokens that are moving, the mean L1 error on moving and static target
tokens (against the EMA target's layer-normed features, as in the objective), and the moving tokens' share of the
summed error. A share near the moving fraction means the loss, hence the gradient, is mostly about the background.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from vjepa_vlm import VJEPA2Model
from vjepa_vlm.eval.probe import ProbeArgs
from vjepa_vlm.modeling_vjepa2 import gather_tokens
from vjepa_vlm.vision.masking import MultiBlockMaskGenerator

# The clip loading and moving-pixel test are those of the probe-feature diagnostics, so both scripts see the same
# tokens as moving.
_spec = importlib.util.spec_from_file_location("diagnose_probe_features", Path(__file__).with_name("diagnose_probe_features.py"))
probe_diagnostics = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probe_diagnostics)


@torch.no_grad()
def loss_split(step_dir: Path, clips: torch.Tensor, batch_size: int = 16) -> dict:
    online = VJEPA2Model.from_pretrained(step_dir / "online").eval()
    target = VJEPA2Model.from_pretrained(step_dir / "target").eval()
    config = online.config
    grid = online.encoder.grid_size(clips[:1])
    moving = probe_diagnostics.moving_token_mask(clips, config.tubelet_size, config.patch_size) > 0
    errors = {True: [], False: []}
    for start in range(0, len(clips), batch_size):
        batch = clips[start : start + batch_size]
        features = target.encoder(batch).last_hidden_state
        targets = F.layer_norm(features, (features.shape[-1],))
        masks = MultiBlockMaskGenerator(grid)(len(batch), torch.Generator().manual_seed(start))
        for mask_index, mask in enumerate(masks):
            context, target_indices = mask["context_indices"], mask["target_indices"]
            encoded = online.encoder(batch, context_indices=context)
            predicted = online.predictor(
                encoded.last_hidden_state, context, target_indices, encoded.grid_size, mask_index=mask_index
            )
            error = (predicted - gather_tokens(targets, target_indices)).abs().mean(-1)
            is_moving = torch.gather(moving[start : start + batch_size], 1, target_indices)
            for flag in (True, False):
                errors[flag].append(error[is_moving == flag])
    moving_error, static_error = torch.cat(errors[True]), torch.cat(errors[False])
    return {
        "dir": str(step_dir),
        "moving_token_fraction": len(moving_error) / (len(moving_error) + len(static_error)),
        "l1_moving": float(moving_error.mean()),
        "l1_static": float(static_error.mean()),
        "moving_share_of_loss": float(moving_error.sum() / (moving_error.sum() + static_error.sum())),
    }


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step_dirs", type=Path, nargs="+")
    parser.add_argument("--world", type=Path, required=True)
    parser.add_argument("--clips", type=int, default=160)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--frame-step", type=int, default=2)
    parser.add_argument("--resolution", type=int, default=64)
    args = parser.parse_args(argv)
    probe_args = ProbeArgs(
        num_frames=args.frames, frame_step=args.frame_step, num_segments=1, num_views=1, resolution=args.resolution
    )
    clips, _ = probe_diagnostics.load_split(args.world, "train", probe_args, limit=args.clips)
    results = []
    for step_dir in args.step_dirs:
        results.append(loss_split(step_dir, clips))
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in results[-1].items()}), flush=True)
    return results


if __name__ == "__main__":
    main()
