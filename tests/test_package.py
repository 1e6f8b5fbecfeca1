import ast
import importlib
import inspect
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from vjepa_vlm.scripts import command

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
COMMANDS = PYPROJECT["project"]["scripts"]
# The folders setuptools maps under `vjepa_vlm` (package-dir in pyproject.toml): what a wheel is built from.
PACKAGE_DIRS = sorted(set(PYPROJECT["tool"]["setuptools"]["package-dir"].values()))
PRODUCT_DIRS = [*PACKAGE_DIRS, "tests"]


def test_subpackages_are_mapped_under_the_import_root():
    for name in ("vision", "data", "eval", "train", "scripts"):
        module = importlib.import_module(f"vjepa_vlm.{name}")
        assert module.__name__ == f"vjepa_vlm.{name}"


def test_product_commands_are_declared():
    expected = {"vjepa-convert", "vjepa-make-world", "vjepa-baselines", "vjepa-pretrain", "vjepa-probe", "vjepa-eval",
                "vjepa-pipeline", "vjepa-demo"}
    assert expected <= set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_resolves_to_a_callable_over_a_main_taking_argv(name):
    module_name, attribute = COMMANDS[name].split(":")
    entry = getattr(importlib.import_module(module_name), attribute)
    assert callable(entry) and not inspect.signature(entry).parameters
    program = importlib.import_module(entry.program)
    assert "argv" in inspect.signature(program.main).parameters


def test_a_command_passes_argv_and_exits_zero_when_main_returns_results(tmp_path, monkeypatch):
    # Programs return their results for tests; `sys.exit(results)` would print them and exit 1.
    (tmp_path / "results_program.py").write_text("def main(argv):\n    return {'argv': argv}\n")
    (tmp_path / "status_program.py").write_text("def main(argv):\n    return 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["results-program", "--out", "x"])
    assert command("results_program")() == 0
    assert importlib.import_module("results_program").main(sys.argv[1:]) == {"argv": ["--out", "x"]}
    assert command("status_program")() == 2


def test_an_installed_command_runs():
    script = Path(sys.executable).with_name("vjepa-make-world")
    if not script.exists():
        pytest.fail(f"{script} is missing: reinstall the package (pip install -e .) after changing [project.scripts]")
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "--out" in result.stdout


def test_no_product_module_or_test_imports_research_code():
    research = {"research"} | {p.stem for p in (REPO / "research").glob("*.py")}
    offenders = []
    for folder in PRODUCT_DIRS:
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                offenders += [f"{path.relative_to(REPO)}: {n}" for n in names if n.split(".")[0] in research]
                if isinstance(node, ast.Call) and "spec_from_file_location" in ast.unparse(node.func):
                    if "research" in ast.unparse(node):
                        offenders.append(f"{path.relative_to(REPO)}: loads {ast.unparse(node.args[1])}")
    assert not offenders


@pytest.mark.slow
def test_wheel_holds_the_commands_modules_and_the_yaml_data(tmp_path):
    # Built from a copy, so the build's egg-info and build/ folders stay out of the checkout.
    source = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for folder in PACKAGE_DIRS:
        shutil.copytree(REPO / folder, source / folder, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    # Build isolation, as a user's `pip wheel` does: setuptools comes from pyproject's build requirements.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"),
                    str(source)], check=True, timeout=600)
    (wheel,) = (tmp_path / "dist").glob("vjepa_vlm-*.whl")
    files = set(zipfile.ZipFile(wheel).namelist())
    for name in COMMANDS.values():
        module, attribute = name.split(":")
        program = getattr(importlib.import_module(module), attribute).program
        assert program.replace(".", "/") + ".py" in files
    programs = {f"vjepa_vlm/scripts/{p.name}" for p in (REPO / "scripts").glob("*.py")}
    assert programs <= files
    recipes = {f"vjepa_vlm/train/recipes/{p.name}" for p in (REPO / "train" / "recipes").glob("*.yaml")}
    tasks = {f"vjepa_vlm/eval/tasks/{p.name}" for p in (REPO / "eval" / "tasks").glob("*.yaml")}
    launch = {f"vjepa_vlm/train/{p.name}" for p in (REPO / "train").glob("*.yaml")}
    assert recipes and tasks and launch and (recipes | tasks | launch) <= files
    assert not any(f.startswith(("research/", "tests/", "vjepa_vlm/research")) for f in files)
    (entry_points,) = [f for f in files if f.endswith(".dist-info/entry_points.txt")]
    declared = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert all(f"{name} = {target}" in declared for name, target in COMMANDS.items())
