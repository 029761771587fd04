"""Saving and loading models as a directory: ``config.json`` + ``model.safetensors``.

Never pickles a model. Writes go to a temporary directory that is renamed into place, so an
interrupted save never leaves a half-written model behind.

One exception to the layer rule in ``docs/architecture.md`` (core imports only the standard
library, torch and numpy): core also imports ``safetensors``, the one weights format of the suite.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from safetensors.torch import save_file
from torch import nn

from .config import ConfigBase
from .positional import LearnedPositionalEmbedding, LearnedPositionalEmbedding2D
from .weights import check_weights_fit, read_safetensors, read_torch_file

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "PretrainedModel",
    "HF_ACTIVATIONS",
    "atomic_directory",
    "head_parameter_names",
    "hf_model_type",
    "read_hf_weights",
    "read_state_dict",
    "rename_by_rules",
    "unique_state_dict",
    "write_model_files",
    "MODEL_CLASS_KEY",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
M = TypeVar("M", bound="PretrainedModel")
# Hugging Face configs' ``hidden_act`` -> our activation names (shared by every converter).
HF_ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
}


class atomic_directory:
    """Context manager yielding a temporary directory that replaces ``target`` on success."""

    def __init__(self, target: str | Path):
        self.target = Path(target)

    def __enter__(self) -> Path:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.", dir=self.target.parent))
        # mkdtemp makes the directory private (0700); give it the mode a plain mkdir would have.
        umask = os.umask(0)
        os.umask(umask)
        self.tmp.chmod(0o777 & ~umask)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        old = None
        if self.target.exists():
            old = self.target.with_name(f".{self.target.name}.old-{os.getpid()}")
            os.replace(self.target, old)
        os.replace(self.tmp, self.target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


MODEL_CLASS_KEY = "polyformer_class"  # weights-file metadata: the class of the model that saved them


def unique_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` without repeated (tied) tensors, detached, contiguous and on the CPU.

    A tensor that shares storage, offset and shape with an earlier one is dropped: the first
    name wins. :meth:`PretrainedModel.load_weights` accepts such a state dict back.
    """
    seen: set[tuple[int, int, tuple[int, ...]]] = set()
    unique = {}
    for name, tensor in state.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if key in seen:
            continue
        seen.add(key)
        unique[name] = tensor.detach().contiguous().cpu()
    return unique


def write_model_files(
    directory: str | Path, state: dict[str, torch.Tensor], config: ConfigBase | None = None, model_class: str = ""
) -> Path:
    """Write ``model.safetensors`` (tied copies once) and, if given, ``config.json`` into ``directory`` atomically.

    ``model_class`` (the model's class name) goes into the weights file's metadata, so a loader can
    tell apart models whose weights have the same names (a mean-pooled sequence classifier and a
    token classifier, for example).
    """
    metadata = {"format": "pt", **({MODEL_CLASS_KEY: model_class} if model_class else {})}
    with atomic_directory(directory) as tmp:
        if config is not None:
            config.save(tmp / CONFIG_NAME)
        save_file(unique_state_dict(state), str(tmp / WEIGHTS_NAME), metadata=metadata)
    return Path(directory)


_NO_DECAY_MODULES = (nn.Embedding, LearnedPositionalEmbedding, LearnedPositionalEmbedding2D)


class PretrainedModel(nn.Module):
    """Base class of models with a config dataclass; adds save/load of a model directory."""

    config_class: ClassVar[type[ConfigBase]]
    # Parameter-name prefixes of the task head: the part replaced when fine-tuning to another
    # label set, and the only part trained while the backbone is frozen. () declares no head.
    head_prefixes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: ConfigBase):
        super().__init__()
        self.config = config

    def save_pretrained(self, directory: str | Path, state: dict[str, torch.Tensor] | None = None) -> Path:
        """Write ``config.json`` and ``model.safetensors`` to ``directory`` atomically.

        Args:
            directory: the model directory (replaced if it exists).
            state: the weights to write instead of ``self.state_dict()``, e.g. a full state dict
                gathered from FSDP shards; tied copies are dropped either way.
        """
        state = self.state_dict() if state is None else state
        return write_model_files(directory, state, self.config, model_class=type(self).__name__)

    def no_weight_decay(self) -> set[str]:
        """Names of parameters that AdamW should not decay (as timm's ``no_weight_decay()``).

        The default names every parameter of the token embeddings (``nn.Embedding``) and learned
        position embeddings; subclasses add their own (class tokens, for example). Parameters with
        fewer than two dimensions (biases, norm scales) are left undecayed by the optimizer anyway.
        """
        names = set()
        for module_name, module in self.named_modules(remove_duplicate=False):
            if isinstance(module, _NO_DECAY_MODULES):
                prefix = f"{module_name}." if module_name else ""
                names.update(prefix + name for name, _ in module.named_parameters(remove_duplicate=False))
        return names

    @classmethod
    def from_pretrained(
        cls: type[M], directory: str | Path, map_location: str | torch.device = "cpu", **overrides: Any
    ) -> M:
        """Rebuild a model saved by :meth:`save_pretrained`.

        Args:
            directory: the model directory.
            map_location: device for the weights.
            **overrides: config fields to change (e.g. ``backend="eager"``, ``dropout=0.0``).

        Raises:
            FileNotFoundError: the directory lacks config.json or model.safetensors.
            ValueError: the config is for another model type, or the weights do not fit.
        """
        directory = Path(directory)
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            if not (directory / name).is_file():
                raise FileNotFoundError(
                    f"{directory / name} not found: a polyformer model directory holds {CONFIG_NAME} and {WEIGHTS_NAME}"
                )
        config = cls.config_class.load(directory / CONFIG_NAME)
        if overrides:
            config = config.replace(**overrides)
        model = cls(config)
        state = read_safetensors(directory / WEIGHTS_NAME, device=map_location)
        model.load_weights(state, source=str(directory / WEIGHTS_NAME))
        return model.to(map_location).eval()

    def load_weights(self, state: dict[str, torch.Tensor], source: str = "state dict") -> None:
        """Load a state dict that may omit tied copies; anything else missing is an error.

        Raises:
            WeightsFileError: a tensor of another shape, or integers where the model has floating point.
            ValueError: names missing or unexpected.
        """
        check_weights_fit(self.state_dict(), state, source)
        result = self.load_state_dict(state, strict=False)
        own = self.state_dict()
        tied = {name for name in result.missing_keys if _is_tied_copy(own, name, state)}
        missing = sorted(set(result.missing_keys) - tied)
        if missing or result.unexpected_keys:
            raise ValueError(
                f"weights in {source} do not fit {type(self).__name__}: "
                f"missing {missing[:8]}, unexpected {sorted(result.unexpected_keys)[:8]}"
            )


def _is_tied_copy(own: dict[str, torch.Tensor], name: str, loaded: dict[str, torch.Tensor]) -> bool:
    target = own[name]
    ptr = target.untyped_storage().data_ptr()
    return any(own[other].untyped_storage().data_ptr() == ptr for other in loaded if other in own and other != name)


def head_parameter_names(model: nn.Module) -> set[str]:
    """Names of the parameters of ``model``'s task head, from its ``head_prefixes``.

    A name belongs to the head when it equals a prefix or starts with a prefix followed by ``"."``
    (``"head"`` covers ``head.weight`` and ``head.bias``, not ``header.weight``). Tied copies are
    listed under every name they have. A DDP/DataParallel wrapper is looked through: the inner
    model's head names are returned under ``module.``, as ``wrapper.named_parameters()`` spells them.

    Args:
        model: a :class:`PretrainedModel`, a wrapper of one, or any module (which has no head).

    Returns:
        The head's parameter names; empty when the model declares no head (or its head, e.g. an
        ``nn.Identity``, has no parameters).
    """
    prefixes = getattr(model, "head_prefixes", None)
    inner = getattr(model, "module", None)
    if prefixes is None and isinstance(inner, nn.Module) and getattr(inner, "head_prefixes", None) is not None:
        return {f"module.{name}" for name in head_parameter_names(inner)}
    prefixes = tuple(prefixes or ())
    return {
        name
        for name, _ in model.named_parameters(remove_duplicate=False)
        if any(name == prefix or name.startswith(f"{prefix}.") for prefix in prefixes)
    }


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file from another project: ``.safetensors``, or a torch file
    (``.pth``, ``.bin``, ``.pt``) read with ``weights_only=True``, so nothing in it runs.

    Training checkpoints that wrap the weights (under ``state_dict``, ``model``,
    ``state_dict_ema`` or ``model_ema``) are unwrapped, and the ``module.`` prefix that
    DataParallel/DDP adds is removed.

    Raises:
        FileNotFoundError: no such file.
        WeightsFileError: a damaged or truncated file, or one that is not of its kind.
        ValueError: the file is not a plain state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} not found")
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    state = read_torch_file(path)
    for key in ("state_dict", "model", "state_dict_ema", "model_ema"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors (found {type(state).__name__})")
    return {k.removeprefix("module."): v for k, v in state.items()}


def hf_model_type(directory: str | Path) -> str | None:
    """The ``model_type`` of a Hugging Face directory's ``config.json``, or None (no readable config)."""
    try:
        data = json.loads((Path(directory) / CONFIG_NAME).read_text())
    except (OSError, ValueError):
        return None
    return data.get("model_type") if isinstance(data, dict) else None


def read_hf_weights(directory: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a Hugging Face model directory: ``model.safetensors``, else ``pytorch_model.bin``.

    Raises:
        FileNotFoundError: neither file is there (sharded checkpoints are not supported).
    """
    directory = Path(directory)
    for name in (WEIGHTS_NAME, "pytorch_model.bin"):
        if (directory / name).is_file():
            return read_state_dict(directory / name)
    raise FileNotFoundError(
        f"{directory} has a Hugging Face config.json but neither {WEIGHTS_NAME} nor pytorch_model.bin "
        "(sharded checkpoints are not supported)"
    )


def rename_by_rules(name: str, rules: list[tuple[str, str]]) -> str | None:
    """``name`` rewritten by the first ``(regex, replacement)`` rule that matches it, or None."""
    for pattern, target in rules:
        new, count = re.subn(pattern, target, name)
        if count:
            return new
    return None
