import importlib


def test_subpackages_are_mapped_under_the_import_root():
    for name in ("vision", "data", "eval", "train"):
        module = importlib.import_module(f"vjepa_vlm.{name}")
        assert module.__name__ == f"vjepa_vlm.{name}"
