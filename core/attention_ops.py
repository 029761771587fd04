"""Scaled dot-product attention behind one interface, with backends registered by name.

Attention (Vaswani et al. 2017, "Attention Is All You Need") computes
``softmax(q k^T * scale + bias) v``. Every model in polyformer calls it through
:func:`attention` or an :class:`AttentionBackend` built by :func:`create_attention_backend`,
so the algorithm is a one-word setting (``"eager"``, ``"sdpa"``, ``"local:256"``, ...).

Shape legend: B batch, H heads, Tq query length, Tk key length, Dh head dim.

Mask convention, everywhere: a boolean mask broadcastable to (B, H, Tq, Tk) where True means
"may attend". A floating-point mask is an additive bias on the scores (ALiBi, relative
position bias). ``is_causal`` aligns the causal triangle to the *end* of the keys, so a query
block that continues cached keys (Tq < Tk) sees every earlier key. A query row with no key it
may attend to returns zeros, never NaN, in every backend.

Backend specs: ``"name"`` or ``"name:opt1,key=value"``; a bare value fills the backend's
positional option (``"local:256"`` is ``"local:window=256"``).

Backends declare what they can do (:class:`AttentionBackend` class attributes), and layers ask
them instead of keeping lists of names: ``supports_causal``, ``masks`` (``"any"`` or only
``"key_padding"``), ``exact`` (full softmax attention, each query row independent of the
others) and ``decoding_state`` (a constant-size causal decoding state, ``init_state``/``step``).

This module is the readable reference (``eager``); ``sdpa`` and the efficient backends live in
:mod:`polyformer.core.backends`.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "AttentionBackend",
    "as_4d_mask",
    "attention",
    "backend_class",
    "causal_mask",
    "create_attention_backend",
    "eager_attention",
    "key_padding_only",
    "list_attention_backends",
    "merge_causal_mask",
    "parse_backend_spec",
    "register_attention_backend",
    "softmax_over_keys",
]

_REGISTRY: dict[str, type[AttentionBackend]] = {}


class AttentionBackend(nn.Module):
    """Base class of attention algorithms; one instance per attention layer.

    Subclasses set ``options`` (option name -> type), optionally ``positional_option``, their
    capabilities, and implement :meth:`forward`. Backends with learned state (Linformer
    projections) keep it as parameters of this module, so it is saved with the model.

    Capabilities (class attributes, read by layers, builders and models):
        supports_causal: ``is_causal=True`` works.
        masks: ``"any"`` (boolean or additive, any broadcastable shape) or ``"key_padding"``
            (boolean (B, 1, 1, Tk) only).
        exact: computes full softmax attention (same values as ``eager`` up to rounding), so
            one query row does not depend on the other queries.
        decoding_state: has ``init_state(batch, device)`` and
            ``step(q, k, v, state, key_mask) -> (out, state)``, a constant-size causal decoding
            state used by the KV cache instead of stored keys and values.
        grouped_kv: accepts keys and values with fewer heads Hkv than the queries (H a multiple
            of Hkv; grouped-query attention) without repeating them, so a layer need not copy
            its whole KV cache Hkv -> H at every decoding step.

    Args:
        num_heads: number of query heads H.
        head_dim: per-head width Dh.
        max_len: the longest key length the layer will see (needed by some backends).
        **options: backend options parsed from the spec string.
    """

    name: ClassVar[str] = ""
    options: ClassVar[dict[str, type]] = {}
    positional_option: ClassVar[str | None] = None
    supports_causal: ClassVar[bool] = True
    masks: ClassVar[str] = "any"
    exact: ClassVar[bool] = True
    decoding_state: ClassVar[bool] = False
    grouped_kv: ClassVar[bool] = False

    def __init__(self, *, num_heads: int, head_dim: int, max_len: int | None = None, **options: Any):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.max_len = max_len
        unknown = set(options) - set(self.options)
        if unknown:
            raise ValueError(
                f"attention backend {self.name!r} has no option(s) {sorted(unknown)}; "
                f"it accepts {sorted(self.options) or 'none'}"
            )
        self.config = dict(options)

    def forward(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        mask: Tensor | None = None,
        is_causal: bool = False,
        scale: float | None = None,
        dropout_p: float = 0.0,
    ) -> Tensor:
        raise NotImplementedError

    @classmethod
    def check_use(cls, *, causal: bool = False, float_mask: bool = False, where: str = "this layer") -> None:
        """Raise a ValueError naming the problem when this backend cannot serve ``where``.

        Args:
            causal: the layer attends causally.
            float_mask: the layer passes additive masks (ALiBi, relative position bias) or masks
                that vary along the queries.
            where: what the layer is, for the message.
        """
        if causal and not cls.supports_causal:
            capable = [n for n, c in sorted(_REGISTRY.items()) if c.supports_causal]
            raise ValueError(f"attention backend {cls.name!r} cannot be causal, as {where} needs; use one of {capable}")
        if float_mask and cls.masks != "any":
            capable = [n for n, c in sorted(_REGISTRY.items()) if c.masks == "any"]
            raise ValueError(
                f"attention backend {cls.name!r} supports only boolean key-padding masks, but {where} needs "
                f"additive or per-query masks; use one of {capable}"
            )

    def extra_repr(self) -> str:
        return f"{self.name}, heads={self.num_heads}, head_dim={self.head_dim}, options={self.config}"


def register_attention_backend(name: str):
    """Class decorator that registers an :class:`AttentionBackend` subclass under ``name``."""

    def decorate(cls: type[AttentionBackend]) -> type[AttentionBackend]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"attention backend {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def list_attention_backends() -> list[str]:
    """Names of the registered attention backends, sorted."""
    return sorted(_REGISTRY)


def _convert_option(backend: str, key: str, text: str, kind: type) -> Any:
    if kind is bool:
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
    else:
        try:
            return kind(text)
        except ValueError:
            pass
    raise ValueError(f"attention backend {backend!r}: option {key}={text!r} is not a valid {kind.__name__}")


def parse_backend_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``"name:opt,key=value"`` into the backend name and its typed options.

    Raises:
        ValueError: unknown backend, unknown option, or a value of the wrong type.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"attention backend must be a non-empty string, got {spec!r}")
    name, _, rest = spec.strip().partition(":")
    if name not in _REGISTRY:
        raise ValueError(f"unknown attention backend {name!r}; registered backends: {list_attention_backends()}")
    cls = _REGISTRY[name]
    options: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            if cls.positional_option is None:
                raise ValueError(f"attention backend {name!r} takes no positional option (got {item!r}); use key=value")
            key, value = cls.positional_option, item
        key = key.strip()
        if key not in cls.options:
            raise ValueError(
                f"attention backend {name!r} has no option {key!r}; it accepts {sorted(cls.options) or 'none'}"
            )
        options[key] = _convert_option(name, key, value.strip(), cls.options[key])
    return name, options


def backend_class(spec: str) -> type[AttentionBackend]:
    """The backend class a spec names, to read its capabilities before building layers."""
    return _REGISTRY[parse_backend_spec(spec)[0]]


def create_attention_backend(
    spec: str, *, num_heads: int, head_dim: int, max_len: int | None = None
) -> AttentionBackend:
    """Build the backend a spec string names, e.g. ``"sdpa"`` or ``"local:256"``."""
    name, options = parse_backend_spec(spec)
    return _REGISTRY[name](num_heads=num_heads, head_dim=head_dim, max_len=max_len, **options)


def causal_mask(tq: int, tk: int, device: torch.device | None = None) -> Tensor:
    """Boolean (Tq, Tk) mask, True where query i may see key j, aligned to the last key."""
    offset = tk - tq
    rows = torch.arange(tq, device=device).unsqueeze(1)
    cols = torch.arange(tk, device=device).unsqueeze(0)
    return cols <= rows + offset


def merge_causal_mask(mask: Tensor | None, is_causal: bool, tq: int, tk: int, device: torch.device) -> Tensor | None:
    """Merge a user mask with the (end-aligned) causal triangle into one boolean or additive mask."""
    if not is_causal:
        return mask
    tri = causal_mask(tq, tk, device)
    if mask is None:
        return tri
    if mask.dtype == torch.bool:
        return mask & tri
    return mask.masked_fill(~tri, float("-inf"))


def as_4d_mask(mask: Tensor | None) -> Tensor | None:
    """A mask broadcastable to (B, H, Tq, Tk) as a 4-D view (leading size-1 dims added)."""
    if mask is None:
        return None
    while mask.dim() < 4:
        mask = mask.unsqueeze(0)
    return mask


def key_padding_only(mask: Tensor | None, backend: str) -> Tensor | None:
    """A boolean key-padding mask as (B|1, H|1, 1, Tk), for backends that support no other mask.

    Raises:
        ValueError: the mask is additive or varies along the queries.
    """
    mask = as_4d_mask(mask)
    if mask is None:
        return None
    if mask.dtype != torch.bool or mask.shape[-2] != 1:
        raise ValueError(
            f"{backend} attention supports only boolean key-padding masks shaped (B, 1, 1, Tk); "
            f"got a {mask.dtype} mask of shape {tuple(mask.shape)}. Use 'eager', 'sdpa' or 'chunked' for other masks"
        )
    return mask


def softmax_over_keys(scores: Tensor) -> Tensor:
    """Softmax of attention scores over the keys (last dim), in the dtype of ``scores``; shared by the backends.

    torch accumulates bf16/fp16 rows in float32, so the forward values equal a float32 softmax
    rounded to bf16/fp16. With gradients, bf16/fp16 scores still go through float32 so that the
    backward pass uses the float32 weights, as autocast does on GPUs (a training run of the full
    Fashion-MNIST recipe ended 0.2% lower without it). Without gradients that copy is skipped.
    """
    if scores.requires_grad and scores.dtype in (torch.bfloat16, torch.float16):
        return torch.softmax(scores.float(), dim=-1).to(scores.dtype)
    return torch.softmax(scores, dim=-1)


def eager_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
    dropout_p: float = 0.0,
    return_weights: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Attention written out step by step: the readable reference and the test oracle.

    Returns:
        The output (B, H, Tq, Dh), and the attention weights (B, H, Tq, Tk) when
        ``return_weights`` is set (rows that may attend nowhere are all zero).
    """
    tq, tk = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    # Scaling q (Tq x Dh numbers) instead of the scores (Tq x Tk) saves a pass over the score matrix.
    scores = torch.matmul(q * scale, k.transpose(-2, -1))  # (B, H, Tq, Tk)
    full = merge_causal_mask(mask, is_causal, tq, tk, q.device)
    if full is None:
        weights = softmax_over_keys(scores)
    else:
        if full.dtype == torch.bool:
            scores = scores.masked_fill(~full, float("-inf"))
        else:
            scores = scores + full
        # Only a mask can empty a row; a row of all -inf would give NaN, so give it zeros instead.
        empty = torch.isneginf(scores.amax(dim=-1, keepdim=True))
        scores = scores.masked_fill(empty, 0.0)
        weights = softmax_over_keys(scores).masked_fill(empty, 0.0)
    dropped = F.dropout(weights, p=dropout_p) if dropout_p > 0.0 else weights
    out = torch.matmul(dropped, v)  # (B, H, Tq, Dh)
    return (out, weights) if return_weights else out


@register_attention_backend("eager")
class EagerAttention(AttentionBackend):
    """Plain matmul-softmax-matmul attention (:func:`eager_attention`)."""

    def forward(self, q, k, v, mask=None, is_causal=False, scale=None, dropout_p=0.0):
        return eager_attention(q, k, v, mask, is_causal, scale, dropout_p)


_FUNCTIONAL_CACHE: dict[tuple[str, int, int, int], AttentionBackend] = {}


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
    dropout_p: float = 0.0,
    backend: str = "sdpa",
) -> Tensor:
    """Attention of q (B, H, Tq, Dh) over k, v (B, H, Tk, Dh) with the named backend.

    Args:
        q: queries.
        k: keys.
        v: values.
        mask: boolean mask broadcastable to (B, H, Tq, Tk), True = may attend; or a float
            additive bias.
        is_causal: query i sees keys up to i + (Tk - Tq).
        scale: score scale; default 1/sqrt(Dh).
        dropout_p: dropout on the attention weights (pass 0 in evaluation).
        backend: a backend spec, see :func:`list_attention_backends`.

    Returns:
        The attended values, (B, H, Tq, Dh).
    """
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            f"attention expects 4-D (B, H, T, Dh) tensors, got q{tuple(q.shape)} k{tuple(k.shape)} v{tuple(v.shape)}"
        )
    if k.shape[-2] != v.shape[-2] or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"attention shapes do not fit: q{tuple(q.shape)} k{tuple(k.shape)} v{tuple(v.shape)}")
    if mask is not None and mask.dtype != torch.bool and not mask.is_floating_point():
        raise ValueError(f"attention mask must be boolean (True = may attend) or floating (additive), got {mask.dtype}")
    key = (backend, q.shape[1], q.shape[-1], k.shape[-2])
    module = _FUNCTIONAL_CACHE.get(key)
    if module is None:
        module = create_attention_backend(backend, num_heads=q.shape[1], head_dim=q.shape[-1], max_len=k.shape[-2])
        module = module.to(q.device)
        if len(_FUNCTIONAL_CACHE) > 64:
            _FUNCTIONAL_CACHE.clear()
        _FUNCTIONAL_CACHE[key] = module
    return module(q, k, v, mask, is_causal, scale, dropout_p)
