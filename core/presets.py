"""One registry of named model presets across the suite, listed by ``polyformer info``.

A preset is a small function returning a ready model; model modules register theirs with
:func:`register_preset` when imported (core's own in :mod:`polyformer.core.model_presets`).
This module imports no model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

__all__ = ["Preset", "create_model", "list_presets", "register_preset"]


@dataclass(frozen=True)
class Preset:
    name: str  # registry name, e.g. "vit_tiny_patch16_224"
    family: str  # model family, e.g. "vit"
    description: str  # one line for `polyformer info`
    build: Callable[..., nn.Module]  # returns the model; keyword overrides go to its config


_PRESETS: dict[str, Preset] = {}


def register_preset(name: str, family: str, description: str):
    """Decorator registering a model-building function under ``name``."""

    def decorate(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _PRESETS and _PRESETS[name].build is not fn:
            raise ValueError(f"model preset {name!r} is already registered")
        _PRESETS[name] = Preset(name, family, description, fn)
        return fn

    return decorate


def list_presets(family: str | None = None) -> list[Preset]:
    """Registered presets, sorted by family then name."""
    found = [p for p in _PRESETS.values() if family is None or p.family == family]
    return sorted(found, key=lambda p: (p.family, p.name))


def create_model(name: str, **overrides) -> nn.Module:
    """Build the preset ``name``; keyword arguments override its config fields."""
    if name not in _PRESETS:
        raise ValueError(f"unknown model preset {name!r}; known presets: {[p.name for p in list_presets()]}")
    return _PRESETS[name].build(**overrides)
