"""Stage 2 of VLM training: `accelerate launch train/stage2.py [recipe.yaml] [key=value ...]`.

Without a recipe it runs `train/recipes/stage2_tiny.yaml` (the embedded default). Paper recipes:
`train/recipes/stage2_*.yaml`.
"""

from vjepa_vlm.train.run_stage import main

if __name__ == "__main__":
    main("stage2_tiny.yaml")
