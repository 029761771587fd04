"""Check recipe config tables against the typed dataclasses they fill, before anything runs.

A recipe section (``[model]``, ``[data]``, ``[train]``) arrives as a plain mapping of TOML values
plus ``key=value`` overrides, which may be strings when the override was not a TOML literal. This
module checks every key and value against the dataclass the section becomes and reports the first
mistake as a one-line :class:`ConfigError` that names the key (``train.epochs``), the expected type
and the value found, or, for an unknown key, the known keys and the closest match::

    train.epochs: expected a number (float), got 'abc' (str)
    data.crop_scale: expected a list of 2 numbers, got [0.5] (list)
    unknown key model.backnd; did you mean model.backend? known keys: activation, attention_dropout, ...

Supported field annotations: ``int``, ``float``, ``bool``, ``str``, ``None``, unions (``X | None``,
``Optional[X]``), ``Literal[...]``, ``tuple[X, Y]``, ``tuple[X, ...]``, ``list[X]``, ``Sequence[X]``,
``dict[K, V]``, ``Mapping[K, V]``, ``Any``/``object`` and plain classes (an ``isinstance`` check).
String annotations (``from __future__ import annotations``) are resolved with
:func:`typing.get_type_hints`.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

__all__ = ["ConfigError", "build_section", "check_fields", "check_value"]

T = TypeVar("T")

_NO_EXTRA: Mapping[str, Any] = types.MappingProxyType({})
_SEQUENCE_ORIGINS = (list, collections.abc.Sequence, collections.abc.MutableSequence)
_MAPPING_ORIGINS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)
_MAX_SHOWN = 80  # longest value repr quoted in a message


class ConfigError(ValueError):
    """A recipe config mistake; its message is always one line (line breaks become spaces)."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).splitlines()))


class _Mismatch(Exception):
    """Internal: ``value`` at ``where`` (a suffix such as ``"[1]"``) does not match ``annotation``."""

    def __init__(self, where: str, value: Any, annotation: Any) -> None:
        super().__init__(where)
        self.where, self.value, self.annotation = where, value, annotation


def _show(value: Any) -> str:
    """A short one-line repr of ``value`` and its type name, e.g. ``'abc' (str)``."""
    text = " ".join(repr(value).splitlines())
    if len(text) > _MAX_SHOWN:
        text = text[: _MAX_SHOWN - 3] + "..."
    return f"{text} ({type(value).__name__})"


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _describe(annotation: Any) -> str:
    """What a value of ``annotation`` looks like in a config, e.g. ``"a list of 2 numbers"``."""
    if annotation is Any or annotation is object:
        return "any value"
    if annotation is None or annotation is type(None):
        return "None"
    if annotation is bool:
        return "a boolean (true or false)"
    if annotation is int:
        return "an integer"
    if annotation is float:
        return "a number (float)"
    if annotation is str:
        return "a string"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if _is_union(annotation):
        options = [_describe(arg) for arg in args if arg is not type(None)]
        if len(options) < len(args):
            options.append("None")
        return " or ".join(options)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(arg) for arg in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_plural(args[0])}"
        if not args:
            return "a list"
        if len(set(args)) == 1:
            return f"a list of {len(args)} {_plural(args[0])}"
        return f"a list of {len(args)} items ({', '.join(_describe(arg) for arg in args)})"
    if origin in _SEQUENCE_ORIGINS:
        return f"a list of {_plural(args[0])}" if args else "a list"
    if origin in _MAPPING_ORIGINS or annotation in (dict, collections.abc.Mapping):
        if len(args) == 2 and args[1] is not Any:
            return f"a table of {_plural(args[1])}"
        return "a table"
    if annotation in (list, tuple):
        return "a list"
    if isinstance(annotation, type):
        return f"a {annotation.__name__}"
    return str(annotation)


def _plural(annotation: Any) -> str:
    """The plural noun for items of ``annotation`` (``"numbers"``, ``"strings"``, ...)."""
    names = {int: "integers", float: "numbers", str: "strings", bool: "booleans"}
    if annotation in names:
        return names[annotation]
    if annotation is Any or annotation is object:
        return "values"
    return f"items ({_describe(annotation)})"


def _convert(value: Any, annotation: Any, where: str = "") -> Any:
    """``value`` checked against ``annotation`` (ints become floats, lists become tuples).

    Raises:
        _Mismatch: the innermost place that does not match.
        TypeError: an annotation this module does not support (a bug in the dataclass, not the config).
    """
    if isinstance(annotation, str | typing.ForwardRef):
        raise TypeError(f"unresolved annotation {annotation!r}: resolve it with typing.get_type_hints(cls) first")
    if annotation is Any or annotation is object:
        return value
    if annotation is None or annotation is type(None):
        if value is None:
            return None
        raise _Mismatch(where, value, annotation)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch(where, value, annotation)
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch(where, value, annotation)
    if annotation is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise _Mismatch(where, value, annotation)
    if annotation is str:
        if isinstance(value, str):
            return value
        raise _Mismatch(where, value, annotation)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if _is_union(annotation):
        if value is None and type(None) in args:
            return None
        for arg in args:
            try:
                return _convert(value, arg, where)
            except _Mismatch:
                continue
        raise _Mismatch(where, value, annotation)
    if origin is typing.Literal:
        if any(value == arg and type(value) is type(arg) for arg in args):
            return value
        raise _Mismatch(where, value, annotation)
    if origin is tuple or annotation is tuple:
        if not isinstance(value, list | tuple):
            raise _Mismatch(where, value, annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(item, args[0], f"{where}[{i}]") for i, item in enumerate(value))
        if not args:
            return tuple(value)
        if len(value) != len(args):
            raise _Mismatch(where, value, annotation)
        return tuple(_convert(item, arg, f"{where}[{i}]") for i, (item, arg) in enumerate(zip(value, args)))
    if origin in _SEQUENCE_ORIGINS or annotation is list:
        if not isinstance(value, list | tuple):
            raise _Mismatch(where, value, annotation)
        item_type = args[0] if args else Any
        return [_convert(item, item_type, f"{where}[{i}]") for i, item in enumerate(value)]
    if origin in _MAPPING_ORIGINS or annotation in (dict, collections.abc.Mapping):
        if not isinstance(value, Mapping):
            raise _Mismatch(where, value, annotation)
        key_type, value_type = args if len(args) == 2 else (Any, Any)
        checked = {}
        for key, item in value.items():
            checked[_convert(key, key_type, f"{where}[{key!r}]")] = _convert(item, value_type, f"{where}[{key!r}]")
        return checked
    if isinstance(annotation, type) and origin is None:
        if isinstance(value, annotation):
            return value
        raise _Mismatch(where, value, annotation)
    raise TypeError(f"unsupported config annotation {annotation!r}")


def check_value(section: str, name: str, value: Any, annotation: Any) -> Any:
    """Check one config value against a dataclass field annotation.

    Args:
        section: the config section, e.g. ``"train"`` (used in the message).
        name: the field name, e.g. ``"epochs"``.
        value: the value from TOML or an override (a TOML literal, else a string).
        annotation: the field's resolved annotation (not a string: see :func:`typing.get_type_hints`).

    Returns:
        The value, converted where the field needs it: an ``int`` for a ``float`` field becomes a
        float, a list for a ``tuple[...]`` field becomes a tuple, items of ``list[float]`` become floats.

    Raises:
        ConfigError: the value does not match, e.g.
            ``train.epochs: expected a number (float), got 'abc' (str)``; for an item of a list or
            table the key names it, e.g. ``train.betas[1]: expected a number (float), got 'x' (str)``.
        TypeError: ``annotation`` is a string or a kind this module does not support.
    """
    try:
        return _convert(value, annotation)
    except _Mismatch as bad:
        raise ConfigError(
            f"{section}.{name}{bad.where}: expected {_describe(bad.annotation)}, got {_show(bad.value)}"
        ) from None


def _field_types(cls: type) -> dict[str, Any]:
    """The init fields of dataclass ``cls`` and their resolved annotations, in field order."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, f.type) for f in dataclasses.fields(cls) if f.init}


def _check_table(
    cls: type, table: Mapping[str, Any], section: str, extra: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the checked values of ``table``, all allowed keys and their annotations)."""
    allowed = {**_field_types(cls), **extra}
    unknown = [key for key in table if key not in allowed]
    if unknown:
        known = ", ".join(sorted(allowed))
        parts = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), list(allowed), n=1)
            parts.append((f"{section}.{key}", f"{section}.{close[0]}" if close else None))
        if len(parts) == 1:
            key, close = parts[0]
            hint = f"; did you mean {close}?" if close else ";"
            raise ConfigError(f"unknown key {key}{hint} known keys: {known}")
        listed = ", ".join(f"{key} (did you mean {close}?)" if close else key for key, close in parts)
        raise ConfigError(f"unknown keys {listed}; known keys: {known}")
    checked = {key: check_value(section, key, value, allowed[key]) for key, value in table.items()}
    return checked, allowed


def check_fields(
    cls: type, table: Mapping[str, Any], section: str, extra: Mapping[str, Any] = _NO_EXTRA
) -> dict[str, Any]:
    """Check a config table against the fields of dataclass ``cls`` without constructing it.

    For tables such as ``[model]`` whose keys are some config fields that override a preset, plus
    keys of their own (``preset``, ``init``). Missing fields are not an error here.

    Args:
        cls: the dataclass whose fields the table may set (e.g. ``ViTConfig``).
        table: the section's keys and values.
        section: the section name, e.g. ``"model"`` (used in messages).
        extra: additional allowed keys and their annotations, e.g. ``{"preset": str, "init": str | None}``;
            an extra key of the same name as a field replaces the field's annotation.

    Returns:
        The checked (possibly converted, see :func:`check_value`) values, in the table's order.

    Raises:
        ConfigError: an unknown key (with the closest known key, if any, and the known keys) or a
            value of the wrong type.
    """
    checked, _ = _check_table(cls, table, section, extra)
    return checked


def build_section(cls: type[T], table: Mapping[str, Any], section: str) -> T:
    """Build dataclass ``cls`` from a config table, checking every key and value first.

    Args:
        cls: the dataclass the section becomes (e.g. ``TrainingConfig``).
        table: the section's keys and values; fields not given keep their defaults.
        section: the section name, e.g. ``"train"`` (used in messages).

    Returns:
        ``cls(**checked_values)``.

    Raises:
        ConfigError: an unknown key, a value of the wrong type, a missing field without a default,
            or a ``ValueError``/``TypeError`` from the dataclass's own checks (``__post_init__``),
            then as ``"{section}: {error}"``.
    """
    checked, allowed = _check_table(cls, table, section, _NO_EXTRA)
    missing = [
        f.name
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if f.init
        and f.name not in checked
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        listed = ", ".join(f"{section}.{name} ({_describe(allowed[name])})" for name in missing)
        raise ConfigError(f"missing key{'s' if len(missing) > 1 else ''} {listed}")
    try:
        return cls(**checked)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{section}: {err}") from err
