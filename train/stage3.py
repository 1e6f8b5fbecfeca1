"""Stage 3 of VLM training: `accelerate launch train/stage3.py [recipe.yaml] [key=value ...]`.

Without a recipe it runs `train/recipes/stage3_tiny.yaml` (the embedded default). Paper recipes:
`train/recipes/stage3_*.yaml`.
"""

from vjepa_vlm.train.run_stage import main

if __name__ == "__main__":
    main("stage3_tiny.yaml")
