"""Typed, JSON-serialisable configuration of the core transformer models (no torch import).

Defaults are the base model of Vaswani et al. 2017 ("Attention Is All You Need", Table 3):
6+6 layers, width 512, 8 heads, feed-forward 2048, ReLU, post-norm, sinusoidal positions,
dropout 0.1, shared source/target vocabulary (37000 BPE tokens) and tied embeddings.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["ConfigBase", "TransformerConfig", "POSITION_KINDS"]

POSITION_KINDS = ("sinusoidal", "learned", "rotary", "alibi", "none")
ACTIVATION_KINDS = ("relu", "gelu", "gelu_tanh", "silu", "swiglu", "geglu")
NORM_KINDS = ("layernorm", "rmsnorm")

C = TypeVar("C", bound="ConfigBase")


class ConfigBase:
    """Shared JSON round-trip for config dataclasses; subclasses set ``model_type``."""

    model_type: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)  # type: ignore[call-overload]
        data["model_type"] = self.model_type
        return data

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        data = dict(data)
        found = data.pop("model_type", cls.model_type)
        if found != cls.model_type:
            raise ValueError(f"config is for model type {found!r}, not {cls.model_type!r}")
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; known fields: {sorted(names)}")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls: type[C], path: str | Path) -> C:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"cannot read config {path}: {err}") from err
        return cls.from_dict(data)

    def replace(self: C, **changes: Any) -> C:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass
class TransformerConfig(ConfigBase):
    """A token-in, logits-out transformer: encoder-decoder or decoder-only."""

    model_type = "transformer"

    vocab_size: int = 37000  # target (and shared) vocabulary size
    src_vocab_size: int | None = None  # source vocabulary size; None = shared with the target
    d_model: int = 512  # model width D
    num_heads: int = 8  # attention heads H
    num_kv_heads: int | None = None  # key/value heads for grouped-query attention; None = num_heads
    encoder_layers: int = 6  # encoder depth (ignored by decoder-only models)
    decoder_layers: int = 6  # decoder depth
    d_ff: int = 2048  # feed-forward inner width
    activation: str = "relu"  # relu | gelu | gelu_tanh | silu | swiglu | geglu
    norm: str = "layernorm"  # layernorm | rmsnorm
    norm_eps: float = 1e-5  # epsilon of the norms
    norm_first: bool = False  # pre-norm (True) or the paper's post-norm (False)
    dropout: float = 0.1  # dropout on embeddings and residual branches
    attention_dropout: float = 0.0  # dropout on attention weights
    drop_path: float = 0.0  # stochastic depth probability of the last layer (linear ramp)
    position: str = "sinusoidal"  # sinusoidal | learned | rotary | alibi | none
    max_len: int = 1024  # longest sequence (learned positions, some backends)
    backend: str = "sdpa"  # attention backend spec, e.g. "sdpa", "eager", "local:256"
    bias: bool = True  # biases in linear layers
    moe_experts: int = 0  # experts in each Mixture-of-Experts feed-forward; 0 = dense feed-forwards only
    moe_every: int = 1  # every N-th layer of each stack is MoE (Switch Transformer: 2)
    moe_top_k: int = 1  # experts per token (1 = Switch, 2 = GShard)
    moe_capacity_factor: float = 1.25  # expert capacity as a multiple of the balanced load; 0 = never drop tokens
    scale_embeddings: bool = True  # multiply token embeddings by sqrt(D)
    tie_embeddings: bool = True  # share input embeddings with the output projection
    pad_id: int = 0  # padding token id
    bos_id: int = 1  # beginning-of-sequence token id (decoder start)
    eos_id: int = 2  # end-of-sequence token id

    def __post_init__(self) -> None:
        _require(self.vocab_size > 0, f"vocab_size must be positive, got {self.vocab_size}")
        _require(self.src_vocab_size is None or self.src_vocab_size > 0, f"src_vocab_size must be positive, got {self.src_vocab_size}")
        _require(self.d_model > 0 and self.num_heads > 0, "d_model and num_heads must be positive")
        _require(
            self.d_model % self.num_heads == 0,
            f"num_heads={self.num_heads} must divide d_model={self.d_model} (head dim = d_model / num_heads)",
        )
        kv = self.num_heads if self.num_kv_heads is None else self.num_kv_heads
        _require(kv > 0 and self.num_heads % kv == 0, f"num_kv_heads={kv} must divide num_heads={self.num_heads}")
        _require(self.encoder_layers >= 0 and self.decoder_layers >= 0, "layer counts cannot be negative")
        _require(self.d_ff > 0, f"d_ff must be positive, got {self.d_ff}")
        _require(self.activation in ACTIVATION_KINDS, f"activation must be one of {ACTIVATION_KINDS}, got {self.activation!r}")
        _require(self.norm in NORM_KINDS, f"norm must be one of {NORM_KINDS}, got {self.norm!r}")
        _require(self.position in POSITION_KINDS, f"position must be one of {POSITION_KINDS}, got {self.position!r}")
        for name in ("dropout", "attention_dropout", "drop_path"):
            value = getattr(self, name)
            _require(0.0 <= value < 1.0, f"{name} must be in [0, 1), got {value}")
        _require(self.max_len > 0, f"max_len must be positive, got {self.max_len}")
        if self.position == "sinusoidal":
            _require(self.d_model % 2 == 0, "sinusoidal positions need an even d_model")
        if self.position == "rotary":
            _require((self.d_model // self.num_heads) % 2 == 0, "rotary positions need an even head dim")
        ids = {"pad_id": self.pad_id, "bos_id": self.bos_id, "eos_id": self.eos_id}
        for name, value in ids.items():
            _require(0 <= value < self.vocab_size, f"{name}={value} is outside the vocabulary (size {self.vocab_size})")
        _require(isinstance(self.backend, str) and bool(self.backend), "backend must name an attention backend")
        if self.moe_experts:
            _require(self.moe_experts > 0, f"moe_experts must be 0 (dense) or positive, got {self.moe_experts}")
            _require(1 <= self.moe_top_k <= self.moe_experts, f"moe_top_k={self.moe_top_k} must be between 1 and moe_experts={self.moe_experts}")
            _require(self.moe_every >= 1, f"moe_every must be at least 1, got {self.moe_every}")
            _require(self.moe_capacity_factor >= 0, f"moe_capacity_factor must be >= 0 (0 = no dropping), got {self.moe_capacity_factor}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads
