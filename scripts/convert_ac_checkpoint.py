"""Convert Meta's V-JEPA 2-AC checkpoint (`vjepa2-ac-vitg.pt`) into a Hugging Face world-model folder.

    python scripts/convert_ac_checkpoint.py --preset vjepa2-ac-vitg --checkpoint vjepa2-ac-vitg.pt --out vjepa2-ac-vitg

The folder loads with `VJEPA2WorldModel.from_pretrained(...)` (or `AutoModel` after `import vjepa_vlm`); its
`predictor` part also loads alone into `VJEPA2ACPredictor`. Without `--checkpoint`, random weights of the preset are
written, for smoke tests only.
"""

import argparse
import sys
from pathlib import Path

import torch

from vjepa_vlm import VJEPA2WorldModel, VJEPA2WorldModelConfig
from vjepa_vlm.configuration_vjepa2_ac import WORLD_MODEL_PRESETS
from vjepa_vlm.convert_vjepa2 import check_against_model
from vjepa_vlm.convert_vjepa2_ac import convert_meta_ac_checkpoint
from vjepa_vlm.scripts.convert_checkpoint import RANDOM_WEIGHTS_BANNER, load_meta_checkpoint, save_atomically


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", required=True, choices=sorted(WORLD_MODEL_PRESETS), help="architecture")
    parser.add_argument("--checkpoint", type=Path, help="Meta .pt file (dict with 'encoder' and 'predictor')")
    parser.add_argument("--out", type=Path, required=True, help="output directory (must not exist unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights when no checkpoint is given")
    return parser.parse_args(argv)


def build_model(args: argparse.Namespace) -> VJEPA2WorldModel:
    config = VJEPA2WorldModelConfig.from_preset(args.preset)
    if args.checkpoint is None:
        print(RANDOM_WEIGHTS_BANNER.format(preset=args.preset), file=sys.stderr)
        torch.manual_seed(args.seed)
        return VJEPA2WorldModel(config)
    checkpoint = load_meta_checkpoint(args.checkpoint)
    state_dict = convert_meta_ac_checkpoint(checkpoint, use_extrinsics=config.predictor_config.use_extrinsics)
    with torch.device("meta"):
        skeleton = VJEPA2WorldModel(config)
    check_against_model(state_dict, skeleton.state_dict(), config.encoder_config)
    model = VJEPA2WorldModel(config)
    model.load_state_dict(state_dict, strict=True)
    return model


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    model = build_model(args)
    save_atomically(model, args.out, args.overwrite)
    count = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.preset} ({count:,} parameters) from {args.checkpoint or 'RANDOM WEIGHTS'} to {args.out}")


if __name__ == "__main__":
    main()
