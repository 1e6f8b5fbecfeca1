"""Convert a Meta V-JEPA 2 `.pt` checkpoint into a Hugging Face directory (`config.json` + safetensors).

    python scripts/convert_checkpoint.py --preset vjepa2-vitg --checkpoint vitg.pt --out vjepa2-vitg

The directory loads with `AutoModel.from_pretrained("vjepa2-vitg")` after `import vjepa_vlm` (our model) and in plain
transformers (its `VJEPA2Model`). Without `--checkpoint`, random weights of the preset's architecture are written, for
smoke tests only.
"""

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from vjepa_vlm import PRESETS, VJEPA2Config, VJEPA2Model
from vjepa_vlm.convert_vjepa2 import check_against_model, convert_meta_checkpoint

RANDOM_WEIGHTS_BANNER = """
#####################################################################
#  NO --checkpoint GIVEN: writing RANDOM WEIGHTS for {preset}.
#  This directory is for smoke tests only; its features are noise.
#####################################################################
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", required=True, choices=sorted(PRESETS), help="architecture of the checkpoint")
    parser.add_argument("--checkpoint", type=Path, help="Meta .pt file (dict with encoder/target_encoder/predictor)")
    parser.add_argument("--out", type=Path, required=True, help="output directory (must not exist unless --overwrite)")
    parser.add_argument(
        "--encoder-key", default="target_encoder", choices=("target_encoder", "encoder"),
        help="which encoder of the checkpoint to keep (the EMA target encoder is the one the paper evaluates)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights when no checkpoint is given")
    return parser.parse_args(argv)


def load_meta_checkpoint(path: Path) -> dict:
    """The dict of state dicts in a Meta `.pt` file, loaded without executing pickled code."""
    if not path.is_file():
        raise FileNotFoundError(f"--checkpoint {path} does not exist")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path} holds a {type(checkpoint).__name__}, expected a dict of state dicts")
    return checkpoint


def build_model(args: argparse.Namespace) -> VJEPA2Model:
    config = VJEPA2Config.from_preset(args.preset)
    if args.checkpoint is None:
        print(RANDOM_WEIGHTS_BANNER.format(preset=args.preset), file=sys.stderr)
        torch.manual_seed(args.seed)
        return VJEPA2Model(config)
    checkpoint = load_meta_checkpoint(args.checkpoint)
    state_dict = convert_meta_checkpoint(checkpoint, encoder_key=args.encoder_key)
    with torch.device("meta"):
        skeleton = VJEPA2Model(config)
    check_against_model(state_dict, skeleton.state_dict(), config)
    model = VJEPA2Model(config)
    model.load_state_dict(state_dict, strict=True)
    return model


def save_atomically(model: VJEPA2Model, out: Path, overwrite: bool) -> None:
    """Write into a temporary sibling directory, then rename it into place so `out` is never half-written."""
    if out.exists() and not overwrite:
        raise FileExistsError(f"--out {out} already exists; pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(staging)
        if out.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, retired / out.name)
            os.replace(staging, out)
            shutil.rmtree(retired)
        else:
            os.replace(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    model = build_model(args)
    save_atomically(model, args.out, args.overwrite)
    source = args.checkpoint or "RANDOM WEIGHTS"
    count = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.preset} ({count:,} parameters) from {source} to {args.out}")


if __name__ == "__main__":
    main()
