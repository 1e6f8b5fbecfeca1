"""Typed training configs: dataclass defaults <- YAML file <- `key=value` command-line overrides.

Every entry point composes its config from the dataclasses of the modules it uses (`OptimArgs`,
`CheckpointArgs`, ...). Loading is strict: an unknown key or a value of the wrong type is an error
that names the key. `validate_config` runs every section's `validate()` and reports all problems at
once; `save_config` writes the resolved config next to a checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def _strip_optional(hint):
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return hint, False


def _coerce(value: Any, hint, key: str) -> Any:
    hint, optional = _strip_optional(hint)
    if value is None:
        if optional or hint is Any:
            return None
        raise ValueError(f"config key '{key}' may not be null")
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"config key '{key}' must be a mapping of {hint.__name__} fields, got {value!r}")
        return _build(hint, value, key)
    origin = typing.get_origin(hint)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"config key '{key}' must be a list, got {value!r}")
        args = typing.get_args(hint)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ValueError(f"config key '{key}' must have {len(args)} items, got {len(value)}")
            return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ValueError(f"config key '{key}' must be a mapping, got {value!r}")
        return dict(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads "1e-4" as a string
        except ValueError:
            pass
    if hint in (bool, int, float, str) and not (isinstance(value, hint) and not (hint is int and isinstance(value, bool))):
        raise ValueError(f"config key '{key}' must be {hint.__name__}, got {type(value).__name__} {value!r}")
    return value


def _build(cls: type[T], values: dict, prefix: str = "") -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        where = f"'{prefix}'" if prefix else "the top level"
        raise ValueError(f"unknown config key(s) {unknown} in {where}; valid keys: {sorted(fields)}")
    kwargs = {name: _coerce(v, hints[name], f"{prefix}.{name}" if prefix else name) for name, v in values.items()}
    return cls(**kwargs)


def _merge(base: dict, update: dict) -> dict:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_overrides(overrides: list[str]) -> dict:
    """Turn ["optim.lr=1e-3", "steps=10"] into a nested dict; values are parsed as YAML scalars/lists."""
    nested: dict = {}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value (e.g. optim.lr=1e-3)")
        key, raw = item.split("=", 1)
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(raw)
    return nested


def config_to_dict(config) -> dict:
    """Plain dict (tuples as lists) of a config dataclass, ready for YAML or JSON."""

    def plain(value):
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def flatten_config(tree: dict, prefix: str = "") -> dict:
    """`{"optim": {"lr": 1}}` as `{"optim.lr": 1}` (empty sections stay as leaves)."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(flatten_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def load_config(cls: type[T], path: str | os.PathLike | None = None, overrides: list[str] = ()) -> T:
    """Build `cls` from its defaults, then the YAML file at `path`, then `key=value` overrides.

    Args:
        cls: the top-level config dataclass.
        path: optional YAML file; its keys must be fields of `cls` (nested sections as mappings).
        overrides: `dotted.key=value` strings applied last.
    """
    values = config_to_dict(cls())
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"config file {path} must hold a mapping at the top level, got {type(loaded).__name__}")
        try:
            _build(cls, loaded)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
        values = _merge(values, loaded)
    values = _merge(values, parse_overrides(list(overrides)))
    return _build(cls, values)


def parse_recipe_cli(argv: list[str] | None, description: str, default: str) -> tuple[str | None, list[str]]:
    """`ENTRY [recipe.yaml] [key=value ...]`: the recipe path (None: the entry point's default) and the overrides.

    Args:
        argv: the command-line arguments (None: `sys.argv[1:]`).
        description: the entry point's help text (its module docstring).
        default: what the recipe defaults to, for the help text.
    """
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", nargs="?", default=None, help=f"recipe YAML (default: {default})")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. steps=50 optim.lr=1e-3")
    args = parser.parse_args(argv)
    recipe, overrides = args.recipe, list(args.overrides)
    # `ENTRY steps=5` has no recipe: argparse puts the first override in `recipe`.
    if recipe is not None and "=" in recipe and not Path(recipe).is_file():
        recipe, overrides = None, [recipe, *overrides]
    return recipe, overrides


def config_class_for(path: str | os.PathLike, base: type, by_section: dict[str, type]) -> type:
    """The config class of a recipe file: `by_section[name]` if the file has a top-level `name:` section, else
    `base`. An entry point's tiny recipes opt into their demo data this way (e.g. `synthetic_world:`), so the
    product config never carries it."""
    path = Path(path)
    loaded = yaml.safe_load(path.read_text()) if path.is_file() else None
    sections = set(loaded) if isinstance(loaded, dict) else set()
    return next((cls for name, cls in by_section.items() if name in sections), base)


def validate_config(config) -> None:
    """Run `validate()` of every (nested) config section; raise one ValueError listing every problem."""
    errors: list[str] = []

    def visit(node):
        if dataclasses.is_dataclass(node):
            if hasattr(node, "validate"):
                errors.extend(node.validate() or [])  # some sections raise instead of listing
            for field in dataclasses.fields(node):
                visit(getattr(node, field.name))
        elif isinstance(node, (list, tuple)):
            for item in node:
                visit(item)

    visit(config)
    if errors:
        raise ValueError("invalid config:\n  - " + "\n  - ".join(errors))


def save_config(config, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML, atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as handle:
        yaml.safe_dump(config_to_dict(config), handle, sort_keys=False)
    os.replace(handle.name, path)
