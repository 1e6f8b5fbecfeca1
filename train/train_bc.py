"""Train the goal-conditioned behaviour-cloning baseline on play data and a world model's frozen encoder features.

    python train/train_bc.py bc.world_model=runs/ac_tiny_residual/checkpoints/step_00001200/model
    python train/train_bc.py train/recipes/bc_tiny.yaml bc.world_model=WORLD_MODEL steps=2000

The samples (hindsight goals), the loss and the run directory are described in `vjepa_vlm.train.bc_trainer`; the
policy is evaluated in the simulator by `scripts/eval_planning.py --bc LABEL=RUN/checkpoints/step_*/policy`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from vjepa_vlm.train.bc_trainer import load_recipe, train
from vjepa_vlm.train.config import parse_recipe_cli

TINY_RECIPE = Path(__file__).resolve().parent / "recipes" / "bc_tiny.yaml"


def main(argv: list[str] | None = None) -> None:
    recipe, overrides = parse_recipe_cli(argv, __doc__, TINY_RECIPE.name)
    train(load_recipe(recipe or TINY_RECIPE, overrides))


if __name__ == "__main__":
    sys.exit(main())
