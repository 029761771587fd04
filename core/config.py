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

__all__ = [
    "ACTIVATION_KINDS",
    "BlockSpec",
    "ConfigBase",
    "EncoderConfig",
    "NORM_KINDS",
    "POOL_KINDS",
    "POSITION_KINDS",
    "TransformerConfig",
    "block_spec_from",
    "checked_class_names",
    "require",
]

POSITION_KINDS = ("sinusoidal", "learned", "rotary", "alibi", "none")
ACTIVATION_KINDS = ("relu", "gelu", "gelu_tanh", "silu", "swiglu", "geglu")  # the last two are gated MLPs
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


def require(condition: bool, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``condition``: the check every config uses."""
    if not condition:
        raise ValueError(message)


def checked_class_names(names: list[Any] | None, num_classes: int) -> list[str] | None:
    """A config's ``class_names`` as strings, one per class (or None), else a ``ValueError`` saying the counts."""
    if names is None:
        return None
    names = [str(n) for n in names]
    require(len(names) == num_classes, f"class_names has {len(names)} names but num_classes={num_classes}")
    return names


@dataclass(frozen=True)
class BlockSpec:
    """What one transformer block is made of, for :func:`~polyformer.core.stacks.build_encoder` and
    :func:`~polyformer.core.stacks.build_decoder`.

    A model config (text, image, audio, DNA) describes its blocks with one of these
    (``TransformerConfig.block_spec()``, ``ViTConfig.block_spec()``), so the stack builders need no
    model-level fields (vocabularies, token ids, heads).
    """

    dim: int  # model width D
    num_heads: int  # attention heads H
    d_ff: int  # feed-forward inner width
    num_kv_heads: int | None = None  # key/value heads (GQA); None = num_heads
    activation: str = "gelu"  # relu | gelu | gelu_tanh | silu | swiglu | geglu
    norm: str = "layernorm"  # layernorm | rmsnorm
    norm_eps: float = 1e-5  # epsilon of the norms
    norm_first: bool = True  # pre-norm (True) or post-norm (False)
    dropout: float = 0.0  # dropout on residual branches (and inside the feed-forward)
    attention_dropout: float = 0.0  # dropout on attention weights
    drop_path: float = 0.0  # stochastic depth rate of the last layer (linear ramp from 0)
    layer_drop: float = 0.0  # LayerDrop: probability of skipping a whole layer while training
    layer_scale: float | None = None  # initial LayerScale value (CaiT); None = none
    backend: str = "sdpa"  # attention backend spec
    bias: bool = True  # biases in every linear layer, unless overridden below
    qkv_bias: bool | None = None  # biases in the query/key/value projections; None = bias
    key_bias: bool | None = None  # bias in the key projection (Whisper: False); None = qkv_bias
    out_bias: bool | None = None  # bias in the attention output projection; None = bias
    rotary: bool = False  # rotary embeddings in self-attention
    max_len: int | None = None  # longest key length (some backends size buffers with it)
    moe_experts: int = 0  # experts per MoE feed-forward; 0 = dense only
    moe_every: int = 1  # every N-th layer is MoE
    moe_top_k: int = 1  # experts per token
    moe_capacity_factor: float = 1.25  # expert capacity factor; 0 = never drop tokens

    def __post_init__(self) -> None:
        require(self.dim > 0 and self.num_heads > 0 and self.d_ff > 0, "dim, num_heads and d_ff must be positive")
        require(self.dim % self.num_heads == 0, f"num_heads={self.num_heads} must divide the width {self.dim}")
        kv = self.num_heads if self.num_kv_heads is None else self.num_kv_heads
        require(kv > 0 and self.num_heads % kv == 0, f"num_kv_heads={kv} must divide num_heads={self.num_heads}")
        require(
            self.activation in ACTIVATION_KINDS,
            f"activation must be one of {ACTIVATION_KINDS}, got {self.activation!r}",
        )
        require(self.norm in NORM_KINDS, f"norm must be one of {NORM_KINDS}, got {self.norm!r}")
        for name in ("dropout", "attention_dropout", "drop_path", "layer_drop"):
            value = getattr(self, name)
            require(0.0 <= value < 1.0, f"{name} must be in [0, 1), got {value}")
        if self.moe_experts:
            require(
                1 <= self.moe_top_k <= self.moe_experts,
                f"moe_top_k={self.moe_top_k} must be between 1 and moe_experts={self.moe_experts}",
            )
            require(self.moe_every >= 1, f"moe_every must be at least 1, got {self.moe_every}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads


_SHARED_BLOCK_FIELDS = (
    "num_heads", "d_ff", "num_kv_heads", "activation", "norm", "norm_eps", "norm_first", "dropout",
    "attention_dropout", "drop_path", "layer_drop", "layer_scale", "backend", "bias", "max_len",
)  # fmt: skip


def block_spec_from(config: Any, **changes: Any) -> BlockSpec:
    """A :class:`BlockSpec` from a model config's fields of the same names (``d_model`` is ``dim``).

    Fields the config does not have keep the spec's defaults; ``changes`` override the rest.
    """
    fields = {name: getattr(config, name) for name in _SHARED_BLOCK_FIELDS if hasattr(config, name)}
    return BlockSpec(**{"dim": config.d_model, **fields, **changes})


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
    embedding_norm: bool = False  # a norm after each embedding sum, source and target (BART's layernorm_embedding)
    logits_bias: bool = False  # a learned bias added to the output logits (Marian's and BART's final_logits_bias)
    pad_id: int = 0  # padding token id
    bos_id: int = 1  # beginning-of-sequence token id (decoder start)
    eos_id: int = 2  # end-of-sequence token id

    def __post_init__(self) -> None:
        require(self.vocab_size > 0, f"vocab_size must be positive, got {self.vocab_size}")
        require(
            self.src_vocab_size is None or self.src_vocab_size > 0,
            f"src_vocab_size must be positive, got {self.src_vocab_size}",
        )
        require(self.d_model > 0 and self.num_heads > 0, "d_model and num_heads must be positive")
        require(
            self.d_model % self.num_heads == 0,
            f"num_heads={self.num_heads} must divide d_model={self.d_model} (head dim = d_model / num_heads)",
        )
        kv = self.num_heads if self.num_kv_heads is None else self.num_kv_heads
        require(kv > 0 and self.num_heads % kv == 0, f"num_kv_heads={kv} must divide num_heads={self.num_heads}")
        require(self.encoder_layers >= 0 and self.decoder_layers >= 0, "layer counts cannot be negative")
        require(self.d_ff > 0, f"d_ff must be positive, got {self.d_ff}")
        require(
            self.activation in ACTIVATION_KINDS,
            f"activation must be one of {ACTIVATION_KINDS}, got {self.activation!r}",
        )
        require(self.norm in NORM_KINDS, f"norm must be one of {NORM_KINDS}, got {self.norm!r}")
        require(self.position in POSITION_KINDS, f"position must be one of {POSITION_KINDS}, got {self.position!r}")
        for name in ("dropout", "attention_dropout", "drop_path"):
            value = getattr(self, name)
            require(0.0 <= value < 1.0, f"{name} must be in [0, 1), got {value}")
        require(self.max_len > 0, f"max_len must be positive, got {self.max_len}")
        if self.position == "sinusoidal":
            require(self.d_model % 2 == 0, "sinusoidal positions need an even d_model")
        if self.position == "rotary":
            require((self.d_model // self.num_heads) % 2 == 0, "rotary positions need an even head dim")
        ids = {"pad_id": self.pad_id, "bos_id": self.bos_id, "eos_id": self.eos_id}
        for name, value in ids.items():
            require(0 <= value < self.vocab_size, f"{name}={value} is outside the vocabulary (size {self.vocab_size})")
        require(isinstance(self.backend, str) and bool(self.backend), "backend must name an attention backend")
        if self.moe_experts:
            require(self.moe_experts > 0, f"moe_experts must be 0 (dense) or positive, got {self.moe_experts}")
            require(
                1 <= self.moe_top_k <= self.moe_experts,
                f"moe_top_k={self.moe_top_k} must be between 1 and moe_experts={self.moe_experts}",
            )
            require(self.moe_every >= 1, f"moe_every must be at least 1, got {self.moe_every}")
            require(
                self.moe_capacity_factor >= 0,
                f"moe_capacity_factor must be >= 0 (0 = no dropping), got {self.moe_capacity_factor}",
            )

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    def block_spec(self) -> BlockSpec:
        """The blocks of both stacks (rotary only in self-attention, as the builders apply it)."""
        return block_spec_from(
            self,
            rotary=self.position == "rotary",
            moe_experts=self.moe_experts,
            moe_every=self.moe_every,
            moe_top_k=self.moe_top_k,
            moe_capacity_factor=self.moe_capacity_factor,
        )


POOL_KINDS = ("cls", "mean")


@dataclass
class EncoderConfig(ConfigBase):
    """An encoder-only (BERT-style) token model; defaults are BERT-base (Devlin et al. 2019)."""

    model_type = "encoder"

    vocab_size: int = 30522  # vocabulary size V
    d_model: int = 768  # model width D
    num_heads: int = 12  # attention heads H
    num_kv_heads: int | None = None  # key/value heads (GQA); None = num_heads
    num_layers: int = 12  # encoder depth L
    d_ff: int = 3072  # feed-forward inner width
    activation: str = "gelu"  # relu | gelu | gelu_tanh | silu | swiglu | geglu
    norm: str = "layernorm"  # layernorm | rmsnorm
    norm_eps: float = 1e-12  # epsilon of every norm (BERT: 1e-12)
    norm_first: bool = False  # pre-norm (True) or BERT's post-norm (False)
    dropout: float = 0.1  # dropout on embeddings and residual branches
    attention_dropout: float = 0.1  # dropout on attention weights
    layer_drop: float = 0.0  # LayerDrop probability while training
    position: str = "learned"  # learned | sinusoidal | rotary | alibi | none
    max_len: int = 512  # number of positions
    type_vocab_size: int = 2  # token-type (segment) embeddings; 0 = none
    embedding_norm: bool = True  # norm after the embedding sum (BERT)
    backend: str = "sdpa"  # attention backend spec
    bias: bool = True  # biases in linear layers
    pad_id: int = 0  # padding token id
    mask_id: int | None = None  # the [MASK] token id, for masked-LM pretraining
    pooler: bool = True  # dense + tanh over the first token (BERT's pooler)
    pool: str = "cls"  # sequence classification reads: cls (the pooler's output) | mean (mean of real tokens)
    num_labels: int = 2  # classes of the sequence / token classification heads
    classifier_dropout: float | None = None  # dropout before classifiers; None = dropout
    tie_embeddings: bool = True  # the masked-LM decoder shares the token embedding matrix

    def __post_init__(self) -> None:
        require(self.vocab_size > 0, f"vocab_size must be positive, got {self.vocab_size}")
        require(self.num_layers >= 1, f"num_layers must be at least 1, got {self.num_layers}")
        require(self.position in POSITION_KINDS, f"position must be one of {POSITION_KINDS}, got {self.position!r}")
        require(self.type_vocab_size >= 0, f"type_vocab_size must be >= 0 (0 = none), got {self.type_vocab_size}")
        require(self.max_len > 0, f"max_len must be positive, got {self.max_len}")
        require(
            0 <= self.pad_id < self.vocab_size, f"pad_id={self.pad_id} is outside the vocabulary ({self.vocab_size})"
        )
        require(
            self.mask_id is None or 0 <= self.mask_id < self.vocab_size,
            f"mask_id={self.mask_id} is outside the vocabulary ({self.vocab_size})",
        )
        require(self.pool in POOL_KINDS, f"pool must be one of {POOL_KINDS}, got {self.pool!r}")
        require(self.pool != "cls" or self.pooler, "pool='cls' reads the pooler; set pooler=True or pool='mean'")
        require(self.num_labels >= 1, f"num_labels must be at least 1, got {self.num_labels}")
        for name in ("dropout", "attention_dropout", "classifier_dropout"):
            value = getattr(self, name)
            require(value is None or 0.0 <= value < 1.0, f"{name} must be in [0, 1), got {value}")
        if self.position == "sinusoidal":
            require(self.d_model % 2 == 0, "sinusoidal positions need an even d_model")
        self.block_spec()  # validates the block fields

    def block_spec(self) -> BlockSpec:
        """The encoder block of every layer."""
        return block_spec_from(self, rotary=self.position == "rotary")

    @property
    def max_tokens(self) -> int | None:
        """The most tokens one input may have: ``max_len`` with a position table, else None (rotary, ALiBi, none)."""
        return self.max_len if self.position in ("learned", "sinusoidal") else None
