"""Import a research script by file name: `research/` is a folder of scripts, not a package."""

import importlib.util
from pathlib import Path

RESEARCH = Path(__file__).parents[1]


def load_research_module(name: str):
    """The module `research/<name>.py`, executed once per call."""
    spec = importlib.util.spec_from_file_location(name, RESEARCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
