"""Imports point one way: the building blocks (`vision/`, `data/`) never import the models of `vjepa_vlm`.

`vision` may import `vision` and `data`; `data` may import only `data`. Checked on the source with `ast`, so an
import inside a function counts as much as one at the top, and relative imports are resolved.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {"vision": ("vjepa_vlm.vision", "vjepa_vlm.data"), "data": ("vjepa_vlm.data",)}


def imported_modules(source: str, package: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in `source`, a module of `package`.

    `from vjepa_vlm import x` counts as importing `vjepa_vlm.x`: the package re-exports its models by name.
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module) if part)
            found += [(node.lineno, f"{module}.{alias.name}" if module == "vjepa_vlm" else module) for alias in node.names]
    return sorted(set(found))


def layer_violations(layer: str) -> list[str]:
    violations = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        package = ".".join(("vjepa_vlm", *path.relative_to(ROOT).parent.parts))
        for line, module in imported_modules(path.read_text(), package):
            if module.split(".")[0] == "vjepa_vlm" and not module.startswith(ALLOWED[layer]):
                violations.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return violations


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_building_blocks_do_not_import_the_layers_above(layer):
    violations = layer_violations(layer)
    assert not violations, f"{layer}/ may import only {ALLOWED[layer]}:\n" + "\n".join(violations)


def test_the_check_resolves_nested_package_and_relative_imports():
    source = (
        "import torch\n"
        "from vjepa_vlm import processing_vjepa2_vlm\n"
        "def f():\n"
        "    from ..modeling_vjepa2 import VJEPA2Model\n"
        "    from .rope import apply_rope\n"
    )
    assert imported_modules(source, "vjepa_vlm.vision") == [
        (1, "torch"),
        (2, "vjepa_vlm.processing_vjepa2_vlm"),
        (4, "vjepa_vlm.modeling_vjepa2"),
        (5, "vjepa_vlm.vision.rope"),
    ]
