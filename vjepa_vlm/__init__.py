"""vjepa-vlm: V-JEPA 2 encoders, pretraining, probes and VLM alignment as Hugging Face models."""

__version__ = "0.1.0"
