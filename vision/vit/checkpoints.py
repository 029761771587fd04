"""Read any ViT checkpoint a user may point ``--init`` at, and adapt it to a new image size.

:func:`read_vit_source` accepts

- a polyformer model directory (``config.json`` of a ``ViTConfig`` + ``model.safetensors``),
  or a training checkpoint directory (the same plus ``training_state.pt``);
- a polyformer training run directory (``best_model/`` if it has one, else ``model/``);
- a Hugging Face ``ViTForImageClassification`` / ``ViTModel`` directory;
- a timm hub-style directory (``config.json`` with ``"architecture"`` + ``model.safetensors``
  or ``pytorch_model.bin``);
- a timm weights file (``.safetensors``, ``.pth``, ``.bin``, ``.pt``), its timm name inferred
  from the shapes (:func:`~polyformer.vision.vit.convert_timm.timm_name_from_state`);
- a file inside one of those directories (``model.safetensors``, ``config.json``, ...), read as
  the directory.

It returns the config and the weights under our parameter names; no model is built. Nothing is
downloaded and neither timm nor transformers is imported. :func:`adapt_vit_state` then fits the
weights to a config with another image size by resampling the position table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from polyformer.core import read_state_dict
from polyformer.core.positional import resample_2d
from polyformer.core.pretrained import CONFIG_NAME, WEIGHTS_NAME
from polyformer.core.weights import read_safetensors

from .config import ViTConfig
from .convert_hf import is_hf_vit_directory, read_hf_vit
from .convert_timm import convert_timm_state_dict, timm_name_from_state, vit_config_from_timm
from .model import resample_positions_plain_bicubic

__all__ = ["ADAPTABLE_FIELDS", "SOURCE_KINDS", "ViTSource", "adapt_vit_state", "read_vit_source"]

SOURCE_KINDS = ("polyformer", "huggingface", "timm")
TRAINING_STATE_NAME = "training_state.pt"  # written by polyformer.apps.engine.checkpoint (not importable here)
TORCH_WEIGHTS_NAME = "pytorch_model.bin"
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".bin", ".pt")
# Config fields that fix parameter shapes or their meaning: a state dict cannot be adapted across them.
FIXED_FIELDS = (
    "patch_size",
    "in_channels",
    "d_model",
    "num_layers",
    "num_heads",
    "d_ff",
    "activation",
    "norm",
    "qkv_bias",
    "class_token",
)
ADAPTABLE_FIELDS = ("image_size",)  # what adapt_vit_state changes in the weights

ACCEPTED = (
    "expected one of: a polyformer ViT model directory (config.json + model.safetensors), a training "
    "checkpoint directory (with training_state.pt), a training run directory (with model/ or best_model/), "
    "a Hugging Face ViT directory (config.json with model_type 'vit' + model.safetensors or pytorch_model.bin), "
    "a timm hub directory (config.json with 'architecture' + model.safetensors or pytorch_model.bin), "
    f"or a timm ViT weights file ({', '.join(WEIGHT_SUFFIXES)})"
)


@dataclass
class ViTSource:
    """ViT weights read from disk, under our parameter names, with the config they fit.

    Attributes:
        config: the architecture the weights were trained with (a ``ViT(config)`` loads ``state`` strictly).
        state: parameter name -> tensor (on the CPU).
        kind: where they came from: "polyformer", "huggingface" or "timm".
        path: the directory or file actually read.
        description: one line for logs, e.g. "timm vit_tiny_patch16_224 weights /x/model.safetensors, 1000 classes".
    """

    config: ViTConfig
    state: dict[str, Tensor]
    kind: str
    path: Path
    description: str


def _classes(config: ViTConfig) -> str:
    return "no head" if config.num_classes == 0 else f"{config.num_classes} classes"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read {path} as JSON: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object; {ACCEPTED}")
    return data


def _directory_kind(directory: Path) -> str | None:
    """"polyformer", "huggingface" or "timm" for a directory with a config.json, else None."""
    if not (directory / CONFIG_NAME).is_file():
        return None
    data = _read_json(directory / CONFIG_NAME)
    if isinstance(data.get("architecture"), str):
        return "timm"
    if is_hf_vit_directory(directory):
        return "huggingface"
    if "model_type" in data:
        return "polyformer"  # ViTConfig.load names another model type clearly
    return None


def _read_polyformer(directory: Path) -> ViTSource:
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(
            f"{weights} not found: a polyformer model directory holds {CONFIG_NAME} and {WEIGHTS_NAME}"
        )
    try:
        config = ViTConfig.load(directory / CONFIG_NAME)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{directory / CONFIG_NAME} is not a polyformer ViT config: {err}") from err
    what = "training checkpoint" if (directory / TRAINING_STATE_NAME).is_file() else "model"
    description = (
        f"polyformer ViT {what} {directory} (patch {config.patch_size} at {config.image_size}, width "
        f"{config.d_model}, {config.num_layers} layers), {_classes(config)}"
    )
    return ViTSource(config, read_safetensors(weights), "polyformer", directory, description)


def _read_huggingface(directory: Path) -> ViTSource:
    config, state = read_hf_vit(directory)
    return ViTSource(config, state, "huggingface", directory, f"Hugging Face ViT {directory}, {_classes(config)}")


def _timm_source(name: str, state: dict[str, Tensor], path: Path, fields: dict[str, Any] | None = None) -> ViTSource:
    try:
        config = vit_config_from_timm(name, state)
        if fields:
            config = config.replace(**fields)
        converted = convert_timm_state_dict(state)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err
    return ViTSource(config, converted, "timm", path, f"timm {name} weights {path}, {_classes(config)}")


def _read_timm_directory(directory: Path) -> ViTSource:
    data = _read_json(directory / CONFIG_NAME)
    weights = next((directory / n for n in (WEIGHTS_NAME, TORCH_WEIGHTS_NAME) if (directory / n).is_file()), None)
    if weights is None:
        raise FileNotFoundError(
            f"{directory} has a timm config.json but neither {WEIGHTS_NAME} nor {TORCH_WEIGHTS_NAME}"
        )
    state = read_state_dict(weights)
    fields: dict[str, Any] = {}
    pretrained = data.get("pretrained_cfg") if isinstance(data.get("pretrained_cfg"), dict) else {}
    channels = int(state["patch_embed.proj.weight"].shape[1]) if "patch_embed.proj.weight" in state else None
    for ours, theirs in (("image_mean", "mean"), ("image_std", "std")):
        values = pretrained.get(theirs)
        if isinstance(values, (list, tuple)) and len(values) == channels:
            fields[ours] = [float(v) for v in values]
    labels = data.get("label_names")
    if isinstance(labels, list) and "head.weight" in state and len(labels) == state["head.weight"].shape[0]:
        fields["class_names"] = [str(n) for n in labels]
    return _timm_source(data["architecture"], state, weights, fields)


def _read_timm_file(path: Path) -> ViTSource:
    state = read_state_dict(path)
    try:
        name = timm_name_from_state(state)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err
    return _timm_source(name, state, path)


def _read_directory(directory: Path, kind: str) -> ViTSource:
    readers = {"polyformer": _read_polyformer, "huggingface": _read_huggingface, "timm": _read_timm_directory}
    return readers[kind](directory)


def read_vit_source(path: str | Path) -> ViTSource:
    """Read the ViT checkpoint at ``path`` (any kind listed in the module docstring); no model is built.

    Raises:
        FileNotFoundError: nothing at ``path``, or a directory lacks the file its kind needs.
        ValueError: ``path`` is none of the accepted kinds, or its weights are not a ViT this package builds.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"ViT checkpoint {path} not found; {ACCEPTED}")
    if path.is_dir():
        kind = _directory_kind(path)
        if kind is not None:
            return _read_directory(path, kind)
        for sub in ("best_model", "model"):  # a training run directory
            if (path / sub).is_dir():
                return read_vit_source(path / sub)
        hint = ""
        if (path / "checkpoints").is_dir():
            hint = " (a training run without a final model yet: give one of its checkpoints/step-* directories)"
        raise ValueError(f"{path} is a directory without {CONFIG_NAME}, model/ or best_model/{hint}; {ACCEPTED}")
    parent_kind = _directory_kind(path.parent)
    own_files = {"polyformer": (CONFIG_NAME, WEIGHTS_NAME, TRAINING_STATE_NAME)}.get(
        parent_kind or "", (CONFIG_NAME, WEIGHTS_NAME, TORCH_WEIGHTS_NAME)
    )
    if parent_kind is not None and path.name in own_files:
        return _read_directory(path.parent, parent_kind)  # a file of a model directory: read the directory
    if path.suffix not in WEIGHT_SUFFIXES:
        raise ValueError(f"{path} is not a weights file (suffix {path.suffix or 'none'}); {ACCEPTED}")
    return _read_timm_file(path)


def adapt_vit_state(state: dict[str, Tensor], source: ViTConfig, target: ViTConfig) -> dict[str, Tensor]:
    """The weights ``state`` of a ``ViT(source)`` fitted to ``ViT(target)``.

    A different patch grid (another ``image_size``) resamples the position table to the target
    grid, the class-token row kept as it is, with the resampling the source model itself uses for
    other image sizes (antialiased bicubic as timm, or plain bicubic for Hugging Face weights with
    ``pos_antialias=False``): the adapted model gives the source model's outputs at the new size.
    The head is left as it is (a changed class count is handled elsewhere). Returns a new dict;
    ``state`` is not modified.

    Raises:
        ValueError: a field that fixes parameter shapes differs (patch size, width, depth, heads,
            channels, MLP width, activation, norm, qkv bias, class token, layer scale), or the
            position table does not fit ``source``.
    """
    for name in FIXED_FIELDS:
        old, new = getattr(source, name), getattr(target, name)
        if old != new:
            raise ValueError(
                f"cannot adapt ViT weights: {name} differs (checkpoint {old!r}, target {new!r}); "
                f"only {', '.join(ADAPTABLE_FIELDS)} can change, keep {name}={old!r}"
            )
    if (source.layer_scale is None) != (target.layer_scale is None):
        raise ValueError(
            f"cannot adapt ViT weights: layer_scale differs (checkpoint {source.layer_scale!r}, target "
            f"{target.layer_scale!r}); layer scale parameters exist in one and not the other"
        )
    table = state.get("pos_embed.weight")
    prefix = source.num_prefix_tokens
    expected = prefix + source.grid_size**2
    if table is None or table.dim() != 3 or table.shape[1] != expected:
        found = None if table is None else tuple(table.shape)
        raise ValueError(
            f"ViT weights have position table {found}, but the checkpoint config needs (1, {expected}, "
            f"{source.d_model}) (patch grid {source.grid_size}x{source.grid_size} + {prefix} class token)"
        )
    out = dict(state)
    if target.grid_size != source.grid_size:
        grid = (target.grid_size, target.grid_size)
        if source.pos_antialias:
            old = (source.grid_size, source.grid_size)
            out["pos_embed.weight"] = resample_2d(table, old, grid, prefix)
        else:
            out["pos_embed.weight"] = resample_positions_plain_bicubic(table, grid, prefix)
    return out
