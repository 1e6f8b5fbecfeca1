"""Train the V-JEPA 2-AC world model: a frozen encoder and an action-conditioned predictor, on robot video.

    python train/train_ac.py                                   # tiny recipe: Fetch play data, recorded if absent
    python train/train_ac.py train/recipes/ac_tiny.yaml steps=200 data.cache_features=true
    accelerate launch train/train_ac.py train/recipes/ac_vitg.yaml data.root=DROID_LEROBOT model.encoder=VITG_DIR

Any dataset in the LeRobot v3.0 layout works: `data.root`, `data.camera_key`, `data.state_key` /
`data.action_key` and `data.state_dim` / `data.action_dim` say where its frames, states and actions are.
The loss, the cache and the run directory are described in `vjepa_vlm.train.ac_trainer`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from vjepa_vlm.train.ac_trainer import load_recipe, train
from vjepa_vlm.train.config import parse_recipe_cli

TINY_RECIPE = Path(__file__).resolve().parent / "recipes" / "ac_tiny.yaml"


def main(argv: list[str] | None = None) -> None:
    recipe, overrides = parse_recipe_cli(argv, __doc__, TINY_RECIPE.name)
    train(load_recipe(recipe or TINY_RECIPE, overrides))


if __name__ == "__main__":
    sys.exit(main())
