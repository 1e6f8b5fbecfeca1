"""Train the goal-conditioned behaviour-cloning baseline on play data and a world model's frozen encoder features.

    python train/train_bc.py bc.world_model=runs/ac_tiny_residual/checkpoints/step_00001200/model
    python train/train_bc.py train/recipes/bc_tiny.yaml bc.world_model=WORLD_MODEL steps=2000

The samples (hindsight goals), the loss and the run directory are described in `vjepa_vlm.train.bc_trainer`; the
policy is evaluated in the simulator by `scripts/eval_planning.py --bc LABEL=RUN/checkpoints/step_*/policy`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vjepa_vlm.train.bc_trainer import load_recipe, train

TINY_RECIPE = Path(__file__).resolve().parent / "recipes" / "bc_tiny.yaml"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", nargs="?", default=None, help=f"recipe YAML (default: {TINY_RECIPE.name})")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. steps=500 bc.world_model=DIR")
    args = parser.parse_args(argv)
    recipe, overrides = args.recipe, list(args.overrides)
    # `train_bc.py steps=5` has no recipe: the first override lands in `recipe`.
    if recipe is not None and "=" in recipe and not Path(recipe).is_file():
        recipe, overrides = None, [recipe, *overrides]
    train(load_recipe(recipe or TINY_RECIPE, overrides))


if __name__ == "__main__":
    sys.exit(main())
