"""Stage 1.5 of VLM training: `accelerate launch train/stage1_5.py [recipe.yaml] [key=value ...]`.

Without a recipe it runs `train/recipes/stage1_5_tiny.yaml` (the embedded default). Paper recipes:
`train/recipes/stage1_5_*.yaml`.
"""

from vjepa_vlm.train.run_stage import main

if __name__ == "__main__":
    main("stage1_5_tiny.yaml")
