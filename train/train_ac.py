"""Train the V-JEPA 2-AC world model: a frozen encoder and an action-conditioned predictor, on robot video.

    python train/train_ac.py                                   # tiny recipe: Fetch play data, recorded if absent
    python train/train_ac.py train/recipes/ac_tiny.yaml steps=200 data.cache_features=true
    accelerate launch train/train_ac.py train/recipes/ac_vitg.yaml data.root=DROID_LEROBOT model.encoder=VITG_DIR

Any dataset in the LeRobot v3.0 layout works: `data.root`, `data.camera_key`, `data.state_key` /
`data.action_key` and `data.state_dim` / `data.action_dim` say where its frames, states and actions are.
The loss, the cache and the run directory are described in `vjepa_vlm.train.ac_trainer`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vjepa_vlm.train.ac_trainer import load_recipe, train

TINY_RECIPE = Path(__file__).resolve().parent / "recipes" / "ac_tiny.yaml"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", nargs="?", default=None, help=f"recipe YAML (default: {TINY_RECIPE.name})")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. steps=50 data.batch_size=4")
    args = parser.parse_args(argv)
    recipe, overrides = args.recipe, list(args.overrides)
    # `train_ac.py steps=5` has no recipe: the first override lands in `recipe`.
    if recipe is not None and "=" in recipe and not Path(recipe).is_file():
        recipe, overrides = None, [recipe, *overrides]
    train(load_recipe(recipe or TINY_RECIPE, overrides))


if __name__ == "__main__":
    sys.exit(main())
