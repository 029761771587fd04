"""One loader for every recipe: a recipe dataclass + a TOML config + ``key=value`` overrides.

A recipe is a dataclass whose first field is ``name`` and whose other fields are the config's
sections. A section typed as a dataclass (``TrainingConfig``, a recipe's data settings, ...) is
built with :func:`~polyformer.apps.recipes.typed_config.build_section`, so every key and value is
checked; a section typed as a mapping (the ``[model]`` table: a preset plus config fields that
override it) is handed to the recipe's own ``check_model`` function, after refusing the fields the
recipe sets itself (``derived``: the vocabulary size comes from the tokenizer, the class count from
the data). Every mistake is one line::

    recipe config bible_lm.toml: unknown section(s) ['trian']; expected [model], [tokenizer], [data], [train]
    unknown key train.epohcs; did you mean train.epochs? known keys: ...
    train.epochs: expected a number (float), got 'abc' (str)
    model.vocab_size comes from the tokenizer; remove it

A recipe then needs only ``load_recipe_file(MyRecipe, name_or_path, overrides)``, and
:func:`recipe_to_dict` writes it back as plain data for the run's ``metrics.jsonl``.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from polyformer.apps.recipes.toml_config import read_recipe_config
from polyformer.apps.recipes.typed_config import ConfigError, build_section

__all__ = ["load_recipe_file", "recipe_to_dict"]

R = TypeVar("R")


def _sections(recipe_cls: type) -> dict[str, Any]:
    """The recipe's section fields (all but ``name``) and their resolved types, in order."""
    if not dataclasses.is_dataclass(recipe_cls):
        raise TypeError(f"{recipe_cls!r} is not a dataclass")
    hints = typing.get_type_hints(recipe_cls)
    names = [f.name for f in dataclasses.fields(recipe_cls)]
    if names[:1] != ["name"]:
        raise TypeError(f"{recipe_cls.__name__}: a recipe's first field must be 'name'")
    return {name: hints[name] for name in names[1:]}


def _is_table(annotation: Any) -> bool:
    """True for ``dict[...]`` / ``Mapping[...]`` sections (a free-form table such as ``[model]``)."""
    return annotation in (dict, Mapping) or typing.get_origin(annotation) in (dict, Mapping, typing.Mapping)


def load_recipe_file(
    recipe_cls: type[R],
    name_or_path: str | Path,
    overrides: Sequence[str] = (),
    check_model: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    derived: Mapping[str, str] | None = None,
) -> R:
    """Read a recipe config (a shipped name or a TOML file), apply overrides and build the recipe.

    Args:
        recipe_cls: the recipe dataclass (``name`` first, then one field per section).
        name_or_path: a shipped config name (``"bible_lm"``) or a TOML file.
        overrides: ``section.key=value`` strings (see :mod:`.toml_config`).
        check_model: checks (and may convert) the ``[model]`` table; None = take it as it is.
        derived: ``[model]`` keys the recipe sets itself, each with where it comes from
            (``{"vocab_size": "the tokenizer"}``); giving one is an error.

    Returns:
        ``recipe_cls(name=<config stem>, **sections)``; a section the file leaves out gets its defaults.

    Raises:
        FileNotFoundError: no such config.
        ConfigError: an unknown section or key, a value of the wrong type, a derived key given.
    """
    sections = _sections(recipe_cls)
    config = read_recipe_config(name_or_path, overrides)
    unknown = sorted(set(config) - set(sections))
    if unknown:
        expected = ", ".join(f"[{name}]" for name in sections)
        raise ConfigError(f"recipe config {name_or_path}: unknown section(s) {unknown}; expected {expected}")
    defaults = {f.name: f for f in dataclasses.fields(recipe_cls)}
    values: dict[str, Any] = {}
    for section, annotation in sections.items():
        table = config.get(section)
        if table is None:  # the recipe's default: an empty settings section, or its default [model] table
            factory = defaults[section].default_factory
            table = factory() if _is_table(annotation) and factory is not dataclasses.MISSING else {}
        if not isinstance(table, dict):
            raise ConfigError(f"recipe config {name_or_path}: {section} must be a [{section}] table, got {table!r}")
        if _is_table(annotation):
            for key, source in (derived or {}).items():
                if key in table:
                    raise ConfigError(f"{section}.{key} comes from {source}; remove it")
            values[section] = check_model(dict(table)) if check_model and section == "model" else dict(table)
        else:
            values[section] = build_section(annotation, table, section)
    return recipe_cls(name=Path(str(name_or_path)).stem, **values)


def recipe_to_dict(recipe: Any) -> dict[str, Any]:
    """The recipe as plain data: its name, each table as a dict, each settings section via ``to_dict()`` or asdict."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(recipe):
        value = getattr(recipe, f.name)
        if hasattr(value, "to_dict"):
            out[f.name] = value.to_dict()
        elif dataclasses.is_dataclass(value):
            out[f.name] = dataclasses.asdict(value)
        elif isinstance(value, Mapping):
            out[f.name] = dict(value)
        else:
            out[f.name] = value
    return out
