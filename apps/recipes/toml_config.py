"""Recipe configs as data: TOML files of sections, changed by ``key=value`` overrides.

A recipe config is a TOML file with one table per part of the recipe (``[model]``,
``[data]``, ``[train]``, ...). Overrides from the command line name a field as
``section.field=value`` (or just ``field=value`` when only one section has that field); the value
is read as a TOML literal (``lr=3e-4``, ``augment=trivialaugment``, ``crop_scale=[0.5, 1.0]``),
and anything that is not valid TOML is kept as a string.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["CONFIG_DIR", "apply_overrides", "list_recipe_configs", "parse_override", "read_recipe_config"]

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def list_recipe_configs() -> list[str]:
    """Names of the configs shipped in ``apps/recipes/configs``."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))


def read_recipe_config(name_or_path: str | Path, overrides: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """Read a shipped config by name (e.g. ``"fashion_mnist_embedded"``) or a TOML file, then apply overrides.

    Raises:
        FileNotFoundError: neither a shipped config nor a file of that name.
        ValueError: invalid TOML, or an override that names no known field.
    """
    path = Path(name_or_path)
    if not path.is_file():
        path = CONFIG_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise FileNotFoundError(
            f"recipe config {name_or_path!r} not found: give a TOML file or one of {list_recipe_configs()}"
        )
    try:
        config = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"cannot read recipe config {path}: {err}") from err
    return apply_overrides(config, overrides)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=3e-4"`` -> (["train", "lr"], 0.0003); the value is a TOML literal or else a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"override {text!r} is not key=value (e.g. train.lr=3e-4)")
    try:
        value = tomllib.loads(f"value = {raw.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.strip().split("."), value


def apply_overrides(config: dict[str, dict[str, Any]], overrides: Sequence[str]) -> dict[str, dict[str, Any]]:
    """A copy of ``config`` with every ``key=value`` override applied.

    A key without a section must name a field of exactly one section. A dotted key may add a new
    field to an existing section (e.g. a model config field the file does not list).

    Raises:
        ValueError: a malformed override, an unknown section, or an ambiguous or unknown bare key.
    """
    config = copy.deepcopy(config)
    for text in overrides:
        path, value = parse_override(text)
        if len(path) == 1:
            sections = [name for name, table in config.items() if isinstance(table, dict) and path[0] in table]
            if len(sections) != 1:
                where = f"is in sections {sections}" if sections else "is not a field of any section"
                raise ValueError(
                    f"override {text!r}: {path[0]!r} {where}; write it as section.{path[0]}=... ({sorted(config)})"
                )
            path = [sections[0], path[0]]
        if path[0] not in config or not isinstance(config[path[0]], dict):
            raise ValueError(f"override {text!r}: no section {path[0]!r}; sections are {sorted(config)}")
        table = config[path[0]]
        for part in path[1:-1]:
            table = table.setdefault(part, {})
        table[path[-1]] = value
    return config
